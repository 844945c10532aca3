"""The demo's message-signing leg (RFC 9421, the FAPI 2.0 HTTP Signatures profile): the
accounts API verifies signed requests on ``/accounts`` and signs its responses, configured
from the environment (``DPOP_GUARD_HTTPSIG*``); the demo client signs with
:class:`~dpop_guard.client.DPoPAuth` and verifies every answer; then a body changed after
signing, an unsigned request and an answer checked against the wrong server key are
refused. Skipped, and said so, where the ``httpsig`` extra is not installed."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import httpx

from ...client import DPoPAuth, ProofSigner
from ._report import Report, outcome

if TYPE_CHECKING:
    from ...httpsig import SigningKey

CLIENT_KEYID: Final = "demo-client-sig-1"
SERVER_KEYID: Final = "accounts-api-sig-1"
# /accounts and below: signed requests only, signed answers; /health stays as it is.
MODES: Final = "/accounts=required /=off"
SEARCH: Final = b'{"currency": "EUR"}'
TAMPERED: Final = b'{"currency": "GBP"}'  # the same length: only the digest can tell


def available() -> bool:
    """Whether the ``httpsig`` extra (``http-sf``) is installed."""
    return importlib.util.find_spec("http_sf") is not None


def _private_jwk(key: SigningKey) -> dict[str, Any]:
    from ...client import ProofSigner
    from ..conformance import _private_jwk as private_members

    # Built from the key's numbers, coordinates at full length (joserfc at its floor takes
    # no key object, and may drop a leading zero byte).
    jwk = private_members(ProofSigner(key.key))
    jwk.update(kid=key.keyid, alg=key.alg)
    return jwk


def _covered(signature_input: str) -> str:
    """The components a ``Signature-Input`` field covers, for the report: its own, then
    the request's (``;req``): ``@status content-type; of the request: @method``."""
    inner = signature_input.partition("=(")[2].partition(")")[0].replace('"', "")
    own, of_request = [], []
    for item in inner.split():
        name, _, params = item.partition(";")
        if "req" in params.split(";"):
            of_request.append(name)
        else:
            own.append(item)
    text = " ".join(own)
    return f"{text}; of the request: {' '.join(of_request)}" if of_request else text


@dataclass(frozen=True)
class MessageSigningSetup:
    """The client's signing key and the API's, fresh for each run."""

    client_key: SigningKey
    server_key: SigningKey
    client_id: str

    @classmethod
    def generate(cls, client_id: str) -> MessageSigningSetup:
        from cryptography.hazmat.primitives.asymmetric import ec

        from ...httpsig import SigningKey

        return cls(
            SigningKey(ec.generate_private_key(ec.SECP256R1()), CLIENT_KEYID),
            SigningKey(ec.generate_private_key(ec.SECP256R1()), SERVER_KEYID),
            client_id,
        )

    def environment(self) -> dict[str, str]:
        """What the accounts API is started with: the modes, the client's public key
        (found only for the token's own client), the API's private key."""
        return {
            "DPOP_GUARD_HTTPSIG": MODES,
            "DPOP_GUARD_HTTPSIG_CLIENT_JWKS": json.dumps(
                {self.client_id: {"keys": [self.client_key.public_jwk()]}}
            ),
            "DPOP_GUARD_HTTPSIG_SIGNING_KEY": json.dumps(_private_jwk(self.server_key)),
        }

    @property
    def response_keys(self) -> dict[str, Any]:
        """The API's public JWK Set, as the client holds it."""
        return {"keys": [self.server_key.public_jwk()]}

    def auth(self, signer: ProofSigner, token: str | None) -> DPoPAuth:
        return DPoPAuth(
            signer, token, signing_key=self.client_key, response_keys=self.response_keys
        )


class SigningLeg:
    """The steps of the leg, printed through ``report``."""

    def __init__(self, setup: MessageSigningSetup, api: str, report: Report) -> None:
        self.setup, self.api, self.report = setup, api, report

    async def run(self, http: httpx.AsyncClient, signer: ProofSigner, token: str) -> None:
        from ...httpsig import ResponseSignatureError

        print("\nMessage signing (RFC 9421, FAPI 2.0 HTTP Signatures), from DPOP_GUARD_HTTPSIG")
        search = f"{self.api}/accounts/search"
        auth = self.setup.auth(signer, token)
        title = "POST /accounts/search, signed, answer verified"
        try:
            response = await http.post(search, content=SEARCH, auth=auth)
        except ResponseSignatureError as exc:
            self.report.line(False, title, f"the answer's signature: {exc.reason}")
        else:
            found = response.json().get("accounts", []) if response.status_code == 200 else []
            self.report.line(
                response.status_code == 200 and len(found) == 2,
                title,
                f"{outcome(response)}, {len(found)} EUR accounts",
            )
            sent = response.request.headers
            self.report.detail(
                f"request {self.setup.client_key.alg} keyid {CLIENT_KEYID}: "
                f"{_covered(sent['signature-input'])}"
            )
            self.report.detail(
                f"response {self.setup.server_key.alg} keyid {SERVER_KEYID}: "
                f"{_covered(response.headers.get('signature-input', ''))}"
            )

        signed = next(auth.sync_auth_flow(http.build_request("POST", search, content=SEARCH)))
        tampered = httpx.Request("POST", signed.url, headers=signed.headers, content=TAMPERED)
        self.report.response(
            "the same request, its body changed after signing",
            await http.send(tampered),
            401,
        )
        unsigned = await http.post(search, content=SEARCH, auth=DPoPAuth(signer, token))
        self.report.response("the same request, unsigned", unsigned, 401)
        self.report.detail(f"Accept-Signature: {unsigned.headers.get('accept-signature', '')}")

        from cryptography.hazmat.primitives.asymmetric import ec

        from ...httpsig import SigningKey

        # Another key under the API's keyid: what a server in the middle would sign with.
        impostor = SigningKey(ec.generate_private_key(ec.SECP256R1()), SERVER_KEYID)
        wrong = DPoPAuth(
            signer,
            token,
            signing_key=self.setup.client_key,
            response_keys={"keys": [impostor.public_jwk()]},
        )
        title = "the answer checked with another server key"
        try:
            await http.get(f"{self.api}/accounts", auth=wrong)
        except ResponseSignatureError as exc:
            self.report.line(True, title, f"refused by the client: {exc.reason}")
        else:
            self.report.line(False, title, "accepted")
