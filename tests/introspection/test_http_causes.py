"""Why an upstream call failed, told apart (issue 21): DNS, connect, TLS, proxy, timeout,
protocol, 401/403, 5xx, another status, a bad body; the same for the default client and for
httpx. The proxy settings read from the environment, NO_PROXY's matching, and the outage
log lines: once per breaker transition, with the URL, never a credential."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpop_guard import _reasons
from dpop_guard.devtools.demo import free_port
from dpop_guard.errors import IntrospectionUnavailable
from dpop_guard.introspection import RequestFacts
from dpop_guard.introspection._breaker import CircuitBreaker
from dpop_guard.introspection._http import (
    AsyncioHTTPClient,
    Proxy,
    TransportError,
    UpstreamCause,
    bypasses,
)
from dpop_guard.introspection.authlete import AuthleteIntrospector, AuthleteSettings

from .._support.raw_http import CA, LOOPBACK, ok, replying, serve

FACTS = RequestFacts("GET", "https://rs.test/a", None, None)
SERVICE_TOKEN = "svc-t0ken-never-logged"
ENV_NAMES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "request_method")


def settings(base_url: str, timeout: float = 2.0) -> AuthleteSettings:
    return AuthleteSettings(
        base_url=base_url, api_key="1", access_token=SERVICE_TOKEN, timeout=timeout, retries=0
    )


async def reason_of(client: Any, base_url: str, timeout: float = 2.0) -> str:
    introspector = AuthleteIntrospector(client, settings(base_url, timeout), breaker=None)
    with pytest.raises(IntrospectionUnavailable) as info:
        await introspector.introspect("tok", request=FACTS)
    return info.value.reason


def status(code: int) -> bytes:
    return b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % code


@pytest.fixture(autouse=True)
def _no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the machine's environment says, these tests start with no proxy."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


class TestTheClassification:
    def test_every_cause_is_an_outage_word(self) -> None:
        """Each cause names a reason ``<upstream>_<cause>`` (one classification, one set)."""
        assert {c.value for c in UpstreamCause} == set(get_args(_reasons.Outage))

    @pytest.mark.parametrize(
        ("answer", "reason"),
        [
            (status(401), "authlete_credentials_refused"),
            (status(403), "authlete_credentials_refused"),
            (status(500), "authlete_server_error"),
            (status(502), "authlete_server_error"),
            (status(404), "authlete_http_error"),
            (status(407), "authlete_proxy"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n<html", "authlete_bad_response"),
            (b"HTTP/9.9 200 OK\r\nContent-Length: 0\r\n\r\n", "authlete_transport_error"),
            (b"garbage\r\n\r\n", "authlete_transport_error"),
        ],
    )
    async def test_answers(self, answer: bytes, reason: str) -> None:
        """Each kind of answer has its reason, on the default client."""
        client = AsyncioHTTPClient(proxies={})
        async with await serve(replying(answer, keep_open=False)) as url:
            assert await reason_of(client, url.partition("/api/")[0]) == reason
        await client.aclose()

    @pytest.mark.parametrize("kind", ["ours", "httpx"])
    async def test_connection_refused(self, kind: str) -> None:
        """Nothing listens: ``unreachable``."""
        client = AsyncioHTTPClient(proxies={}) if kind == "ours" else httpx.AsyncClient()
        assert await reason_of(client, f"http://127.0.0.1:{free_port()}") == "authlete_unreachable"
        await client.aclose()

    @pytest.mark.parametrize("kind", ["ours", "httpx"])
    async def test_name_does_not_resolve(self, kind: str) -> None:
        """A name under ``.invalid`` never resolves (RFC 6761): ``dns``."""
        client = AsyncioHTTPClient(proxies={}) if kind == "ours" else httpx.AsyncClient()
        assert await reason_of(client, "http://authlete.invalid") == "authlete_dns"
        await client.aclose()

    @pytest.mark.parametrize("kind", ["ours", "httpx"])
    async def test_untrusted_certificate(self, kind: str, tmp_path: Path) -> None:
        """A certificate from an unknown CA: ``tls``."""
        ca = CA(tmp_path)
        client = AsyncioHTTPClient(proxies={}) if kind == "ours" else httpx.AsyncClient()
        async with await serve(replying(ok()), ssl_context=ca.server_context(LOOPBACK)) as url:
            assert await reason_of(client, url.partition("/api/")[0]) == "authlete_tls"
        await client.aclose()

    async def test_dead_proxy(self) -> None:
        """The proxy does not answer: ``proxy``, not ``unreachable``. (httpx does not tell
        the two apart: through an ``httpx.AsyncClient`` this reads ``unreachable``.)"""
        client = AsyncioHTTPClient(proxies={"http": f"http://127.0.0.1:{free_port()}"})
        assert await reason_of(client, f"http://127.0.0.1:{free_port()}") == "authlete_proxy"
        await client.aclose()

    async def test_silent_server_times_out(self) -> None:
        """Accepted, never answered: ``timeout`` (the introspector's own bound)."""
        hold = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await hold.wait()

        client = AsyncioHTTPClient(proxies={})
        async with await serve(lambda server: silent) as url:
            reason = await reason_of(client, url.partition("/api/")[0], timeout=0.2)
            hold.set()
        await client.aclose()
        assert reason == "authlete_timeout"

    @pytest.mark.parametrize("value", ["socks5://127.0.0.1:1080", "https://proxy.test:3128"])
    async def test_unsupported_proxy_scheme(self, value: str) -> None:
        """A proxy the default client cannot use fails every call with ``proxy`` (closed),
        naming the variable and never echoing the value."""
        client = AsyncioHTTPClient(proxies={"https": value})
        with pytest.raises(TransportError) as info:
            client.proxy_for("https://authlete.test/api")
        assert info.value.cause is UpstreamCause.PROXY
        assert "HTTPS_PROXY" in str(info.value) and value not in str(info.value)
        assert await reason_of(client, "https://authlete.test") == "authlete_proxy"


class TestProxyFromEnvironment:
    """The standard library's reading of the variables (urllib.request.getproxies)."""

    @pytest.mark.parametrize(
        ("env", "url", "expected"),
        [
            ({"HTTPS_PROXY": "http://p:3128"}, "https://a.test/x", "p:3128"),
            ({"HTTPS_PROXY": "http://p:3128"}, "http://127.0.0.1/x", None),
            ({"HTTP_PROXY": "http://p:3128"}, "http://127.0.0.1/x", "p:3128"),
            ({"HTTP_PROXY": "http://p:3128"}, "https://a.test/x", None),
            ({"ALL_PROXY": "http://p:3128"}, "https://a.test/x", "p:3128"),
            ({"ALL_PROXY": "http://all:1", "HTTPS_PROXY": "http://s:2"}, "https://a.test/", "s:2"),
            ({"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:2"}, "https://a/", "low:1"),
            ({"HTTPS_PROXY": "p.test"}, "https://a.test/x", "p.test:80"),  # bare host: http
            ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "a.test"}, "https://a.test/", None),
            ({"HTTPS_PROXY": "http://p:3128", "no_proxy": ".test"}, "https://x.a.test/", None),
            ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "*"}, "https://a.test/", None),
            ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "b.test"}, "https://a.test/", "p:3128"),
            # httpoxy: a CGI request's Proxy header becomes HTTP_PROXY; ignored there
            ({"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"}, "http://127.0.0.1/", None),
        ],
    )
    def test_choice(
        self,
        monkeypatch: pytest.MonkeyPatch,
        env: dict[str, str],
        url: str,
        expected: str | None,
    ) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        proxy = AsyncioHTTPClient().proxy_for(url)
        assert (proxy.label if proxy else None) == expected

    def test_explicit_empty_mapping_ignores_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HTTPS_PROXY", "http://p:3128")
        assert AsyncioHTTPClient(proxies={}).proxy_for("https://a.test/") is None

    def test_credentials_become_a_header_never_a_label(self) -> None:
        proxy = Proxy.parse("http://us%40er:p%3Ass@p.test:3128")
        assert proxy.authorization == "Basic dXNAZXI6cDpzcw=="  # base64("us@er:p:ss")
        assert proxy.label == "p.test:3128"
        assert "dXNAZXI6cDpzcw" not in repr(proxy) and "p:ss" not in repr(proxy)

    @given(st.text(max_size=60))
    def test_any_proxy_value_parses_or_is_refused_without_echo(self, value: str) -> None:
        """A proxy value is a Proxy or a ValueError whose message never holds the value."""
        secret = f"http://u:{value}@p.test:3128"
        try:
            proxy = Proxy.parse(secret)
        except ValueError as exc:
            assert value not in str(exc) or len(value) < 4  # a short value can be any word
        else:
            assert value not in repr(proxy) or len(value) < 4


NO_PROXY_VECTORS = [
    # (NO_PROXY, host, port, bypassed)
    ("a.test", "a.test", 443, True),
    ("a.test", "A.TEST", 443, True),
    ("a.test", "api.a.test", 443, True),
    (".a.test", "api.a.test", 443, True),
    ("a.test", "xa.test", 443, False),
    ("a.test:8443", "a.test", 443, False),
    ("a.test:8443", "a.test", 8443, True),
    (" b.test , a.test ", "a.test", 443, True),
    ("10.0.0.0/8", "10.1.2.3", 443, True),
    ("10.0.0.0/8", "11.1.2.3", 443, False),
    ("127.0.0.1", "127.0.0.1", 80, True),
    ("::1", "::1", 80, True),
    ("[::1]:8080", "::1", 8080, True),
    ("[::1]:8080", "::1", 80, False),
    ("*", "anything.test", 1, True),
    ("", "a.test", 443, False),
    (",,", "a.test", 443, False),
    ("a.test", "10.0.0.1", 443, False),
]


class TestNoProxy:
    @pytest.mark.parametrize(("no_proxy", "host", "port", "bypassed"), NO_PROXY_VECTORS)
    def test_vectors(self, no_proxy: str, host: str, port: int, bypassed: bool) -> None:
        assert bypasses(no_proxy, host, port) is bypassed

    @given(st.text(max_size=80), st.text(max_size=40), st.integers(0, 65535))
    def test_any_text_is_read_without_error(self, no_proxy: str, host: str, port: int) -> None:
        assert bypasses(no_proxy, host, port) in (True, False)

    @given(st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,3}", fullmatch=True))
    def test_a_listed_name_and_its_subdomains_bypass(self, host: str) -> None:
        assert bypasses(f"x.invalid,{host}", host, 443)
        assert bypasses(host, f"api.{host}", 443)
        assert not bypasses(host, f"{host}x", 443)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TestOutageLines:
    """Once per transition: the first failure, the circuit opening, the recovery."""

    async def test_once_per_transition(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="dpop_guard.introspection")
        clock = Clock()
        breaker = CircuitBreaker(threshold=3, cooldown=2.0, clock=clock)
        answers = [500] * 40

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(answers.pop(0) if answers else 200, json={"action": "OK"})

        url = "https://authlete.test"
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        introspector = AuthleteIntrospector(client, settings(url), breaker=breaker)
        for _ in range(10):  # 3 failures open the circuit; 7 refused at once
            with pytest.raises(IntrospectionUnavailable):
                await introspector.introspect("the-access-token", request=FACTS)
        lines = [r.getMessage() for r in _ours(caplog)]
        assert len(lines) == 2, lines
        assert "authlete_server_error" in lines[0] and settings(url).introspection_url in lines[0]
        assert "(HTTP 500)" in lines[0]
        assert "circuit open" in lines[1] and "authlete_circuit_open" in lines[1]
        answers.clear()
        clock.now += 2.5  # the cooldown is over: one trial call, which succeeds
        await introspector.introspect("the-access-token", request=FACTS)
        await introspector.introspect("the-access-token", request=FACTS)
        lines = [r.getMessage() for r in _ours(caplog)]
        assert len(lines) == 3 and "available again" in lines[2], lines
        assert "the-access-token" not in caplog.text and SERVICE_TOKEN not in caplog.text
        await client.aclose()

    async def test_a_trial_failing_the_same_way_is_not_logged_again(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="dpop_guard.introspection")
        clock = Clock()
        breaker = CircuitBreaker(threshold=1, cooldown=2.0, clock=clock)
        client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(503)))
        introspector = AuthleteIntrospector(client, settings("https://a.test"), breaker=breaker)
        for _ in range(5):  # each round: a failed trial call re-opens the circuit
            with pytest.raises(IntrospectionUnavailable):
                await introspector.introspect("tok", request=FACTS)
            clock.now += 2.5
        assert len(_ours(caplog)) == 2  # unavailable, circuit open
        await client.aclose()

    async def test_a_miss_of_two_calls_is_one_line(self, caplog: pytest.LogCaptureFixture) -> None:
        """On the DPoP scheme a miss makes two calls (check and binding probe); when both
        fail, the request is one line, even with no breaker to follow."""
        caplog.set_level(logging.INFO, logger="dpop_guard.introspection")
        calls: list[int] = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(1)
            return httpx.Response(500)

        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        introspector = AuthleteIntrospector(client, settings("https://a.test"), breaker=None)
        proof = RequestFacts("GET", "https://rs.test/a", "h.p.s", "JKT")
        with pytest.raises(IntrospectionUnavailable):
            await introspector.introspect("tok", request=proof)
        assert len(calls) == 2 and len(_ours(caplog)) == 1
        await client.aclose()


def _ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The guard's own records (another test may have left httpx's logger at INFO)."""
    return [record for record in caplog.records if record.name.startswith("dpop_guard")]
