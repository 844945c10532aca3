"""How the demo prints: one line per step with its essential values, every token, code
and proof abbreviated, and a count of the steps that did not behave."""

from __future__ import annotations

from typing import Final

import httpx

from ...challenges import parse_challenge

TITLE_WIDTH: Final = 48


def short(value: str, keep: int = 8) -> str:
    """The first ``keep`` characters of a token, code or thumbprint, never the whole."""
    return f"{value[:keep]}..." if len(value) > keep else "..."


def outcome(response: httpx.Response) -> str:
    """A response as a newcomer reads it: the status and the RFC 6750/9449 challenge."""
    if response.status_code < 400:
        return f"{response.status_code} OK"
    challenge = response.headers.get("www-authenticate")
    if not challenge:
        try:
            error = response.json().get("error", "")
        except ValueError:
            error = ""
        return f"{response.status_code} {error}"
    _, params = parse_challenge(challenge)
    if "error" not in params:
        return f"{response.status_code}, challenge: {challenge}"
    extra = f' scope="{params["scope"]}"' if "scope" in params else ""
    return (
        f"{response.status_code} {params.get('error', '')}{extra}\n"
        f'      "{params.get("error_description", "")}"'
    )


class Exchanges:
    """An httpx response hook that remembers each exchange (method, path, status), so a
    step can show what went over the wire without the client exposing it."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, response: httpx.Response) -> None:
        request = response.request
        self.seen.append(f"{request.method} {request.url.path} -> {response.status_code}")

    def mark(self) -> int:
        return len(self.seen)

    def since(self, mark: int) -> str:
        return ", ".join(self.seen[mark:])


class Report:
    """Prints the steps and counts those that did not behave."""

    def __init__(self) -> None:
        self.failures = 0

    def line(self, good: bool, title: str, detail: str) -> None:
        if not good:
            self.failures += 1
        mark = "ok " if good else "!! "
        print(f"  {mark}{title:<{TITLE_WIDTH}} {detail}".rstrip(), flush=True)

    def detail(self, text: str) -> None:
        print(f"      {text}", flush=True)

    def response(self, title: str, response: httpx.Response, expected: int) -> None:
        self.line(response.status_code == expected, title, outcome(response))
