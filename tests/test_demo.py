"""The README's demo command keeps working: the seven steps of the FAPI 2.0 code flow against
the simulator and the example authorization server, then the refusals, the message-signing
leg (RFC 9421), then the mTLS leg behind nginx."""

from __future__ import annotations

import re

import pytest

from dpop_guard.devtools.demo import _flow, _mtls, _run
from dpop_guard.devtools.demo._run import main

pytestmark = pytest.mark.e2e

STEPS = {
    1: r"PAR, client authenticated by private_key_jwt +POST /par -> 201, assertion PS256",
    2: r"request_uri back +urn:ietf:params:oauth:request_uri:\S+\.\.\., expires_in \d+ s",
    3: r"authorization request, consent approved +GET /authorize -> 200, "
    r"POST /authorize/decision -> 303",
    4: r"code back on the redirect +code \S+\.\.\., state matches, iss http://127\.0\.0\.1:\d+",
    5: r"token request, private_key_jwt \+ DPoP proof +POST /token -> 200, assertion PS256, "
    r"DPoP proof (ES256|EdDSA)",
    6: r"DPoP-bound access token back +token_type DPoP, scope read:accounts",
    7: r"GET /accounts with a fresh DPoP proof +GET /accounts -> 200, 2 accounts of alice",
}


MTLS_LEG = {
    "token bound to alice's certificate": r"x5t#S256 \S+\.\.\., sent as Bearer",
    "alice's certificate": r"200 OK, accounts of alice",
    "bob's certificate, alice's token": r"401 invalid_token",
    "no certificate": r"401 invalid_token",
    "no cert, X-Client-Cert forged as alice's": r"401 invalid_token",
    "bob's cert, X-Client-Cert forged as alice's": r"401 invalid_token",
}


def assert_mtls_leg(out: str) -> None:
    """The mTLS leg ran behind nginx (``make test`` installs it: never skipped here)."""
    assert "The mTLS leg was skipped" not in out
    assert re.search(r"^  nginx/\S+ at https://127\.0\.0\.1:\d+", out, re.MULTILINE), out
    for title, pattern in MTLS_LEG.items():
        assert re.search(rf"^  ok {re.escape(title)} +{pattern}$", out, re.MULTILINE), (title, out)
    assert '"The client certificate does not match the access token."' in out
    assert '"The access token requires a client certificate."' in out
    # The leg comes after the other steps and before the closing line.
    assert out.index("What the authorization server refuses") < out.index("Certificate-bound")


SIGNING_LEG = {
    "POST /accounts/search, signed, answer verified": r"200 OK, 2 EUR accounts",
    "the same request, its body changed after signing": r"401 invalid_signature",
    "the same request, unsigned": r"401 invalid_signature",
    "the answer checked with another server key": r"refused by the client: signature_invalid",
}


def assert_signing_leg(out: str) -> None:
    """RFC 9421 both ways: the API (from DPOP_GUARD_HTTPSIG) verifies the signed request
    and signs its answer, which the client verifies; a tampered body, an unsigned request
    and an answer checked with the wrong key are refused."""
    assert "Message signing (RFC 9421, FAPI 2.0 HTTP Signatures)" in out
    for title, pattern in SIGNING_LEG.items():
        assert re.search(rf"^  ok {re.escape(title)} +{pattern}$", out, re.MULTILINE), (title, out)
    assert re.search(
        r"^      request ES256 keyid demo-client-sig-1: "
        r"@method @target-uri authorization dpop content-digest$",
        out,
        re.MULTILINE,
    ), out
    assert re.search(
        r"^      response ES256 keyid accounts-api-sig-1: @status content-type content-digest; "
        r"of the request: @method @target-uri content-digest signature signature-input$",
        out,
        re.MULTILINE,
    ), out
    assert 'Accept-Signature: sig1=("@method" "@target-uri" "authorization" "dpop" ' in out
    assert "its signed answer verified by the client" in out  # step 7, signed both ways


def assert_seven_steps(out: str) -> None:
    for number, pattern in STEPS.items():
        assert re.search(rf"^  ok {number} {pattern}", out, re.MULTILINE), (number, out)
    assert "(introspected) = the DPoP key's thumbprint" in out
    assert "acc-1001  Current" in out


@pytest.mark.parametrize(("api", "alg"), [("V3", "ES256"), ("V2", "EdDSA")])
def test_demo_runs(capsys: pytest.CaptureFixture[str], api: str, alg: str) -> None:
    """The demo starts its three servers as subprocesses, walks the seven steps, shows the
    refusals, and ends with the closing line; on either Authlete API version, with either
    DPoP key algorithm of the guide."""
    assert main(["--api", api, "--dpop-alg", alg]) == 0
    out = capsys.readouterr().out
    assert f"Authlete API {api}" in out
    assert f"DPoP proof {alg}" in out
    assert_seven_steps(out)
    assert "!! " not in out
    assert "0 Authlete introspection calls" in out
    for refusal in ("401 invalid_dpop_proof", "403 insufficient_scope", "400 invalid_grant"):
        assert refusal in out
    assert_mtls_leg(out)
    assert_signing_leg(out)
    assert out.rstrip().splitlines()[-1] == "Every step behaved as expected."


def test_demo_never_prints_a_whole_token(capsys: pytest.CaptureFixture[str]) -> None:
    """Tokens, codes and request URIs are abbreviated: no long random string is printed."""
    assert main([]) == 0
    out = capsys.readouterr().out
    # The longest unbroken base64url run the demo may print is a 12-character prefix; an
    # access token (43 characters here) or a code would be longer.
    words = {"authorization_server", "oauth-authorization-server"}  # names, not secrets
    runs = set(re.findall(r"[A-Za-z0-9_-]{20,}", out)) - words
    assert runs == set(), runs


def test_without_nginx_the_demo_says_the_mtls_leg_was_skipped(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where nginx is not installed (outside ``make demo``, which installs it), the demo
    still passes, and says plainly that the mTLS leg did not run."""
    monkeypatch.setattr(_mtls, "find_command", lambda name: None)
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "The mTLS leg was skipped: nginx is not installed" in out
    assert "Certificate-bound" not in out
    assert out.rstrip().splitlines()[-1] == "Every step behaved as expected."


def test_without_the_httpsig_extra_the_demo_says_the_signing_leg_was_skipped(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed without the ``httpsig`` extra, the API runs without message signing and
    the demo says so plainly (``make demo`` installs the extra)."""
    monkeypatch.setattr(_run, "available", lambda: False)
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "The message-signing leg was skipped: the httpsig extra is not installed" in out
    assert "Message signing (RFC 9421" not in out
    assert "its signed answer verified by the client" not in out
    assert out.rstrip().splitlines()[-1] == "Every step behaved as expected."


def test_a_step_that_misbehaves_fails_the_demo(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a step does not behave (here the consent page does not offer the user the demo
    signs in as), the demo says which, stops, and exits non-zero."""
    monkeypatch.setattr(_flow, "SUBJECT", "mallory")
    assert main([]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^  !! 3 authorization request", out, re.MULTILINE), out
    assert "does not offer 'mallory'" in out
    assert "The flow stopped: step 3 authorization request" in out
    assert "Every step behaved as expected." not in out
    assert "ok 4 " not in out
