"""Helpers for tests of apps protected by dpop_guard (and for dpop_guard's own tests,
and the demo): proofs that are wrong on purpose, and the consent step of the code flow."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any, Final

import httpx

from .client import DPoPAuth, OAuthError, ProofSigner, _Answer, _error_from
from .proof import DPOP_TYP, compute_ath

__all__ = ["DELETE", "DPoPAuth", "ProofSigner", "make_proof", "submit_consent"]

MAX_CONSENT_PAGE: Final = 65536

DELETE: Any = object()
"""Pass as an override value to remove that member."""


def _merge(base: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    for name, value in (overrides or {}).items():
        if value is DELETE:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def make_proof(
    signer: ProofSigner,
    *,
    htm: str = "GET",
    htu: str,
    access_token: str | None = None,
    iat: float | None = None,
    header: Mapping[str, Any] | None = None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """A proof signed by ``signer``, with ``header`` and ``claims`` members overridden
    (or removed with :data:`DELETE`). Valid unless an override makes it otherwise.

    >>> import json
    >>> from dpop_guard._b64 import b64url_decode
    >>> proof = make_proof(ProofSigner.generate("ES256"), htu="https://rs/accounts",
    ...     header={"typ": "JWT"})
    >>> json.loads(b64url_decode(proof.split(".")[0]))["typ"]
    'JWT'
    """
    base_header = _merge(
        {"typ": DPOP_TYP, "alg": signer.alg, "jwk": dict(signer.public_jwk)}, header
    )
    body: dict[str, Any] = {
        "jti": secrets.token_urlsafe(16),
        "htm": htm,
        "htu": htu,
        "iat": int(time.time() if iat is None else iat),
    }
    if access_token is not None:
        body["ath"] = compute_ath(access_token)
    return signer.sign_raw(base_header, _merge(body, claims))


class _ConsentForm(HTMLParser):
    """The first form of a page: its action, hidden fields, each select's options (and the
    selected one) and its submit buttons by ``id``."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.options: dict[str, list[str]] = {}
        self.buttons: dict[str, tuple[str, str]] = {}
        self._select: str | None = None
        self._forms = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._forms += 1
            if self._forms == 1:
                self.action = values.get("action", "")
        if self._forms != 1:
            return  # only the first form is read
        name = values.get("name", "")
        if tag == "input" and values.get("type") == "hidden" and name:
            self.fields[name] = values.get("value", "")
        elif tag == "select" and name:
            self._select = name
            self.options[name] = []
        elif tag == "option" and self._select is not None:
            self.options[self._select].append(values.get("value", ""))
            if "selected" in values or len(self.options[self._select]) == 1:
                self.fields[self._select] = values.get("value", "")
        elif tag == "button" and values.get("type", "submit") == "submit" and "id" in values:
            self.buttons[values["id"]] = (name, values.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


async def submit_consent(
    http: httpx.AsyncClient,
    authorization_url: str,
    *,
    button: str = "approve",
    subject: str | None = None,
) -> str:
    """Step 3 of the code flow as a browser does it: load the consent page at
    ``authorization_url``, submit its form with the button whose ``id`` is ``button``
    (optionally choosing ``subject`` in the page's user list), and return the redirect
    target (the client's callback URL with the code, or the error, and ``iss``).

    The page must refuse to be framed (``X-Frame-Options: DENY``), as a consent page must
    against clickjacking. ``http`` must not follow redirects (httpx's default).

    For example::

        callback = await submit_consent(http, pushed.authorization_url)
        tokens = await fapi.exchange_code(callback, pushed)

    :raises OAuthError: the server's ``error`` when the page is refused (for example
        ``invalid_request_uri`` for a used ``request_uri``), or ``invalid_response`` when
        the page or the answer to the form is not what a browser could use.
    """
    page = await http.get(authorization_url)
    if page.status_code != 200:
        raise _error_from(_Answer(page.status_code, page.headers, page.content))
    if page.headers.get("x-frame-options", "").upper() != "DENY":
        raise OAuthError("invalid_response", "the consent page can be framed (clickjacking)")
    if len(page.content) > MAX_CONSENT_PAGE:
        raise OAuthError("invalid_response", "the consent page is too large")
    form = _ConsentForm()
    form.feed(page.text)
    form.close()
    if form.action is None or button not in form.buttons:
        raise OAuthError("invalid_response", f"the consent page has no form with {button!r}")
    data = dict(form.fields)
    if subject is not None:
        if not any(subject in options for options in form.options.values()):
            raise OAuthError("invalid_response", f"the consent page does not offer {subject!r}")
        data.update({name: subject for name, options in form.options.items() if subject in options})
    name, value = form.buttons[button]
    if name:
        data[name] = value
    answer = await http.post(str(page.url.join(form.action)), data=data)
    location = answer.headers.get("location")
    if answer.status_code not in (302, 303) or not location:
        raise _error_from(_Answer(answer.status_code, answer.headers, answer.content))
    return str(answer.url.join(location))
