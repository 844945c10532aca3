"""Everything Authlete's introspection can check, through the production client over real
HTTP against the simulator, on both API versions: audience (RFC 8707 ``resources``),
step-up (RFC 9470 ``acrValues``/``maxAge``), certificate binding (RFC 8705), Authlete's
own DPoP nonces, and the rich facts an OK answer carries."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import MappingProxyType
from typing import Any

import httpx
import pytest

from dpop_guard.challenges import challenge_for
from dpop_guard.client import ProofSigner
from dpop_guard.devtools.simulator import (
    DEFAULT_API_SECRET,
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
    create_simulator_app,
)
from dpop_guard.devtools.simulator._authorization import AuthorizationService
from dpop_guard.errors import (
    DPoPGuardError,
    InsufficientScope,
    InsufficientUserAuthentication,
    IntrospectionUnavailable,
    InvalidDPoPProof,
    InvalidRequest,
    InvalidToken,
    UseDPoPNonce,
)
from dpop_guard.introspection import InactiveToken, RequestFacts, TokenInfo
from dpop_guard.introspection._http import AsyncioHTTPClient
from dpop_guard.introspection.authlete import AuthleteIntrospector, AuthleteSettings
from dpop_guard.introspection.cached import CachingIntrospector
from dpop_guard.mtls import ClientCertificate
from dpop_guard.testing import make_proof
from tests._support.clock import Clock
from tests._support.pki import PKI
from tests._support.servers import ServerThread

HTU = "https://rs.example.com/accounts"
OURS = "https://rs.example.com"
OTHER = "https://other-api.example.com"
VERSIONS = ("V2", "V3")


class Sim:
    """A simulator of its own (its clock and service settings are changed by the tests)."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.state = SimulatorState(clock=self.clock)
        self.auth = AuthorizationService(clock=self.clock)
        self.server = ServerThread(create_simulator_app(self.state, self.auth))

    def reset(self) -> None:
        self.clock.now = 1_800_000_000.0
        self.auth.service.dpop_nonce_required = False
        self.auth.service.dpop_nonce_duration = 60
        self.state.reset_counters()

    def settings(self, version: str, resources: tuple[str, ...] = ()) -> AuthleteSettings:
        if version == "V2":
            return AuthleteSettings(
                base_url=self.server.url,
                api_version="V2",
                api_key=DEFAULT_SERVICE_ID,
                api_secret=DEFAULT_API_SECRET,
                resources=resources,
            )
        return AuthleteSettings(
            base_url=self.server.url,
            api_version="V3",
            api_key=DEFAULT_SERVICE_ID,
            access_token=DEFAULT_SERVICE_TOKEN,
            resources=resources,
        )


@pytest.fixture(scope="module", name="sim_server")
def _sim_server() -> Iterator[Sim]:
    sim = Sim()
    with sim.server:
        yield sim


@pytest.fixture(name="sim")
def _sim(sim_server: Sim) -> Sim:
    sim_server.reset()
    return sim_server


@pytest.fixture(name="http")
async def _http() -> AsyncIterator[AsyncioHTTPClient]:
    client = AsyncioHTTPClient()
    yield client
    await client.aclose()


@pytest.fixture(params=VERSIONS, name="version")
def _version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module", name="pki")
def _pki() -> PKI:
    return PKI.generate()


def client(sim: Sim, http: AsyncioHTTPClient, version: str, **kw: Any) -> AuthleteIntrospector:
    return AuthleteIntrospector(http, sim.settings(version, **kw), breaker=None)


def dpop_facts(
    sim: Sim, signer: ProofSigner, token: str, *, nonce: str | None = None, **kw: Any
) -> RequestFacts:
    claims = {"nonce": nonce} if nonce is not None else None
    proof = make_proof(signer, htu=HTU, access_token=token, iat=sim.clock(), claims=claims)
    return RequestFacts("GET", HTU, proof, signer.jkt, **kw)


def bearer_facts(**kw: Any) -> RequestFacts:
    return RequestFacts("GET", HTU, None, None, **kw)


def certificate(identity: Any) -> ClientCertificate:
    return ClientCertificate.from_der(identity.der, identity.chain_der)


class TestResources:
    async def test_token_for_another_api_is_refused(
        self, sim: Sim, http: AsyncioHTTPClient, version: str
    ) -> None:
        """A token issued for another API (the cuckoo's token) is refused by Authlete: an
        answer about the token alone, so a cache may remember it."""
        token = sim.state.create_token(subject="alice", scopes=["s"], resources=[OTHER])
        intro = client(sim, http, version, resources=(OURS,))
        with pytest.raises(InactiveToken) as info:
            await intro.introspect(token, request=bearer_facts())
        assert (info.value.status, info.value.error) == (401, "invalid_token")
        assert info.value.reason == "authlete_resource_mismatch"
        assert sim.state.log[-1]["resources"] == [OURS]

    async def test_token_for_this_api_passes(
        self, sim: Sim, http: AsyncioHTTPClient, version: str
    ) -> None:
        """A token issued for this API passes, and its resources are kept."""
        token = sim.state.create_token(subject="alice", scopes=["s"], resources=[OURS])
        info = await client(sim, http, version, resources=(OURS,)).introspect(
            token, request=bearer_facts()
        )
        assert info.resources == (OURS,)

    async def test_resources_are_sent_on_the_check_only(
        self, sim: Sim, http: AsyncioHTTPClient, signer: ProofSigner
    ) -> None:
        """With a proof, the check carries resources; the probe is the token alone."""
        token = sim.state.create_token(
            subject="alice", scopes=["s"], resources=[OURS], jkt=signer.jkt
        )
        intro = client(sim, http, "V3", resources=(OURS,))
        info = await intro.introspect(token, request=dpop_facts(sim, signer, token))
        assert info.jkt == signer.jkt
        sent = sorted(sim.state.log, key=lambda e: "dpop_sha256" in e)
        assert "resources" not in sent[0] and sent[1]["resources"] == [OURS]

    async def test_token_without_resources_is_not_restricted(
        self, sim: Sim, http: AsyncioHTTPClient, version: str
    ) -> None:
        """A token issued without resource indicators passes (the simulator's reading of
        Authlete, [U]): so the public-URL default cannot lock out existing tokens."""
        token = sim.state.create_token(subject="alice", scopes=["s"])
        info = await client(sim, http, version, resources=(OURS,)).introspect(
            token, request=bearer_facts()
        )
        assert info.resources == ()

    async def test_no_resources_configured_sends_none(
        self, sim: Sim, http: AsyncioHTTPClient
    ) -> None:
        """resources=() means no audience check: nothing is sent."""
        token = sim.state.create_token(subject="alice", scopes=["s"], resources=[OTHER])
        info = await client(sim, http, "V2").introspect(token, request=bearer_facts())
        assert info.resources == (OTHER,) and "resources" not in sim.state.log[-1]

    async def test_local_check_when_authlete_ignores_resources(self) -> None:
        """An OK naming only other resources is refused here too."""
        answer = {
            "action": "OK",
            "subject": "a",
            "accessTokenResources": [OTHER],
            "resources": [OURS],
        }
        intro = mock(lambda r: httpx.Response(200, json=answer), resources=(OURS,))
        with pytest.raises(InactiveToken) as info:
            await intro.introspect("t", request=bearer_facts())
        assert info.value.reason == "authlete_resource_mismatch"


class TestStepUp:
    async def test_acr_shortfall_is_refused(
        self, sim: Sim, http: AsyncioHTTPClient, version: str
    ) -> None:
        """acrValues not met: Authlete's refusal is RFC 9470's error, never cached."""
        token = sim.state.create_token(subject="a", scopes=["s"], acr="urn:low")
        facts = bearer_facts(acr_values=("urn:high",))
        with pytest.raises(DPoPGuardError) as info:
            await client(sim, http, version).introspect(token, request=facts)
        assert not isinstance(info.value, InactiveToken)
        assert isinstance(info.value, InsufficientUserAuthentication)
        assert (info.value.status, info.value.error) == (401, "insufficient_user_authentication")
        assert (info.value.acr_values, info.value.max_age) == (("urn:high",), None)
        assert info.value.reason == "authlete_insufficient_user_authentication"
        assert sim.state.log[-1]["acrValues"] == ["urn:high"]

    async def test_max_age_shortfall_is_refused(
        self, sim: Sim, http: AsyncioHTTPClient, version: str
    ) -> None:
        """maxAge exceeded: refused; maxAge is sent."""
        token = sim.state.create_token(subject="a", scopes=["s"], auth_time=int(sim.clock()) - 1000)
        with pytest.raises(DPoPGuardError) as info:
            await client(sim, http, version).introspect(token, request=bearer_facts(max_age=300))
        assert info.value.reason == "authlete_insufficient_user_authentication"
        assert sim.state.log[-1]["maxAge"] == 300

    async def test_met_requirement_returns_acr_and_auth_time(
        self, sim: Sim, http: AsyncioHTTPClient, version: str
    ) -> None:
        """Met: acr and authTime (epoch seconds) come back for local checks on hits."""
        when = int(sim.clock()) - 10
        token = sim.state.create_token(subject="a", scopes=["s"], acr="urn:high", auth_time=when)
        facts = bearer_facts(acr_values=("urn:high",), max_age=300)
        info = await client(sim, http, version).introspect(token, request=facts)
        assert (info.acr, info.auth_time) == ("urn:high", when)

    async def test_unknown_auth_time_is_none(self, sim: Sim, http: AsyncioHTTPClient) -> None:
        """Authlete's authTime 0 (not known) is None, not the epoch."""
        token = sim.state.create_token(subject="a", scopes=["s"])
        info = await client(sim, http, "V3").introspect(token, request=bearer_facts())
        assert info.auth_time is None and info.acr is None

    async def test_no_requirement_sends_nothing(self, sim: Sim, http: AsyncioHTTPClient) -> None:
        """No acr_values, no max_age (or 0): neither is sent."""
        token = sim.state.create_token(subject="a", scopes=["s"])
        await client(sim, http, "V3").introspect(token, request=bearer_facts(max_age=0))
        assert not {"acrValues", "maxAge"} & set(sim.state.log[-1])


class TestCertificateBinding:
    async def test_certificate_bound_token_with_bearer(
        self, sim: Sim, http: AsyncioHTTPClient, version: str, pki: PKI
    ) -> None:
        """A token bound only by certificate, on Bearer with the certificate: one call,
        jkt None, x5t_s256 the thumbprint."""
        token = sim.state.create_token(subject="a", scopes=["s"], x5t_s256=pki.alice.x5t_s256)
        facts = bearer_facts(client_certificate=certificate(pki.alice))
        info = await client(sim, http, version).introspect(token, request=facts)
        assert (info.jkt, info.x5t_s256) == (None, pki.alice.x5t_s256)
        assert len(sim.state.log) == 1

    async def test_certificate_bound_token_with_a_proof(
        self, sim: Sim, http: AsyncioHTTPClient, version: str, pki: PKI, signer: ProofSigner
    ) -> None:
        """The same token with a DPoP proof: the probe carries the certificate too, so its
        OK proves the token is not DPoP-bound (without it the probe would be refused and
        read as a DPoP binding)."""
        token = sim.state.create_token(subject="a", scopes=["s"], x5t_s256=pki.alice.x5t_s256)
        facts = dpop_facts(sim, signer, token, client_certificate=certificate(pki.alice))
        info = await client(sim, http, version).introspect(token, request=facts)
        assert (info.jkt, info.x5t_s256) == (None, pki.alice.x5t_s256)
        assert len(sim.state.log) == 2
        assert all(e["clientCertificate"] == pki.alice.pem for e in sim.state.log)

    async def test_bound_both_ways(
        self, sim: Sim, http: AsyncioHTTPClient, version: str, pki: PKI, signer: ProofSigner
    ) -> None:
        """Bound to a key and a certificate: both facts come back."""
        token = sim.state.create_token(
            subject="a", scopes=["s"], x5t_s256=pki.alice.x5t_s256, jkt=signer.jkt
        )
        facts = dpop_facts(sim, signer, token, client_certificate=certificate(pki.alice))
        info = await client(sim, http, version).introspect(token, request=facts)
        assert (info.jkt, info.x5t_s256) == (signer.jkt, pki.alice.x5t_s256)

    @pytest.mark.parametrize("presented", ["bob", None])
    async def test_other_or_no_certificate_is_refused(
        self, sim: Sim, http: AsyncioHTTPClient, version: str, pki: PKI, presented: str | None
    ) -> None:
        """Another client's certificate, or none: 401 invalid_token, never cached."""
        token = sim.state.create_token(subject="a", scopes=["s"], x5t_s256=pki.alice.x5t_s256)
        cert = None if presented is None else certificate(getattr(pki, presented))
        with pytest.raises(InvalidToken) as info:
            await client(sim, http, version).introspect(
                token, request=bearer_facts(client_certificate=cert)
            )
        assert not isinstance(info.value, InactiveToken)
        assert (info.value.status, info.value.reason) == (401, "authlete_unauthorized")

    async def test_chain_sent_as_path(self, sim: Sim, http: AsyncioHTTPClient, pki: PKI) -> None:
        """The chain goes as clientCertificatePath; with no chain the field is left out."""
        token = sim.state.create_token(subject="a", scopes=["s"], x5t_s256=pki.bob.x5t_s256)
        for cert in (certificate(pki.bob), ClientCertificate.from_der(pki.bob.der)):
            await client(sim, http, "V3").introspect(
                token, request=bearer_facts(client_certificate=cert)
            )
        with_chain, without = list(sim.state.log)
        assert with_chain["clientCertificatePath"] == list(certificate(pki.bob).chain_pems())
        assert cert.chain == () and "clientCertificatePath" not in without

    @pytest.mark.parametrize("value", [5, "", "not a thumbprint", ["x"]])
    async def test_bad_thumbprint_is_an_outage(self, value: object) -> None:
        """certificateThumbprint must be a base64url SHA-256 or null: else 503."""
        answer = {"action": "OK", "subject": "a", "certificateThumbprint": value}
        with pytest.raises(IntrospectionUnavailable) as info:
            await mock(lambda r: httpx.Response(200, json=answer)).introspect(
                "t", request=bearer_facts()
            )
        assert info.value.reason == "authlete_bad_response"


class TestAuthleteNonces:
    def require_nonces(self, sim: Sim) -> None:
        sim.auth.service.dpop_nonce_required = True

    async def test_missing_nonce_is_use_dpop_nonce(
        self, sim: Sim, http: AsyncioHTTPClient, version: str, signer: ProofSigner
    ) -> None:
        """A proof without Authlete's nonce: UseDPoPNonce carrying Authlete's nonce, which
        the challenge sends as exactly one DPoP-Nonce with a 401 use_dpop_nonce."""
        self.require_nonces(sim)
        token = sim.state.create_token(subject="a", scopes=["s"], jkt=signer.jkt)
        with pytest.raises(UseDPoPNonce) as info:
            await client(sim, http, version).introspect(
                token, request=dpop_facts(sim, signer, token)
            )
        assert info.value.nonce == sim.auth.nonce(sim.clock())
        response = challenge_for(info.value, algs=("ES256",))
        assert response.status == 401
        assert [v for k, v in response.headers if k == b"dpop-nonce"] == [info.value.nonce.encode()]
        (challenge,) = [v for k, v in response.headers if k == b"www-authenticate"]
        assert challenge.startswith(b"DPoP ") and b'error="use_dpop_nonce"' in challenge

    async def test_retry_with_nonce_passes_and_relays_the_next(
        self, sim: Sim, http: AsyncioHTTPClient, version: str, signer: ProofSigner
    ) -> None:
        """The retry with the nonce is OK; Authlete's next nonce is in lookup.dpop_nonce."""
        self.require_nonces(sim)
        token = sim.state.create_token(subject="a", scopes=["s"], jkt=signer.jkt)
        facts = dpop_facts(sim, signer, token, nonce=sim.auth.nonce(sim.clock()))
        info = await client(sim, http, version).introspect(token, request=facts)
        assert info.jkt == signer.jkt
        assert facts.lookup.dpop_nonce == sim.auth.nonce(sim.clock())

    async def test_stale_nonce_gets_a_fresh_one(
        self, sim: Sim, http: AsyncioHTTPClient, signer: ProofSigner
    ) -> None:
        """Past its lifetime the nonce is refused, and the refusal names the new one."""
        self.require_nonces(sim)
        old = sim.auth.nonce(sim.clock())
        sim.clock.now += 3 * sim.auth.service.dpop_nonce_duration
        token = sim.state.create_token(subject="a", scopes=["s"], jkt=signer.jkt)
        with pytest.raises(UseDPoPNonce) as info:
            await client(sim, http, "V3").introspect(
                token, request=dpop_facts(sim, signer, token, nonce=old)
            )
        assert info.value.nonce != old and info.value.nonce == sim.auth.nonce(sim.clock())

    async def test_refusal_is_not_cached(
        self, sim: Sim, http: AsyncioHTTPClient, signer: ProofSigner
    ) -> None:
        """Behind the cache the nonce refusal is not remembered: the retry is asked."""
        self.require_nonces(sim)
        token = sim.state.create_token(subject="a", scopes=["s"], jkt=signer.jkt)
        cache = CachingIntrospector(client(sim, http, "V3"), ttl=60)
        with pytest.raises(UseDPoPNonce) as info:
            await cache.introspect(token, request=dpop_facts(sim, signer, token))
        retry = dpop_facts(sim, signer, token, nonce=info.value.nonce)
        assert (await cache.introspect(token, request=retry)).jkt == signer.jkt
        assert cache.negative_hits == 0 and retry.lookup.cache_hit is False

    async def test_unknown_token_with_a_nonce_stays_inactive(
        self, sim: Sim, http: AsyncioHTTPClient, signer: ProofSigner
    ) -> None:
        """With nonces required every answer carries dpopNonce; an unknown token is still
        an inactive token, not a request to retry with the nonce."""
        self.require_nonces(sim)
        facts = dpop_facts(sim, signer, "no-such-token")
        with pytest.raises(InactiveToken):
            await client(sim, http, "V3").introspect("no-such-token", request=facts)

    async def test_no_nonce_when_not_required(
        self, sim: Sim, http: AsyncioHTTPClient, signer: ProofSigner
    ) -> None:
        """Without dpopNonceRequired there is no nonce to relay."""
        token = sim.state.create_token(subject="a", scopes=["s"], jkt=signer.jkt)
        facts = dpop_facts(sim, signer, token)
        await client(sim, http, "V3").introspect(token, request=facts)
        assert facts.lookup.dpop_nonce is None

    async def test_proof_refused_with_the_current_nonce_stays_a_proof_error(self) -> None:
        """invalid_dpop_proof for a proof that already carries the expected nonce is a
        proof error, not a request for the nonce (a client would retry forever)."""
        signer = ProofSigner.generate("ES256")
        proof = make_proof(signer, htu=HTU, access_token="t", claims={"nonce": "n-1"})
        answer = {
            "action": "UNAUTHORIZED",
            "dpopNonce": "n-1",
            "responseContent": 'DPoP error="invalid_dpop_proof"',
        }
        facts = RequestFacts("GET", HTU, proof, signer.jkt)
        with pytest.raises(InvalidDPoPProof) as info:
            await mock(lambda r: httpx.Response(200, json=answer)).introspect("t", request=facts)
        assert not isinstance(info.value, UseDPoPNonce)

    @pytest.mark.parametrize("nonce", ["", "has space", 'quo"te', "ü", 7, "n" * 513])
    async def test_bad_nonce_is_an_outage(self, nonce: object) -> None:
        """A dpopNonce that is not 1*NQCHAR never reaches a header: 503."""
        for answer in (
            {"action": "OK", "dpopNonce": nonce},
            {
                "action": "UNAUTHORIZED",
                "dpopNonce": nonce,
                "responseContent": 'DPoP error="use_dpop_nonce"',
            },
        ):
            with pytest.raises(IntrospectionUnavailable) as info:
                await mock(lambda r, a=answer: httpx.Response(200, json=a)).introspect(
                    "t", request=bearer_facts()
                )
            assert info.value.reason == "authlete_bad_response"


DETAILS = [{"type": "payment_initiation", "instructedAmount": {"currency": "EUR", "amount": "5"}}]


class TestRichFacts:
    async def test_facts_are_kept_read_only(
        self, sim: Sim, http: AsyncioHTTPClient, version: str
    ) -> None:
        """authorizationDetails, grantId, consentedClaims and clientIdAlias reach
        TokenInfo, the details deeply read-only."""
        token = sim.state.create_token(
            subject="a",
            scopes=["s"],
            authorization_details=DETAILS,
            grant_id="g-1",
            consented_claims=["name", "email"],
            client_id_alias="my-client",
        )
        info = await client(sim, http, version).introspect(token, request=bearer_facts())
        assert (info.grant_id, info.consented_claims, info.client_id_alias) == (
            "g-1",
            ("name", "email"),
            "my-client",
        )
        assert info.authorization_details is not None
        (detail,) = info.authorization_details
        assert isinstance(detail, MappingProxyType)
        assert detail["instructedAmount"]["amount"] == "5"
        with pytest.raises(TypeError):
            detail["type"] = "other"  # type: ignore[index]

    async def test_token_create_over_http_carries_the_facts(
        self, sim: Sim, http: AsyncioHTTPClient, pki: PKI
    ) -> None:
        """/auth/token/create takes every fact, and introspection returns them."""
        async with httpx.AsyncClient(base_url=sim.server.url) as raw:
            created = await raw.post(
                "/api/auth/token/create",
                auth=(DEFAULT_SERVICE_ID, DEFAULT_API_SECRET),
                json={
                    "subject": "a",
                    "scopes": ["s"],
                    "certificateThumbprint": pki.alice.x5t_s256,
                    "resources": [OURS],
                    "acr": "urn:high",
                    "authTime": 1_799_999_000,
                    "authorizationDetails": {"elements": DETAILS},
                    "grantId": "g-2",
                    "consentedClaims": ["name"],
                    "clientIdAlias": "alias",
                    "clientIdAliasUsed": True,
                },
            )
        token = created.json()["accessToken"]
        facts = bearer_facts(client_certificate=certificate(pki.alice))
        info = await client(sim, http, "V2", resources=(OURS,)).introspect(token, request=facts)
        assert info == TokenInfo(
            subject="a",
            client_id=info.client_id,
            scopes=frozenset({"s"}),
            expires_at=info.expires_at,
            jkt=None,
            x5t_s256=pki.alice.x5t_s256,
            acr="urn:high",
            auth_time=1_799_999_000,
            resources=(OURS,),
            authorization_details=info.authorization_details,
            grant_id="g-2",
            consented_claims=("name",),
            client_id_alias="alias",
        )
        assert info.authorization_details is not None
        assert info.authorization_details[0]["type"] == "payment_initiation"

    @pytest.mark.parametrize(
        "field",
        [
            {"acr": 5},
            {"authTime": "yesterday"},
            {"authTime": -1},
            {"authTime": True},
            {"grantId": []},
            {"clientIdAlias": 1},
            {"consentedClaims": "name"},
            {"consentedClaims": [1]},
            {"accessTokenResources": OURS},
            {"resources": [None]},
            {"authorizationDetails": []},
            {"authorizationDetails": {"elements": {"type": "x"}}},
            {"authorizationDetails": {"elements": [{"no": "type"}]}},
            {"authorizationDetails": {"elements": [{"type": 1}]}},
        ],
    )
    async def test_wrong_type_is_an_outage(self, field: dict[str, Any]) -> None:
        """A fact of the wrong type is 503 authlete_bad_response, never a crash."""
        answer = {"action": "OK", "subject": "a"} | field
        with pytest.raises(IntrospectionUnavailable) as info:
            await mock(lambda r: httpx.Response(200, json=answer)).introspect(
                "t", request=bearer_facts()
            )
        assert info.value.reason == "authlete_bad_response"

    async def test_deep_nesting_is_an_outage(self) -> None:
        """JSON nested past any limit is 503, not a RecursionError."""
        deep = "[" * 200_000 + "]" * 200_000
        body = '{"action":"OK","authorizationDetails":{"elements":' + deep + "}}"
        with pytest.raises(IntrospectionUnavailable) as info:
            await mock(lambda r: httpx.Response(200, text=body)).introspect(
                "t", request=bearer_facts()
            )
        assert info.value.reason == "authlete_bad_response"

    async def test_nesting_past_the_freeze_limit_is_an_outage(self) -> None:
        """Details nested deeper than the read-only copy goes are 503 as well."""
        nested: Any = "leaf"
        for _ in range(40):
            nested = {"n": nested}
        answer = {
            "action": "OK",
            "authorizationDetails": {"elements": [{"type": "t", "x": nested}]},
        }
        with pytest.raises(IntrospectionUnavailable):
            await mock(lambda r: httpx.Response(200, json=answer)).introspect(
                "t", request=bearer_facts()
            )


class TestResponseContentIsBearer:
    async def test_subject_mismatch_is_not_insufficient_scope(
        self, sim: Sim, http: AsyncioHTTPClient
    ) -> None:
        """The simulator's FORBIDDEN for a subject mismatch (invalid_request in a Bearer
        responseContent), fed to the client, stays invalid_request: only its error and
        error_description are taken, never its scheme, and it is not insufficient_scope."""
        token = sim.state.create_token(subject="alice", scopes=["s"])
        async with httpx.AsyncClient(base_url=sim.server.url) as raw:
            answer = (
                await raw.post(
                    "/api/auth/introspection",
                    auth=(DEFAULT_SERVICE_ID, DEFAULT_API_SECRET),
                    json={"token": token, "subject": "mallory"},
                )
            ).json()
        assert answer["action"] == "FORBIDDEN"
        assert answer["responseContent"].startswith('Bearer error="invalid_request"')
        with pytest.raises(InvalidRequest) as info:
            await mock(lambda r: httpx.Response(200, json=answer)).introspect(
                token, request=bearer_facts(scopes=("s",))
            )
        assert not isinstance(info.value, InsufficientScope)
        assert (info.value.status, info.value.error) == (403, "invalid_request")
        response = challenge_for(info.value, algs=("ES256",))
        (challenge,) = [v for k, v in response.headers if k == b"www-authenticate"]
        assert challenge.startswith(b"DPoP ") and b'error="invalid_request"' in challenge

    async def test_forbidden_without_a_code_is_not_insufficient_scope(self) -> None:
        """A FORBIDDEN whose responseContent names no known error is not read as a scope
        shortfall: we never send scopes, so Authlete did not judge them."""
        for content in (None, "Bearer", 'Bearer error="something_new"'):
            answer = {"action": "FORBIDDEN", "responseContent": content}
            with pytest.raises(InvalidToken) as info:
                await mock(lambda r, a=answer: httpx.Response(200, json=a)).introspect(
                    "t", request=bearer_facts(scopes=("s",))
                )
            assert info.value.reason == "authlete_forbidden"


def mock(handler: Any, *, resources: tuple[str, ...] = ()) -> AuthleteIntrospector:
    """The client over httpx.MockTransport, for answers the simulator never gives."""
    settings = AuthleteSettings(
        base_url="https://authlete.test",
        api_key="1",
        access_token="t",
        resources=resources,
        timeout=2.0,
    )
    return AuthleteIntrospector(
        httpx.AsyncClient(transport=httpx.MockTransport(handler)), settings, breaker=None
    )
