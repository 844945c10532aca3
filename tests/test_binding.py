"""The binding rules (RFC 9449 section 7.1, RFC 8705 section 3) as a table: what the token is
bound to, what the route demands, what the request presented."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dpop_guard._binding import (
    Policies,
    check_bearer,
    check_binding,
    check_token_binding,
    policy_for,
)
from dpop_guard.errors import DPoPGuardError
from dpop_guard.introspection import TokenInfo
from dpop_guard.mtls import ClientCertificate
from dpop_guard.routes import Route
from dpop_guard.settings import GuardSettings
from tests._support.pki import PKI

_PKI = PKI.generate()
ALICE = ClientCertificate.from_der(_PKI.alice.der)
BOB = ClientCertificate.from_der(_PKI.bob.der)
KEY = "jkt-of-the-proof-key"


def token(*, jkt: str | None = None, x5t: str | None = None) -> TokenInfo:
    return TokenInfo(
        subject="alice", client_id="c", scopes=frozenset(), expires_at=None, jkt=jkt, x5t_s256=x5t
    )


# token bound to (jkt, x5t), route constraint, proof key, certificate -> reason or None
CASES = [
    ("dpop-bound, right key", (KEY, None), "dpop", KEY, None, None),
    ("dpop-bound, another key", (KEY, None), "dpop", "other", None, "jkt_mismatch"),
    ("dpop-bound as Bearer", (KEY, None), "dpop", None, None, "bound_token_as_bearer"),
    ("dpop-bound as Bearer on mtls", (KEY, None), "mtls", None, ALICE, "bound_token_as_bearer"),
    ("unbound with a proof", (None, None), "dpop", KEY, None, "token_not_bound"),
    ("cert-bound, right cert, Bearer", (None, ALICE.thumbprint), "mtls", None, ALICE, None),
    ("cert-bound, no cert", (None, ALICE.thumbprint), "mtls", None, None, "certificate_missing"),
    (
        "cert-bound, another cert",
        (None, ALICE.thumbprint),
        "mtls",
        None,
        BOB,
        "certificate_mismatch",
    ),
    ("cert-bound on a dpop route", (None, ALICE.thumbprint), "dpop", KEY, ALICE, "token_not_bound"),
    ("dpop-bound on an mtls route", (KEY, None), "mtls", KEY, ALICE, "token_not_certificate_bound"),
    (
        "unbound on either, Bearer",
        (None, None),
        "either",
        None,
        ALICE,
        "token_not_certificate_bound",
    ),
    ("dpop-bound on either", (KEY, None), "either", KEY, None, None),
    ("cert-bound on either, Bearer", (None, ALICE.thumbprint), "either", None, ALICE, None),
    ("bound both ways, both presented", (KEY, ALICE.thumbprint), "dpop", KEY, ALICE, None),
    ("bound both ways, no cert", (KEY, ALICE.thumbprint), "dpop", KEY, None, "certificate_missing"),
    (
        "bound both ways, no proof",
        (KEY, ALICE.thumbprint),
        "mtls",
        None,
        ALICE,
        "bound_token_as_bearer",
    ),
]


@pytest.mark.parametrize(
    ("bound", "constraint", "proof_jkt", "certificate", "reason"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_binding(
    bound: tuple[str | None, str | None],
    constraint: str,
    proof_jkt: str | None,
    certificate: ClientCertificate | None,
    reason: str | None,
) -> None:
    """Each combination is admitted or refused with its own reason."""
    policy = policy_for(Route("/r", sender_constraint=constraint), GuardSettings())  # type: ignore[arg-type]
    info = token(jkt=bound[0], x5t=bound[1])
    if reason is None:
        check_binding(info, policy, proof_jkt, certificate, allow_unbound=False)
        return
    with pytest.raises(DPoPGuardError) as refused:
        check_binding(info, policy, proof_jkt, certificate, allow_unbound=False)
    assert refused.value.reason == reason


def test_unbound_allowed_still_checks_bindings_that_exist() -> None:
    """allow_unbound admits an unbound token, never a bound one presented wrongly."""
    policy = policy_for(Route("/r"), GuardSettings())
    check_binding(token(), policy, KEY, None, allow_unbound=True)
    with pytest.raises(DPoPGuardError) as refused:
        check_binding(token(jkt=KEY), policy, "other", None, allow_unbound=True)
    assert refused.value.reason == "jkt_mismatch"
    with pytest.raises(DPoPGuardError) as refused:
        check_binding(token(x5t=ALICE.thumbprint), policy, KEY, BOB, allow_unbound=True)
    assert refused.value.reason == "certificate_mismatch"


@pytest.mark.parametrize(
    ("bound", "constraint", "proof_jkt", "certificate", "reason"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_the_tokens_half_is_what_any_route_refuses(
    bound: tuple[str | None, str | None],
    constraint: str,
    proof_jkt: str | None,
    certificate: ClientCertificate | None,
    reason: str | None,
) -> None:
    """check_token_binding (what the cache and the JWT validator run against a known
    binding, without a route) refuses exactly the table's refusals that are about the
    token's own binding, with the same reason, and nothing that depends on the route."""
    own = {"jkt_mismatch", "bound_token_as_bearer", "certificate_missing", "certificate_mismatch"}
    thumbprint = None if certificate is None else certificate.thumbprint
    if reason not in own:
        check_token_binding(*bound, proof_jkt, thumbprint)
        return
    with pytest.raises(DPoPGuardError) as refused:
        check_token_binding(*bound, proof_jkt, thumbprint)
    assert refused.value.reason == reason


# DPoP header sent, route constraint, certificate, unbound allowed -> reason or None
BEARER_CASES = [
    ("proof beside Bearer", True, "mtls", ALICE, False, "bearer_with_dpop_proof"),
    ("proof beside Bearer, unbound allowed", True, "dpop", None, True, "bearer_with_dpop_proof"),
    ("Bearer on a DPoP-only route", False, "dpop", ALICE, False, "bearer_scheme_refused"),
    ("Bearer on mtls without a certificate", False, "mtls", None, False, "certificate_missing"),
    ("Bearer on either without a certificate", False, "either", None, False, "certificate_missing"),
    ("Bearer on mtls with a certificate", False, "mtls", ALICE, False, None),
    ("Bearer on either with a certificate", False, "either", ALICE, False, None),
    ("Bearer, unbound allowed, DPoP-only route", False, "dpop", None, True, None),
]


@pytest.mark.parametrize(
    ("dpop_sent", "constraint", "certificate", "unbound", "reason"),
    [case[1:] for case in BEARER_CASES],
    ids=[case[0] for case in BEARER_CASES],
)
def test_what_may_ride_bearer(
    dpop_sent: bool,
    constraint: str,
    certificate: ClientCertificate | None,
    unbound: bool,
    reason: str | None,
) -> None:
    """The Bearer scheme's rule, before any lookup: each case admitted or refused with
    its own reason."""
    policy = policy_for(Route("/r", sender_constraint=constraint), GuardSettings())  # type: ignore[arg-type]
    if reason is None:
        check_bearer(dpop_sent, policy, certificate, unbound)
        return
    with pytest.raises(DPoPGuardError) as refused:
        check_bearer(dpop_sent, policy, certificate, unbound)
    assert refused.value.reason == reason


def test_policies_and_refusal_schemes() -> None:
    """One policy per rule, the default for unmatched paths; a refusal's schemes follow
    the matched rule (DPoP alone on public paths and unmatched ones)."""
    mtls = Route("/payments", sender_constraint="mtls", scopes=("pay",))
    either = Route("/accounts", sender_constraint="either")
    settings = GuardSettings(routes=(Route("/health", public=True), mtls, either))
    policies = Policies(settings)
    assert policies(mtls).scopes == ("pay",) and policies(mtls).bearer
    assert policies(None) is policies.default and not policies.default.bearer
    assert policies.schemes("/payments", "GET") == ("Bearer",)
    assert policies.schemes("/accounts", "POST") == ("DPoP", "Bearer")
    assert policies.schemes("/health", "GET") == policies.schemes("/other", "GET") == ("DPoP",)


def test_the_binding_rules_import_no_x509_and_no_settings() -> None:
    """The rule module is sans-IO: importing it loads neither the certificate parser
    (cryptography's x509) nor the settings module nor a framework."""
    code = (
        "import sys, dpop_guard._binding; "
        "bad = [m for m in ('cryptography.x509', 'dpop_guard.mtls', 'dpop_guard.settings', "
        "'starlette.requests', 'httpx') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
