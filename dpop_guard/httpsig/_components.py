"""Component values (RFC 9421 section 2): what each covered identifier stands for in a
message, as a pure function of a :class:`Message`.

Derived components (section 2.2) are ``@method``, ``@target-uri``, ``@authority``,
``@scheme``, ``@request-target``, ``@path``, ``@query``, ``@query-param`` and ``@status``.
HTTP fields (section 2.1) are taken as sent: every field line trimmed and joined with
``", "``; with ``sf`` or ``key="..."`` the value is parsed as the structured field it is
and re-serialized (only for the fields this package knows the type of). ``req``
(section 2.4) takes the component from the request a response answers.

Not supported, and refused as ``signature_component_unsupported``: ``bs`` and ``tr``
(byte-sequence wrapping and trailers), and any parameter RFC 9421 does not define.
A value holding a byte outside visible ASCII and space is refused too: the signature base
is ASCII (section 2.5), so such a field can only be covered with ``bs``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote_plus

from http_sf.types import BareItemType, ParamsType

from . import _sf
from ._reasons import HTTPSignatureError

__all__ = ["Component", "Message", "component_value"]

_DERIVED_REQUEST: Final = frozenset(
    {
        "@method",
        "@target-uri",
        "@authority",
        "@scheme",
        "@request-target",
        "@path",
        "@query",
        "@query-param",
    }
)
# The structured fields this package knows the top-level type of (for ``sf`` and ``key``).
_DICTIONARY_FIELDS: Final = frozenset(
    {
        "signature",
        "signature-input",
        "accept-signature",
        "content-digest",
        "repr-digest",
        "want-content-digest",
        "want-repr-digest",
    }
)
_FIELD_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~")
_VALUE_LIMIT: Final = 16384
# Visible ASCII and space (RFC 9421 section 2.5: the base is ASCII); one linear class.
_VISIBLE: Final = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True, slots=True)
class Message:
    """The parts of an HTTP message a signature can cover.

    :param method: the request method (for a response: of the request it answers).
    :param scheme: ``http`` or ``https``, lowercase.
    :param authority: ``host[:port]`` as the client addressed it, lowercase, default port
        dropped.
    :param path: the request target's path as sent, percent-encoded (``/`` when empty).
    :param query: the query without ``?``, or ``None`` when the target has none.
    :param headers: the field lines, names lowercase (as ASGI gives them).
    :param status: the response status; ``None`` for a request.
    :param request: for a response, the request it answers (for ``req``).
    """

    method: str
    scheme: str
    authority: str
    path: str
    query: str | None
    headers: tuple[tuple[bytes, bytes], ...]
    status: int | None = None
    request: Message | None = None

    @property
    def target_uri(self) -> str:
        query = "" if self.query is None else "?" + self.query
        return f"{self.scheme}://{self.authority}{self.path}{query}"

    def field_lines(self, name: bytes) -> list[bytes]:
        return [value for field, value in self.headers if field == name]


@dataclass(frozen=True, slots=True)
class Component:
    """One covered component identifier: its name and parameters, as received."""

    name: str
    params: ParamsType

    def serialized(self) -> str:
        """The identifier as it appears in the signature base (RFC 9421 section 2.5)."""
        return _sf.serialize((self.name, self.params))

    def identity(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """What makes two identifiers the same, parameter order aside (section 2.5 forbids
        covering one twice)."""
        return self.name, tuple(sorted((k, repr(v)) for k, v in self.params.items()))


def _ascii(value: str) -> str:
    if _VISIBLE.fullmatch(value) is None:
        raise HTTPSignatureError("signature_component_invalid")
    return value


def _flag(params: ParamsType, name: str) -> bool:
    value = params.get(name)
    if value is None:
        return False
    if value is not True:
        raise HTTPSignatureError("signature_component_invalid")
    return True


def _string(params: ParamsType, name: str) -> str | None:
    value: BareItemType | None = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or type(value) is not str:
        raise HTTPSignatureError("signature_component_invalid")
    return value


def component_value(component: Component, message: Message, *, in_response: bool) -> str:
    """The value of ``component`` in ``message`` (RFC 9421 sections 2.1-2.4).

    :param in_response: ``message`` is a response; ``req`` is allowed only then.
    :raises HTTPSignatureError: ``signature_component_unsupported`` (an unknown derived
        component or parameter), ``signature_component_invalid`` (a malformed
        identifier, ``@status`` or ``req`` on a request), ``signature_component_absent``
        (a field the message does not carry, ``key`` naming no member).
    """
    params = component.params
    known = {"req", "sf", "key", "name"}
    if not known.issuperset(params):
        raise HTTPSignatureError("signature_component_unsupported")
    if _flag(params, "req"):
        if not in_response or message.request is None:
            raise HTTPSignatureError("signature_component_invalid")
        message, in_response = message.request, False
    name = component.name
    if name.startswith("@"):
        if "sf" in params or "key" in params:
            raise HTTPSignatureError("signature_component_invalid")
        if ("name" in params) != (name == "@query-param"):
            raise HTTPSignatureError("signature_component_invalid")
        return _derived(name, params, message, in_response)
    if "name" in params:
        raise HTTPSignatureError("signature_component_invalid")
    return _field(name, params, message)


def _derived(name: str, params: ParamsType, message: Message, in_response: bool) -> str:
    if name == "@status":
        if not in_response or message.status is None:
            raise HTTPSignatureError("signature_component_invalid")
        return f"{message.status:03d}"
    if name not in _DERIVED_REQUEST:
        raise HTTPSignatureError("signature_component_unsupported")
    if name == "@method":
        return _ascii(message.method)
    if name == "@target-uri":
        return _ascii(message.target_uri)
    if name == "@authority":
        return _ascii(message.authority)
    if name == "@scheme":
        return message.scheme
    if name == "@path":
        return _ascii(message.path or "/")
    if name == "@query":
        return _ascii("?" + (message.query or ""))
    if name == "@request-target":
        query = "" if message.query is None else "?" + message.query
        return _ascii((message.path or "/") + query)
    # @query-param (section 2.2.8): one parameter, decoded then re-encoded; a parameter
    # present twice MUST NOT be covered, so it is absent here.
    wanted = _string(params, "name")
    assert wanted is not None
    found: list[str] = []
    for pair in (message.query or "").split("&"):
        key, _, value = pair.partition("=")
        if _encode(key) == wanted:
            found.append(_encode(value))
    if len(found) != 1:
        raise HTTPSignatureError("signature_component_absent")
    return found[0]


def _encode(text: str) -> str:
    return quote(unquote_plus(text), safe="*-._")


def _field(name: str, params: ParamsType, message: Message) -> str:
    if not name or not _FIELD_NAME_CHARS.issuperset(name):
        raise HTTPSignatureError("signature_component_invalid")  # uppercase included
    lines = message.field_lines(name.encode("ascii"))
    if not lines:
        raise HTTPSignatureError("signature_component_absent")
    combined = _sf.combine(lines, limit=_VALUE_LIMIT, reason="signature_field_too_large")
    assert combined is not None
    structured = _flag(params, "sf")
    member = _string(params, "key")
    if not structured and member is None:
        return _ascii(combined.decode("latin-1"))
    if name not in _DICTIONARY_FIELDS:
        raise HTTPSignatureError("signature_component_unsupported")
    parsed = _sf.parse_dictionary(
        combined,
        max_members=64,
        reason="signature_component_invalid",
        too_many="signature_component_invalid",
    )
    if member is None:
        return _sf.serialize(parsed)
    if member not in parsed:
        raise HTTPSignatureError("signature_component_absent")
    return _sf.serialize_member(parsed[member])
