"""htu behind reverse proxies: which headers are believed, common layouts, forged headers,
and the linear-time, size-capped parsers."""

from __future__ import annotations

import re
import string
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpop_guard import (
    AuthleteIntrospector,
    AuthleteSettings,
    DPoPGuardMiddleware,
    GuardSettings,
    InvalidRequest,
    ProofSigner,
    _proxy,
)
from dpop_guard._proxy import (
    MAX_FORWARDED_PAIRS,
    MAX_PROXY_ELEMENTS,
    MAX_PROXY_HEADER_BYTES,
    forwarded_origin,
    is_trusted_proxy,
    parse_forwarded,
    parse_networks,
    peer_is_trusted,
)
from dpop_guard.devtools.simulator import (
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
)
from dpop_guard.testing import make_proof
from tests._support.harness import assert_rejected, inner_app

TRUSTED = ("10.0.0.0/8", "192.168.1.1")
NGINX = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host")
ENVOY = ("x-forwarded-for", "x-forwarded-proto")
ALL_X = ("x-forwarded",)
RFC7239 = ("forwarded",)


@pytest.fixture(name="call")
async def _call(simulator: SimulatorState, simulator_url: str) -> AsyncIterator[Callable[..., Any]]:
    http = httpx.AsyncClient()
    clients: list[httpx.AsyncClient] = []

    async def call(
        signer: ProofSigner,
        htu: str,
        *,
        peer: str,
        headers: dict[str, str],
        proxy_headers: tuple[str, ...],
        path: str = "/accounts",
    ) -> httpx.Response:
        settings = GuardSettings(trusted_proxies=TRUSTED, proxy_headers=proxy_headers)
        app = DPoPGuardMiddleware(
            inner_app(),
            settings=settings,
            introspector=AuthleteIntrospector(
                http,
                AuthleteSettings(
                    base_url=simulator_url,
                    api_key=DEFAULT_SERVICE_ID,
                    access_token=DEFAULT_SERVICE_TOKEN,
                ),
            ),
        )
        token = simulator.create_token(subject="a", scopes=[], jkt=signer.jkt)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(peer, 40000)),
            base_url="http://internal:8000",
        )
        clients.append(client)
        proof = make_proof(signer, htu=htu, access_token=token)
        return await client.get(
            path, headers=headers | {"Authorization": f"DPoP {token}", "DPoP": proof}
        )

    yield call
    for client in clients:
        await client.aclose()
    await http.aclose()


async def status(call: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    response: httpx.Response = await call(*args, **kwargs)
    return response.status_code


PUBLIC = "https://api.bank.test/accounts"
INTERNAL = "http://internal:8000/accounts"


class TestLayouts:
    async def test_nginx_single_proxy(self, call: Callable[..., Any], signer: ProofSigner) -> None:
        """nginx terminating TLS, X-Forwarded-* named: -Proto and -Host give the origin."""
        headers = {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "api.bank.test",
            "X-Forwarded-For": "203.0.113.9",
        }
        kw = {"peer": "10.1.2.3", "headers": headers, "proxy_headers": NGINX}
        assert await status(call, signer, PUBLIC, **kw) == 200
        assert await status(call, signer, INTERNAL, **kw) == 401

    async def test_client_forwarded_behind_nginx_ignored(
        self, call: Callable[..., Any], signer: ProofSigner
    ) -> None:
        """Behind a proxy that sets only X-Forwarded-*, a client's own Forwarded (passed
        through untouched) decides nothing."""
        headers = {
            "Forwarded": "for=203.0.113.9;proto=http;host=evil.test",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "api.bank.test",
            "X-Forwarded-For": "203.0.113.9",
        }
        kw = {"peer": "10.1.2.3", "headers": headers, "proxy_headers": NGINX}
        assert await status(call, signer, "http://evil.test/accounts", **kw) == 401
        assert await status(call, signer, PUBLIC, **kw) == 200

    async def test_client_malformed_forwarded_behind_nginx_ignored(
        self, call: Callable[..., Any], signer: ProofSigner
    ) -> None:
        """An unnamed header is not even parsed: a client's junk Forwarded costs nothing."""
        headers = {
            "Forwarded": 'for="' + "x" * 20_000,
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "api.bank.test",
        }
        kw = {"peer": "10.1.2.3", "headers": headers, "proxy_headers": NGINX}
        assert await status(call, signer, PUBLIC, **kw) == 200

    async def test_client_prefix_behind_nginx_ignored(
        self, call: Callable[..., Any], signer: ProofSigner
    ) -> None:
        """nginx sets X-Forwarded-For/-Proto/-Host, not -Prefix: a client's own
        X-Forwarded-Prefix, passed through, decides nothing."""
        headers = {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "api.bank.test",
            "X-Forwarded-Prefix": "/evil",
        }
        kw = {"peer": "10.1.2.3", "headers": headers, "proxy_headers": NGINX}
        assert await status(call, signer, "https://api.bank.test/evil/accounts", **kw) == 401
        assert await status(call, signer, PUBLIC, **kw) == 200

    async def test_client_host_behind_envoy_ignored(
        self, call: Callable[..., Any], signer: ProofSigner
    ) -> None:
        """Envoy sets X-Forwarded-For and -Proto only: a client's own X-Forwarded-Host is
        ignored and the Host header (Envoy's :authority) counts."""
        headers = {
            "Host": "api.bank.test",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": "203.0.113.9",
            "X-Forwarded-Host": "evil.test",
        }
        kw = {"peer": "10.1.2.3", "headers": headers, "proxy_headers": ENVOY}
        assert await status(call, signer, "https://evil.test/accounts", **kw) == 401
        assert await status(call, signer, PUBLIC, **kw) == 200

    async def test_forwarded_proxy(self, call: Callable[..., Any], signer: ProofSigner) -> None:
        """An RFC 7239 proxy (Forwarded named): Forwarded is understood, and a client's
        X-Forwarded-Host and X-Forwarded-Prefix are ignored."""
        headers = {
            "Forwarded": 'for=203.0.113.9;proto=https;host="api.bank.test"',
            "X-Forwarded-Host": "other.test",
            "X-Forwarded-Prefix": "/evil",
        }
        kw = {"peer": "10.1.2.3", "headers": headers, "proxy_headers": RFC7239}
        assert await status(call, signer, PUBLIC, **kw) == 200
        assert await status(call, signer, "https://api.bank.test/evil/accounts", **kw) == 401
        assert await status(call, signer, "http://other.test/accounts", **kw) == 401

    async def test_forwarded_proxy_without_header(
        self, call: Callable[..., Any], signer: ProofSigner
    ) -> None:
        """Forwarded named but absent: the request's own origin, whatever X-Forwarded-* say."""
        headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.bank.test"}
        kw = {"peer": "10.1.2.3", "headers": headers, "proxy_headers": RFC7239}
        assert await status(call, signer, INTERNAL, **kw) == 200
        assert await status(call, signer, PUBLIC, **kw) == 401

    async def test_two_hops_right_most_untrusted(
        self, call: Callable[..., Any], signer: ProofSigner
    ) -> None:
        """CDN then load balancer: the hop describing the untrusted client counts, and an
        entry forged by the client on the left is not."""
        headers = {
            "Forwarded": "for=198.51.100.7;proto=http;host=evil.test, "
            "for=203.0.113.9;proto=https;host=api.bank.test, "
            "for=10.0.0.2;proto=http;host=lb.internal"
        }
        kw = {"peer": "10.0.0.3", "headers": headers, "proxy_headers": RFC7239}
        assert await status(call, signer, PUBLIC, **kw) == 200
        assert await status(call, signer, "http://evil.test/accounts", **kw) == 401

    async def test_quoted_comma_is_one_value(
        self, call: Callable[..., Any], signer: ProofSigner
    ) -> None:
        """A client cannot split an element with a quoted comma: ``host="a,for=10.0.0.9"``
        is one (invalid) host value, not a trusted hop."""
        headers = {"Forwarded": 'for=203.0.113.9;host="evil.test,for=10.0.0.9;host=api.bank.test"'}
        kw = {"peer": "10.1.2.3", "headers": headers, "proxy_headers": RFC7239}
        assert await status(call, signer, INTERNAL, **kw) == 200
        assert await status(call, signer, PUBLIC, **kw) == 401

    async def test_prefix_stripping_proxy(
        self, call: Callable[..., Any], signer: ProofSigner
    ) -> None:
        """A proxy that strips /bank and says so in X-Forwarded-Prefix."""
        headers = {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "api.bank.test",
            "X-Forwarded-Prefix": "/bank",
        }
        kw = {"peer": "10.1.2.3", "headers": headers, "proxy_headers": ALL_X}
        assert await status(call, signer, "https://api.bank.test/bank/accounts", **kw) == 200
        kw["proxy_headers"] = (*NGINX, "x-forwarded-prefix")
        assert await status(call, signer, "https://api.bank.test/bank/accounts", **kw) == 200

    async def test_prefix_stripping_proxy_path_holding_the_prefix(
        self, call: Callable[..., Any], signer: ProofSigner
    ) -> None:
        """The app sees the stripped path: a routed path that itself starts with the
        prefix (public /bank/bank/accounts) still gets the prefix, so it never shares the
        htu of /accounts (public /bank/accounts)."""
        headers = {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "api.bank.test",
            "X-Forwarded-Prefix": "/bank",
        }
        kw = {"peer": "10.1.2.3", "headers": headers, "proxy_headers": ALL_X}
        kw["path"] = "/bank/accounts"
        # Admitted, then the app's own 404 (it has no /bank/accounts): the guard let it by.
        assert await status(call, signer, "https://api.bank.test/bank/bank/accounts", **kw) == 404
        assert await status(call, signer, "https://api.bank.test/bank/accounts", **kw) == 401

    async def test_untrusted_peer_headers_ignored(
        self, call: Callable[..., Any], signer: ProofSigner
    ) -> None:
        """A client sending the headers itself gains nothing: htu is the request's own."""
        headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.bank.test"}
        kw = {"peer": "203.0.113.9", "headers": headers, "proxy_headers": NGINX}
        assert await status(call, signer, PUBLIC, **kw) == 401
        assert await status(call, signer, INTERNAL, **kw) == 200

    @pytest.mark.parametrize(
        ("headers", "proxy_headers", "reason"),
        [
            ({"Forwarded": 'for="unterminated'}, RFC7239, "proxy_header_malformed"),
            ({"Forwarded": "for=a;for=b"}, RFC7239, "proxy_header_malformed"),
            ({"Forwarded": "for=a" + ", for=a" * 2000}, RFC7239, "proxy_header_too_large"),
            (
                {"X-Forwarded-For": ", ".join(["203.0.113.9"] * (MAX_PROXY_ELEMENTS + 1))},
                NGINX,
                "proxy_header_too_large",
            ),
            (
                {"X-Forwarded-Host": "a" * (MAX_PROXY_HEADER_BYTES + 1)},
                NGINX,
                "proxy_header_too_large",
            ),
        ],
        ids=["unterminated", "repeated", "15kb-forwarded", "xff-hops", "xfh-bytes"],
    )
    async def test_unreadable_header_refused(
        self,
        call: Callable[..., Any],
        signer: ProofSigner,
        reasons: list[str],
        headers: dict[str, str],
        proxy_headers: tuple[str, ...],
        reason: str,
    ) -> None:
        """A named header from a trusted proxy that is over a cap or does not parse is a
        400 invalid_request: never read in part."""
        response = await call(
            signer, PUBLIC, peer="10.1.2.3", headers=headers, proxy_headers=proxy_headers
        )
        assert_rejected(response, 400, "invalid_request", reason, reasons)


NETS = parse_networks(TRUSTED)
BOTH = ("forwarded", "x-forwarded")  # all five headers


def origin(
    headers: dict[bytes, list[str]], proxy_headers: tuple[str, ...] = BOTH
) -> tuple[str | None, str | None, str]:
    found = forwarded_origin("10.9.9.9", headers, NETS, proxy_headers=proxy_headers)
    assert found is not None
    return (found.scheme, found.host, found.prefix)


class TestOrigin:
    @pytest.mark.parametrize(
        ("headers", "expected"),
        [
            ({b"x-forwarded-proto": ["ftp"], b"x-forwarded-host": ["a b"]}, (None, None, "")),
            ({b"x-forwarded-prefix": ["/a/../b"]}, (None, None, "")),
            ({b"x-forwarded-prefix": ["//evil"]}, (None, None, "")),
            ({b"x-forwarded-prefix": ["/bank/"]}, (None, None, "/bank")),
            (
                {
                    b"x-forwarded-for": ["203.0.113.9, 10.0.0.1"],
                    b"x-forwarded-host": ["a.test, b.test"],
                },
                (None, "a.test", ""),
            ),
            (
                {b"x-forwarded-for": ["1.1.1.1, 2.2.2.2, 10.0.0.1"], b"x-forwarded-host": ["x, y"]},
                (None, None, ""),
            ),
            ({b"forwarded": ["for=unknown;proto=https"]}, ("https", None, "")),
            (
                {b"forwarded": ['for="[2001:db8::1]:4711";host="[::1]:8443"']},
                (None, "[::1]:8443", ""),
            ),
            ({b"forwarded": ["for=192.0.2.1:4711;proto=HTTPS"]}, ("https", None, "")),
            ({b"forwarded": [" , ;", ""], b"x-forwarded-proto": ["https"]}, ("https", None, "")),
            (
                {b"forwarded": ["for=203.0.113.9", "for=10.0.0.1;host=lb"]},
                (None, None, ""),
            ),
            ({b"forwarded": ['host="a,b"']}, (None, None, "")),
        ],
    )
    def test_values(
        self, headers: dict[bytes, list[str]], expected: tuple[str | None, str | None, str]
    ) -> None:
        """Only well-formed schemes, hosts and prefixes are taken; misaligned lists are not."""
        assert origin(headers) == expected

    def test_only_named_headers(self) -> None:
        """Headers not named by proxy_headers are ignored, even from a trusted peer."""
        headers = {
            b"forwarded": ["proto=https;host=f.test"],
            b"x-forwarded-proto": ["http"],
            b"x-forwarded-host": ["x.test"],
            b"x-forwarded-prefix": ["/p"],
        }
        assert origin(headers, RFC7239) == ("https", "f.test", "")
        assert origin(headers, ALL_X) == ("http", "x.test", "/p")
        assert origin(headers, NGINX) == ("http", "x.test", "")
        assert origin(headers, ENVOY) == ("http", None, "")
        assert origin(headers, ("x-forwarded-prefix",)) == (None, None, "/p")
        assert origin(headers, BOTH) == ("https", "f.test", "")
        assert origin({b"x-forwarded-host": ["x.test"]}, ("forwarded", *NGINX)) == (
            None,
            "x.test",
            "",
        )

    @pytest.mark.parametrize("peer", [None, "", "203.0.113.9", "not-an-ip"])
    def test_untrusted(self, peer: str | None) -> None:
        """No origin from untrusted or unknown peers, and nothing is parsed."""
        headers = {b"x-forwarded-host": ["a"], b"forwarded": ['for="x' * 9999]}
        assert forwarded_origin(peer, headers, NETS, proxy_headers=BOTH) is None

    @pytest.mark.parametrize(
        ("peer", "trusted"),
        [
            ("10.9.9.9", True),
            ("::ffff:10.9.9.9", True),  # a dual-stack listener's view of an IPv4 peer
            ("[::ffff:10.9.9.9]:443", True),
            ("::FFFF:10.9.9.9", True),
            ("::ffff:203.0.113.9", False),
            ("::ffff:a09:909", True),  # the same address, written in hex
            ("64:ff9b::a09:909", False),  # NAT64 is not IPv4-mapped
        ],
    )
    def test_ipv4_mapped_peer_is_its_ipv4_address(self, peer: str, trusted: bool) -> None:
        """One rule for the proxy headers and the certificate headers: an IPv4-mapped
        IPv6 peer is matched as the IPv4 address it is."""
        assert is_trusted_proxy(peer, NETS) is trusted
        assert peer_is_trusted({"client": (peer, 1234)}, NETS) is trusted
        headers = {b"x-forwarded-host": ["a.test"]}
        found = forwarded_origin(peer, headers, NETS, proxy_headers=BOTH)
        assert (found is not None and found.host == "a.test") is trusted

    def test_ipv4_mapped_hops_in_a_chain(self) -> None:
        """A trusted hop written IPv4-mapped in X-Forwarded-For is skipped like its IPv4
        form: the right-most untrusted hop counts."""
        headers = {
            b"x-forwarded-for": ["198.51.100.7, ::ffff:10.9.9.8"],
            b"x-forwarded-host": ["edge.test, inner.test"],
        }
        found = forwarded_origin("10.9.9.9", headers, NETS, proxy_headers=BOTH)
        assert found is not None and found.host == "edge.test"

    def test_no_proxy_headers_named(self) -> None:
        """With nothing named, nothing is believed."""
        assert (
            forwarded_origin("10.0.0.1", {b"x-forwarded-host": ["a"]}, NETS, proxy_headers=())
            is None
        )


class TestSettings:
    def test_bad_network(self) -> None:
        """A bad entry is named."""
        with pytest.raises(ValueError, match="trusted_proxies"):
            GuardSettings(trusted_proxies=("10.0.0.0/33",), proxy_headers=NGINX)

    def test_trusted_proxies_require_proxy_headers(self) -> None:
        """Which headers the proxies set must be said, never guessed."""
        with pytest.raises(ValueError, match="proxy_headers"):
            GuardSettings(trusted_proxies=("10.0.0.0/8",))

    @pytest.mark.parametrize(
        "bad",
        [
            ("forwarded", "forwarded"),
            ("x-forwarded", "x-forwarded-host"),
            ("x-forwarded-for", "X-Forwarded-For"),
            ("x-forwarded-port",),
            ("all",),
        ],
    )
    def test_bad_proxy_headers(self, bad: tuple[str, ...]) -> None:
        """Only the known names, each header once (x-forwarded counts as all four)."""
        with pytest.raises(ValueError, match="proxy_headers"):
            GuardSettings(trusted_proxies=("10.0.0.0/8",), proxy_headers=bad)

    def test_from_env(self) -> None:
        """DPOP_GUARD_TRUSTED_PROXIES and DPOP_GUARD_PROXY_HEADERS, space- or comma-separated."""
        settings = GuardSettings.from_env(
            {
                "DPOP_GUARD_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
                "DPOP_GUARD_PROXY_HEADERS": " X-Forwarded-For, x-forwarded-proto ",
            }
        )
        assert settings.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
        assert settings.proxy_headers == ("x-forwarded-for", "x-forwarded-proto")

    def test_from_env_requires_proxy_headers(self) -> None:
        """Trusted proxies without PROXY_HEADERS stop start-up."""
        with pytest.raises(ValueError, match="DPOP_GUARD_PROXY_HEADERS"):
            GuardSettings.from_env({"DPOP_GUARD_TRUSTED_PROXIES": "10.0.0.0/8"})


VECTORS: list[tuple[list[str], list[dict[str, str]]]] = [
    (
        ["for=192.0.2.60;proto=http;by=203.0.113.43"],
        [{"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}],
    ),
    (['For="[2001:db8:cafe::17]:4711"'], [{"for": "[2001:db8:cafe::17]:4711"}]),
    (["for=192.0.2.43, for=198.51.100.17"], [{"for": "192.0.2.43"}, {"for": "198.51.100.17"}]),
    (["for=192.0.2.43", "for=198.51.100.17"], [{"for": "192.0.2.43"}, {"for": "198.51.100.17"}]),
    (['host="a,b";proto=https'], [{"host": "a,b", "proto": "https"}]),
    (['host="a;b=c, d"'], [{"host": "a;b=c, d"}]),
    ([r'x="a\"b\\c\,d"'], [{"x": 'a"b\\c,d'}]),
    (['x=""'], [{"x": ""}]),
    (["for=a ; proto=b\t,\tfor=c"], [{"for": "a", "proto": "b"}, {"for": "c"}]),
    ([";;for=a;;", ",,", ""], [{"for": "a"}]),
    ([""], []),
    (['x="caf\xe9"'], [{"x": "caf\xe9"}]),
]
MALFORMED = [
    'for="unterminated',
    'for="a"b',
    "for=a b",
    "for = a",
    "for =a",
    "for= a",
    "=a",
    "for",
    "for=",
    "for=a=b",
    'for=a"b"',
    "for=a;for=b",
    "FOR=a;for=b",
    "for=a\\b",
    'for="a\x00"',
    'for="a\nb"',
    "for=\xe9",
    "f\xf6r=a",
    'for="a\\',
]


class TestForwardedParser:
    @pytest.mark.parametrize(("lines", "expected"), VECTORS)
    def test_vectors(self, lines: list[str], expected: list[dict[str, str]]) -> None:
        """RFC 7239 examples, quoted strings with quoted pairs, OWS and empty elements."""
        assert parse_forwarded(lines) == expected

    @pytest.mark.parametrize("value", MALFORMED)
    def test_malformed(self, value: str) -> None:
        """Anything outside the grammar is refused, not skipped."""
        with pytest.raises(InvalidRequest) as info:
            parse_forwarded([value])
        assert info.value.reason == "proxy_header_malformed"

    @pytest.mark.parametrize(
        "lines",
        [
            ["for=a;" * 1000],
            ["x" * (MAX_PROXY_HEADER_BYTES + 1)],
            ["a" * (MAX_PROXY_HEADER_BYTES // 2), "b" * (MAX_PROXY_HEADER_BYTES // 2)],
            [""] * (MAX_PROXY_HEADER_BYTES + 2),
            [", ".join(["for=a"] * (MAX_PROXY_ELEMENTS + 1))],
            [";".join(f"p{i}=v" for i in range(MAX_FORWARDED_PAIRS + 1))],
        ],
        ids=["bytes", "bytes-unparseable", "bytes-over-lines", "many-empty-lines", "hops", "pairs"],
    )
    def test_caps(self, lines: list[str]) -> None:
        """Over a cap: refused (the byte cap before any parsing, so junk is not looked at)."""
        with pytest.raises(InvalidRequest) as info:
            parse_forwarded(lines)
        assert info.value.reason == "proxy_header_too_large"

    def test_at_the_caps(self) -> None:
        """Exactly at the caps still parses."""
        pairs = ";".join(f"p{i}=v" for i in range(MAX_FORWARDED_PAIRS))
        assert len(parse_forwarded([pairs])[0]) == MAX_FORWARDED_PAIRS
        hops = ",".join(["for=a"] * MAX_PROXY_ELEMENTS)
        assert len(parse_forwarded([hops])) == MAX_PROXY_ELEMENTS
        assert parse_forwarded(["x=" + "a" * (MAX_PROXY_HEADER_BYTES - 2)])[0]["x"]

    @pytest.mark.parametrize(
        "text",
        [
            ";" * MAX_PROXY_HEADER_BYTES,
            " ; ," * (MAX_PROXY_HEADER_BYTES // 4),
            "a=b;" * (MAX_PROXY_HEADER_BYTES // 4),
            'a="' + "\\\\" * ((MAX_PROXY_HEADER_BYTES - 4) // 2) + '"',
            'a="' + "x" * (MAX_PROXY_HEADER_BYTES - 3),
            "a" * MAX_PROXY_HEADER_BYTES,
            "a=" + "b" * (MAX_PROXY_HEADER_BYTES - 2),
            "a=b" + " " * (MAX_PROXY_HEADER_BYTES - 4) + "c",
        ],
        ids=[
            "semicolons",
            "ows-delims",
            "pairs",
            "escapes",
            "unterminated",
            "token",
            "value",
            "ows",
        ],
    )
    def test_linear_work(self, text: str) -> None:
        """Counting work, not time: on inputs shaped to make a backtracking parser
        quadratic, the scan makes at most one turn per character (at most two per pair),
        and the pairs it matches never overlap (each character is consumed once)."""
        assert len(text) <= MAX_PROXY_HEADER_BYTES
        turns = pairs = consumed = 0
        try:
            for token in _proxy._scan(text):
                turns += 1
                if not isinstance(token, str):
                    pairs += 1
                    consumed += token.end() - token.start()
        except InvalidRequest:
            pass
        assert turns <= min(len(text), 2 * pairs + 1)
        assert consumed <= len(text)

    def test_regexes_never_backtrack(self) -> None:
        """Every quantifier in the module's regexes is possessive, so no match can
        backtrack: its cost is bounded by the characters it consumes."""
        patterns = [v for v in vars(_proxy).values() if isinstance(v, re.Pattern)]
        assert len(patterns) >= 4
        for pattern in patterns:
            source = re.sub(r"\\.", "", pattern.pattern)  # escapes are literals
            source = re.sub(r"\[[^\]]*+\]", "C", source)  # classes are one atom
            for quantifier in re.finditer(r"[*+?}]", source):
                after = source[quantifier.end() : quantifier.end() + 1]
                before = source[quantifier.start() - 1]
                if quantifier[0] == "?" and before == "(":
                    continue  # (?: ... ) is a group, not a quantifier
                if quantifier[0] == "+" and before in "*+?}":
                    continue  # the possessive mark itself
                assert after == "+", f"{pattern.pattern!r}: greedy {quantifier[0]!r}"

    @given(st.lists(st.text(alphabet=st.characters(max_codepoint=0xFF)), max_size=4))
    def test_arbitrary_text(self, lines: list[str]) -> None:
        """Arbitrary text (latin-1, as ASGI headers decode) parses or is refused with
        InvalidRequest; nothing else ever escapes."""
        try:
            parse_forwarded(lines)
        except InvalidRequest as exc:
            assert exc.reason in ("proxy_header_malformed", "proxy_header_too_large")
        try:
            forwarded_origin(
                "10.0.0.1",
                {b"forwarded": lines, b"x-forwarded-for": lines},
                NETS,
                proxy_headers=BOTH,
            )
        except InvalidRequest:
            pass

    @given(
        st.lists(
            st.dictionaries(
                st.text(
                    alphabet=string.ascii_lowercase + string.digits + "-_.!#$%&'*+^`|~",
                    min_size=1,
                    max_size=8,
                ),
                st.text(
                    alphabet=st.characters(
                        min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"
                    ),
                    max_size=12,
                ),
                max_size=4,
            ).filter(bool),
            max_size=6,
        ),
        st.sampled_from([",", ", ", " ,\t"]),
        st.sampled_from([";", "; ", " ;"]),
    )
    def test_round_trip(self, elements: list[dict[str, str]], comma: str, semicolon: str) -> None:
        """A generated valid header (values bare when they can be, otherwise quoted with
        quoted pairs) parses back to the same elements."""
        bare = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c\x3e-\x5b\x5d-\x7e]+")

        def serialize(value: str) -> str:
            if bare.fullmatch(value):
                return value
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

        header = comma.join(
            semicolon.join(f"{name}={serialize(value)}" for name, value in element.items())
            for element in elements
        )
        assert parse_forwarded([header]) == elements
