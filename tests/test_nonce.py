"""Server nonces: the HMAC source, the verifier's use of it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpop_guard.client import ProofSigner
from dpop_guard.errors import InvalidDPoPProof, UseDPoPNonce
from dpop_guard.nonce import HMACNonceSource
from dpop_guard.proof import ProofPolicy, VerifiedProof, verify_proof
from dpop_guard.testing import make_proof

SECRET = b"a fleet-wide secret of 32 bytes!"
NOW = 1_800_000_020  # 20 s into a 60 s step
URL = "https://rs.example.com/accounts"


@pytest.fixture(name="source")
def _source() -> HMACNonceSource:
    return HMACNonceSource(SECRET, step=60)


class TestHMACNonceSource:
    def test_protocol(self, source: HMACNonceSource) -> None:
        """A nonce lives two steps."""
        assert source.lifetime == 120

    def test_lifecycle(self, source: HMACNonceSource) -> None:
        """current in its step, expiring in the next, invalid after."""
        nonce = source.issue("jkt-a", NOW)
        assert source.check(nonce, "jkt-a", NOW) == "current"
        assert source.check(nonce, "jkt-a", NOW + 39) == "current"
        assert source.check(nonce, "jkt-a", NOW + 40) == "expiring"
        assert source.check(nonce, "jkt-a", NOW + 99) == "expiring"
        assert source.check(nonce, "jkt-a", NOW + 100) == "invalid"

    def test_clock_behind_issuer(self, source: HMACNonceSource) -> None:
        """A peer whose clock is one step behind accepts the nonce; two steps do not."""
        nonce = source.issue("jkt-a", NOW + 60)
        assert source.check(nonce, "jkt-a", NOW) == "current"
        assert source.check(nonce, "jkt-a", NOW - 60) == "invalid"

    def test_key_bound(self, source: HMACNonceSource) -> None:
        """A nonce issued to one key is worthless with another."""
        assert source.check(source.issue("jkt-a", NOW), "jkt-b", NOW) == "invalid"

    def test_shared_secret(self, source: HMACNonceSource) -> None:
        """Another instance with the same secret accepts it; another secret does not."""
        nonce = source.issue("jkt-a", NOW)
        assert HMACNonceSource(SECRET).check(nonce, "jkt-a", NOW) == "current"
        assert HMACNonceSource(b"x" * 32).check(nonce, "jkt-a", NOW) == "invalid"
        assert HMACNonceSource.ephemeral().check(nonce, "jkt-a", NOW) == "invalid"

    def test_tampered(self, source: HMACNonceSource) -> None:
        """Changing the step or the MAC invalidates it."""
        from dpop_guard._b64 import b64url_decode, b64url_encode

        raw = bytearray(b64url_decode(source.issue("jkt-a", NOW)))
        raw[7] ^= 1  # the step
        assert source.check(b64url_encode(bytes(raw)), "jkt-a", NOW) == "invalid"
        raw[7] ^= 1
        raw[-1] ^= 1  # the MAC
        assert source.check(b64url_encode(bytes(raw)), "jkt-a", NOW) == "invalid"

    @given(st.text(max_size=80))
    def test_garbage(self, nonce: str) -> None:
        """Arbitrary strings are invalid, never an exception."""
        assert HMACNonceSource(SECRET).check(nonce, "jkt-a", NOW) == "invalid"

    @pytest.mark.parametrize("kwargs", [{"secret": b"short"}, {"secret": SECRET, "step": 0}])
    def test_invalid_config(self, kwargs: dict[str, object]) -> None:
        """Short secrets and empty steps are refused."""
        with pytest.raises(ValueError):
            HMACNonceSource(**kwargs)  # type: ignore[arg-type]


class TestVerifierWithNonces:
    def verify(self, proof: str, source: HMACNonceSource, now: int = NOW) -> VerifiedProof:
        return verify_proof(proof, method="GET", url=URL, access_token=None, now=now, nonces=source)

    def test_missing(self, signer: ProofSigner, source: HMACNonceSource) -> None:
        """No nonce: use_dpop_nonce with a fresh nonce bound to the proof's key."""
        with pytest.raises(UseDPoPNonce) as info:
            self.verify(make_proof(signer, htu=URL, iat=NOW), source)
        assert info.value.reason == "nonce_missing" and info.value.status == 401
        assert source.check(info.value.nonce, signer.jkt, NOW) == "current"

    @pytest.mark.parametrize("which", ["stale", "foreign", "garbage"])
    def test_invalid(self, signer: ProofSigner, source: HMACNonceSource, which: str) -> None:
        """Stale, foreign and garbage nonces get use_dpop_nonce and a fresh one."""
        nonce = {
            "stale": source.issue(signer.jkt, NOW - 120),
            "foreign": source.issue("someone-else", NOW),
            "garbage": "xyz",
        }[which]
        with pytest.raises(UseDPoPNonce) as info:
            self.verify(make_proof(signer, htu=URL, iat=NOW, claims={"nonce": nonce}), source)
        assert info.value.reason == "nonce_invalid"

    def test_stale_iat_asks_for_nonce(self, signer: ProofSigner, source: HMACNonceSource) -> None:
        """Without a nonce, even an old proof is told to use one (not just refused)."""
        with pytest.raises(UseDPoPNonce):
            self.verify(make_proof(signer, htu=URL, iat=NOW - 3600), source)

    def test_valid_relaxes_iat(self, signer: ProofSigner, source: HMACNonceSource) -> None:
        """A valid nonce proves freshness for its lifetime: iat may be older than the window,
        and the replay record lives that long."""
        nonce = source.issue(signer.jkt, NOW)
        proof = make_proof(signer, htu=URL, iat=NOW - 100, claims={"nonce": nonce})
        result = self.verify(proof, source)
        assert result.next_nonce is None
        assert result.replay_ttl == ProofPolicy().replay_ttl(120) == 120 + 10 + 1
        with pytest.raises(InvalidDPoPProof) as info:
            self.verify(make_proof(signer, htu=URL, iat=NOW - 200, claims={"nonce": nonce}), source)
        assert info.value.reason == "iat_too_old"

    def test_expiring_sends_next(self, signer: ProofSigner, source: HMACNonceSource) -> None:
        """A nonce from the previous step is accepted and a newer one is offered."""
        nonce = source.issue(signer.jkt, NOW - 60)
        result = self.verify(make_proof(signer, htu=URL, iat=NOW, claims={"nonce": nonce}), source)
        next_nonce = result.next_nonce
        assert next_nonce is not None and source.check(next_nonce, signer.jkt, NOW) == "current"

    def test_without_source_nonce_is_optional(self, signer: ProofSigner) -> None:
        """Nonces are not required unless a source is given."""
        proof = make_proof(signer, htu=URL, iat=NOW, claims={"nonce": "anything"})
        result = verify_proof(proof, method="GET", url=URL, access_token=None, now=NOW)
        assert result.nonce == "anything"
