"""Verify a signed resource request, per RFC 9421 and the FAPI 2.0 HTTP Signatures
profile (section 5.3.1.2, "Requirements for Resource Servers").

Each step, in order, and the reason it refuses with (all 401 unless noted):

1. ``Signature-Input`` and ``Signature`` are present (``signature_missing``), each at most
   ``max_field_bytes`` (``signature_field_too_large``), Dictionaries of at most
   ``max_signatures`` members (``signature_malformed``, ``signature_too_many``).
2. Exactly one ``Signature-Input`` member carries ``tag="fapi-2-request"``
   (``signature_not_fapi``; two are ``signature_ambiguous``: which one the profile's
   rules apply to would otherwise be the attacker's choice, RFC 9421 section 7.2.6), and
   ``Signature`` has the same label holding a Byte Sequence (``signature_label_unpaired``).
   Other signatures (other tags) are ignored.
3. Its components: at most ``max_components``, no duplicate, all resolvable
   (``signature_components_too_many``, ``signature_component_duplicate``,
   ``signature_component_*``); the profile's required ones covered as plain identifiers:
   ``@method``, ``@target-uri``, ``authorization``; ``dpop`` when the request has a DPoP
   header; ``content-digest`` when it has a body (``signature_component_required``).
4. Parameters: only those RFC 9421 defines, with their types
   (``signature_parameter_invalid``); ``created`` present (``signature_created_missing``),
   not older than ``max_age`` (``signature_too_old``), not later than ``max_skew`` ahead
   (``signature_created_in_future``); ``expires``, if sent, not past
   (``signature_expired``); ``keyid`` present (``signature_keyid_missing``).
5. The key: ``key_source.resolve(keyid, client_id=...)`` (``signature_key_unknown``,
   also for a key of another client than the token's; a failing source is 503
   ``key_source_unavailable``); an ``alg`` parameter must name the key's algorithm
   (``signature_alg_mismatch``, see :mod:`dpop_guard.httpsig._keys`).
6. The signature over the base (``signature_invalid``).
7. Replay: the pair (keyid, signature base) is recorded in the replay store for the
   acceptance window; a second use is ``signature_replayed`` (a failing store is 503
   ``replay_store_unavailable``). The base, not the signature bytes, is the key: an
   ECDSA signature can be re-encoded into another valid one, the base cannot.
8. When ``content-digest`` is covered, its value is parsed now
   (``content_digest_malformed``, ``content_digest_unsupported``); the body is compared
   with it as it streams, by the caller (:class:`dpop_guard.httpsig._digest.DigestChecker`).

The clock is a parameter (``now``); nothing here reads time or the network except through
the two protocols it is given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ..replay import ReplayStore
from . import _sf
from ._base import SignatureParams, parse_signature_params, signature_base
from ._components import Component, Message
from ._digest import parse_content_digest
from ._keys import JWA_TO_RFC9421, KeySource
from ._reasons import HTTPSignatureError

__all__ = [
    "REQUEST_TAG",
    "VerifiedSignature",
    "VerifyPolicy",
    "required_components",
    "verify_request",
    "verify_response",
]

REQUEST_TAG: Final = "fapi-2-request"
_MAX_SIGNATURE_BYTES: Final = 1024  # RSA-8192; every algorithm here produces fewer


@dataclass(frozen=True, slots=True)
class VerifyPolicy:
    """What a verifier accepts. Every number a client controls is bounded here.

    :param max_age: seconds a signature stays acceptable after ``created`` (the profile
        recommends 1 minute).
    :param max_skew: seconds ``created`` may lie in the future (clock skew).
    :param max_field_bytes: cap on each of ``Signature-Input`` and ``Signature``, all field
        lines together, checked before parsing.
    :param max_signatures: cap on the members (labels) of each field.
    :param max_components: cap on the covered components of the signature checked.
    """

    tag: str = REQUEST_TAG
    max_age: int = 60
    max_skew: int = 5
    max_field_bytes: int = 8192
    max_signatures: int = 8
    max_components: int = 24

    def __post_init__(self) -> None:
        for name in ("max_age", "max_field_bytes", "max_signatures", "max_components"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_skew < 0:
            raise ValueError("max_skew must not be negative")

    @property
    def replay_ttl(self) -> int:
        """How long a seen signature is remembered: its whole acceptance window."""
        return self.max_age + 2 * self.max_skew


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """A request signature that passed every check.

    :param content_digest: the covered ``Content-Digest``'s supported members, to check
        the body against; ``None`` when ``content-digest`` is not covered.
    """

    label: str
    keyid: str
    alg: str
    params: SignatureParams
    content_digest: dict[str, bytes] | None


RESPONSE_POLICY: Final = VerifyPolicy(tag="fapi-2-response")
"""The client's policy for responses: the request policy's bounds, the response tag."""


def required_components(*, dpop: bool, body: bool) -> tuple[str, ...]:
    """The components the FAPI profile requires a request signature to cover."""
    names = ["@method", "@target-uri", "authorization"]
    if dpop:
        names.append("dpop")
    if body:
        names.append("content-digest")
    return tuple(names)


def _dictionary(message: Message, name: bytes, policy: VerifyPolicy) -> dict[str, object] | None:
    combined = _sf.combine(
        message.field_lines(name),
        limit=policy.max_field_bytes,
        reason="signature_field_too_large",
    )
    if combined is None:
        return None
    return dict(
        _sf.parse_dictionary(
            combined,
            max_members=policy.max_signatures,
            reason="signature_malformed",
            too_many="signature_too_many",
        )
    )


def _select(inputs: dict[str, object], policy: VerifyPolicy) -> tuple[str, SignatureParams]:
    chosen: tuple[str, SignatureParams] | None = None
    for label, member in inputs.items():
        if not (isinstance(member, tuple) and len(member) == 2 and isinstance(member[1], dict)):
            raise HTTPSignatureError("signature_malformed")
        if member[1].get("tag") != policy.tag:
            continue
        if chosen is not None:
            raise HTTPSignatureError("signature_ambiguous")
        chosen = label, parse_signature_params(member, max_components=policy.max_components)
    if chosen is None:
        raise HTTPSignatureError("signature_not_fapi")
    return chosen


async def verify_request(
    message: Message,
    *,
    key_source: KeySource,
    now: int,
    has_body: bool,
    policy: VerifyPolicy = VerifyPolicy(),
    replay_store: ReplayStore | None = None,
    client_id: str | None = None,
) -> VerifiedSignature:
    """Verify ``message``'s FAPI request signature (the steps in the module docstring).

    :param has_body: the request declares content (``Content-Length`` above 0 or a
        ``Transfer-Encoding``), so ``content-digest`` must be covered.
    :param replay_store: where signatures are recorded; ``None`` skips step 7 (only for
        callers that record them themselves).
    :param client_id: the client the access token was issued to, when known; passed to
        the key source, which may hold each client's own keys.
    :raises HTTPSignatureError: the first failing step's reason.
    """
    dpop = bool(message.field_lines(b"dpop"))
    required = [Component(n, {}) for n in required_components(dpop=dpop, body=has_body)]
    return await _verify(
        message,
        in_response=False,
        required=required,
        key_source=key_source,
        now=now,
        policy=policy,
        replay_store=replay_store,
        client_id=client_id,
    )


async def verify_response(
    response: Message,
    *,
    key_source: KeySource,
    now: int,
    has_body: bool,
    request_label: str | None = None,
    policy: VerifyPolicy = RESPONSE_POLICY,
) -> VerifiedSignature:
    """Verify a FAPI response signature, as a client does (FAPI HTTP Signatures 5.3.2.2):
    the steps of :func:`verify_request` with ``tag="fapi-2-response"`` and these
    components required: ``@status``; ``content-digest`` when the response has content;
    ``"@method";req`` and ``"@target-uri";req`` (which tie it to this request); the
    request's ``"signature";req;key=<label>`` and ``"signature-input";req;key=<label>``
    when it was signed with ``request_label``. No replay check: a response answers one
    request, which ``;req`` pins.

    :param response: the response, with its ``request`` (what was sent).
    :raises HTTPSignatureError: the first failing step's reason.
    """
    required = [
        Component("@status", {}),
        Component("@method", {"req": True}),
        Component("@target-uri", {"req": True}),
    ]
    if has_body:
        required.append(Component("content-digest", {}))
    if request_label is not None:
        for name in ("signature", "signature-input"):
            required.append(Component(name, {"req": True, "key": request_label}))
    return await _verify(
        response,
        in_response=True,
        required=required,
        key_source=key_source,
        now=now,
        policy=policy,
        replay_store=None,
        client_id=None,
    )


async def _verify(
    message: Message,
    *,
    in_response: bool,
    required: Sequence[Component],
    key_source: KeySource,
    now: int,
    policy: VerifyPolicy,
    replay_store: ReplayStore | None,
    client_id: str | None,
) -> VerifiedSignature:
    inputs = _dictionary(message, b"signature-input", policy)
    signatures = _dictionary(message, b"signature", policy)
    if inputs is None:
        raise HTTPSignatureError("signature_missing")
    label, params = _select(inputs, policy)
    member = None if signatures is None else signatures.get(label)
    value = member[0] if isinstance(member, tuple) else None
    if type(value) is not bytes or not 0 < len(value) <= _MAX_SIGNATURE_BYTES:
        raise HTTPSignatureError("signature_label_unpaired")
    covered = {c.identity() for c in params.components}
    if any(c.identity() not in covered for c in required):
        raise HTTPSignatureError("signature_component_required")
    if params.created is None:
        raise HTTPSignatureError("signature_created_missing")
    if params.created > now + policy.max_skew:
        raise HTTPSignatureError("signature_created_in_future")
    if now - params.created > policy.max_age:
        raise HTTPSignatureError("signature_too_old")
    if params.expires is not None and now > params.expires:
        raise HTTPSignatureError("signature_expired")
    if not params.keyid:
        raise HTTPSignatureError("signature_keyid_missing")
    base = signature_base(params, message, in_response=in_response)
    try:
        key = await key_source.resolve(params.keyid, client_id=client_id)
    except Exception as exc:
        raise HTTPSignatureError("key_source_unavailable", status=503) from exc
    if key is None:
        raise HTTPSignatureError("signature_key_unknown")
    if params.alg is not None and params.alg != JWA_TO_RFC9421.get(key.alg):
        raise HTTPSignatureError("signature_alg_mismatch")
    if not key.verify(value, base):
        raise HTTPSignatureError("signature_invalid")
    digest = None
    if Component("content-digest", {}).identity() in covered:
        lines = message.field_lines(b"content-digest")
        limit = policy.max_field_bytes
        combined = _sf.combine(lines, limit=limit, reason="content_digest_malformed")
        assert combined is not None  # the base above could not be built without it
        digest = parse_content_digest(combined)
    if replay_store is not None:
        # One key format for every replay store: 64 hex digits of SHA-256 (the proofs'
        # replay_key is one too); the "httpsig" label keeps the two keyspaces apart.
        key_id = hashlib.sha256(b"httpsig\n" + params.keyid.encode() + b"\n" + base).hexdigest()
        try:
            first = await replay_store.add_if_absent(key_id, ttl=policy.replay_ttl)
        except Exception as exc:
            raise HTTPSignatureError("replay_store_unavailable", status=503) from exc
        if not first:
            raise HTTPSignatureError("signature_replayed")
    return VerifiedSignature(label, params.keyid, key.alg, params, digest)
