"""The client's side of the FAPI 2.0 HTTP Signatures profile, for httpx: sign a resource
request (section 5.3.1.1) and verify the signed response (section 5.3.2.2).

Nothing here builds a signature base or checks a signature itself: an httpx message becomes
a :class:`Message`, and the package's own :func:`sign_request` and :func:`verify_response`
do the rest, the functions the middleware uses on the other side.
:class:`dpop_guard.client.DPoPAuth` calls :class:`MessageSigning` inside its auth flow.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import httpx

from ._components import Message
from ._digest import DigestChecker, content_digest
from ._keys import KeySource, SigningKey, StaticJWKS
from ._reasons import HTTPSignatureError
from ._sign import REQUEST_LABEL, sign_request, with_status
from ._verify import RESPONSE_POLICY, VerifiedSignature, VerifyPolicy, verify_response

__all__ = ["MessageSigning", "ResponseSignatureError", "request_message"]

T = TypeVar("T")
_SIGNATURE_FIELDS: Final = ("signature", "signature-input", "content-digest")


class ResponseSignatureError(Exception):
    """A response whose signature the client could not verify: it must not be used.

    :param reason: the failing check: one of
        :data:`~dpop_guard.httpsig.SignatureReason` (``signature_missing``,
        ``signature_invalid``, ``signature_component_required``, ``signature_too_old``,
        ``content_digest_mismatch``, ...), or ``content_encoding_unsupported`` for a
        compressed answer (its digest is over bytes the client never sees).
    :param response: the response refused (its body read, for diagnostics).
    """

    def __init__(self, reason: str, response: httpx.Response) -> None:
        super().__init__(
            f"the response to {response.request.method} {response.request.url} is not "
            f"validly signed: {reason}"
        )
        self.reason, self.response = reason, response


def request_message(request: httpx.Request) -> Message:
    """What a signature covers of ``request``, the way the middleware reads it on the
    server (an empty query is no query; field names lowercase; the default port dropped,
    as httpx does)."""
    url = request.url
    path = url.raw_path.partition(b"?")[0].decode("ascii") or "/"
    query = url.query.decode("ascii") or None
    return Message(
        method=request.method,
        scheme=url.scheme,
        authority=url.netloc.decode("ascii").lower(),
        path=path,
        query=query,
        headers=tuple((k.lower(), v) for k, v in request.headers.raw),
    )


def _run_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits (a :class:`StaticJWKS` lookup) from synchronous
    code; one that would wait is an error, not a deadlock."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError(
        "this key source does I/O: verify responses with an httpx.AsyncClient, or give "
        "the server's keys as a JWK Set"
    )


@dataclass(frozen=True, slots=True)
class MessageSigning:
    """A client's message-signing options.

    :param key: signs each request (ES256, PS256, PS512 or Ed25519; its ``keyid`` is
        sent), or ``None`` to send requests unsigned.
    :param response_keys: the resource server's public keys (a :class:`KeySource`, a
        JWK Set, or one JWK with its ``kid``); ``None`` leaves responses unchecked.
    :param policy: the response verifier's window and bounds (``tag="fapi-2-response"``).
    """

    key: SigningKey | None = None
    response_keys: KeySource | None = None
    policy: VerifyPolicy = RESPONSE_POLICY

    @classmethod
    def build(
        cls,
        key: SigningKey | None,
        response_keys: KeySource | Mapping[str, Any] | None,
        policy: VerifyPolicy = RESPONSE_POLICY,
    ) -> MessageSigning:
        """Options from a key and the server's keys in any of the accepted forms.

        :raises ValueError: a JWK Set :class:`StaticJWKS` refuses.
        """
        keys: KeySource | None
        if response_keys is None or isinstance(response_keys, KeySource):
            keys = response_keys
        elif "keys" in response_keys:
            keys = StaticJWKS(response_keys)
        else:
            keys = StaticJWKS({"keys": [dict(response_keys)]})
        return cls(key, keys, policy)

    def sign(self, request: httpx.Request, *, now: int) -> Message:
        """Put ``Content-Digest`` (when the request has content), ``Signature-Input`` and
        ``Signature`` on ``request`` (its body already read); any earlier ones are
        replaced. A request going to be verified asks for an uncompressed answer.

        :returns: the request as it was signed, for :meth:`verify`.
        :raises HTTPSignatureError: a covered header that is not visible ASCII.
        """
        for name in _SIGNATURE_FIELDS:
            request.headers.pop(name, None)
        if self.response_keys is not None:
            request.headers["Accept-Encoding"] = "identity"
        if self.key is None:
            return request_message(request)
        if request.content:
            request.headers["Content-Digest"] = content_digest(request.content)
        message = request_message(request)
        for field, value in sign_request(message, key=self.key, now=now):
            request.headers[field.decode("ascii")] = value.decode("ascii")
        return request_message(request)

    async def verify(
        self, response: httpx.Response, sent: Message, *, now: int
    ) -> VerifiedSignature | None:
        """Check the response to ``sent`` (its body read): the signature, then the body
        against the covered ``Content-Digest``. An error status without any signature
        (a refusal the server's middleware sends unsigned) is passed as it is: it
        carries nothing to act on. ``None`` when nothing was checked.

        :raises ResponseSignatureError: the first failing check.
        """
        keys = self.response_keys
        if keys is None or not self._checks(response):
            return None
        headers = tuple((k.lower(), v) for k, v in response.headers.raw)
        message = with_status(sent, response.status_code, headers)
        body = response.content
        try:
            verified = await verify_response(
                message,
                key_source=keys,
                now=now,
                has_body=bool(body) and sent.method != "HEAD",
                request_label=REQUEST_LABEL if sent.field_lines(b"signature") else None,
                policy=self.policy,
            )
        except HTTPSignatureError as exc:
            raise ResponseSignatureError(exc.reason, response) from exc
        if verified.content_digest is not None:
            checker = DigestChecker(verified.content_digest)
            checker.update(body)
            if not checker.matches():
                raise ResponseSignatureError("content_digest_mismatch", response)
        return verified

    def _checks(self, response: httpx.Response) -> bool:
        if self.response_keys is None:
            return False
        return response.status_code < 400 or "signature-input" in response.headers

    def check_encoding(self, response: httpx.Response) -> None:
        """Before the body is read (and decoded): a response to be verified must come
        uncompressed, as it was asked for, since its digest is over the bytes sent.

        :raises ResponseSignatureError: ``content_encoding_unsupported``.
        """
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity" and self._checks(response):
            raise ResponseSignatureError("content_encoding_unsupported", response)

    def verify_now(
        self, response: httpx.Response, sent: Message, *, now: int
    ) -> VerifiedSignature | None:
        """:meth:`verify` for a synchronous client (a key source that never waits)."""
        return _run_now(self.verify(response, sent, now=now))
