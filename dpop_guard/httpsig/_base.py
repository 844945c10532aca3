"""The signature base (RFC 9421 section 2.5) and the signature parameters (section 2.3).

The base is one line per covered component, ``<identifier>: <value>``, joined by LF, then
``"@signature-params": <inner list>`` with no trailing LF. The inner list is the
canonical RFC 9651 serialization of the parsed ``Signature-Input`` member, so a verifier
and a signer that agree on the parsed value agree on the bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from http_sf.types import BareItemType, ItemType, ParamsType

from . import _sf
from ._components import Component, Message, component_value
from ._reasons import HTTPSignatureError

__all__ = ["SignatureParams", "inner_list", "parse_signature_params", "signature_base"]

_STRING_PARAMS: Final = ("nonce", "alg", "keyid", "tag")
_INTEGER_PARAMS: Final = ("created", "expires")


@dataclass(frozen=True, slots=True)
class SignatureParams:
    """One signature's covered components and parameters.

    :param serialized: the value of the ``@signature-params`` line.
    """

    components: tuple[Component, ...]
    created: int | None = None
    expires: int | None = None
    nonce: str | None = None
    alg: str | None = None
    keyid: str | None = None
    tag: str | None = None
    serialized: str = field(default="", compare=False)

    @classmethod
    def build(
        cls,
        components: Sequence[Component],
        *,
        created: int,
        keyid: str,
        tag: str,
        expires: int | None = None,
        nonce: str | None = None,
    ) -> SignatureParams:
        """The parameters a signer sends (in RFC 9421's usual order)."""
        params: ParamsType = {"created": created}
        if expires is not None:
            params["expires"] = expires
        if nonce is not None:
            params["nonce"] = nonce
        params["keyid"] = keyid
        params["tag"] = tag
        serialized = inner_list(components, params)
        return cls(
            tuple(components),
            created=created,
            expires=expires,
            nonce=nonce,
            keyid=keyid,
            tag=tag,
            serialized=serialized,
        )


def inner_list(components: Sequence[Component], params: ParamsType) -> str:
    """The serialized Inner List of ``components`` with signature ``params``."""
    items: list[ItemType] = [(c.name, c.params) for c in components]
    return _sf.serialize_member((items, params))


def parse_signature_params(member: object, *, max_components: int) -> SignatureParams:
    """Read one ``Signature-Input`` member (an Inner List with parameters).

    :raises HTTPSignatureError: ``signature_malformed`` (not an Inner List of strings),
        ``signature_components_too_many``, ``signature_component_duplicate``,
        ``signature_parameter_invalid`` (a parameter of the wrong type, a negative time, or
        one RFC 9421 does not define: unknown parameters are refused, not ignored).
    """
    if not (isinstance(member, tuple) and len(member) == 2 and isinstance(member[0], list)):
        raise HTTPSignatureError("signature_malformed")
    items, params = member
    if len(items) > max_components:
        raise HTTPSignatureError("signature_components_too_many")
    components: list[Component] = []
    seen: set[object] = set()
    for item in items:
        name, item_params = item if isinstance(item, tuple) else (item, {})
        if type(name) is not str:  # a Token or any other bare item is not an identifier
            raise HTTPSignatureError("signature_malformed")
        component = Component(name, dict(item_params))
        identity = component.identity()
        if identity in seen:
            raise HTTPSignatureError("signature_component_duplicate")
        seen.add(identity)
        components.append(component)
    values: dict[str, BareItemType] = dict(params)
    if not set(_STRING_PARAMS + _INTEGER_PARAMS).issuperset(values):
        raise HTTPSignatureError("signature_parameter_invalid")
    for name in _STRING_PARAMS:
        if name in values and type(values[name]) is not str:
            raise HTTPSignatureError("signature_parameter_invalid")
    for name in _INTEGER_PARAMS:
        value = values.get(name)
        if value is not None and (type(value) is not int or value < 0):
            raise HTTPSignatureError("signature_parameter_invalid")
    return SignatureParams(
        tuple(components),
        created=values.get("created"),  # type: ignore[arg-type]
        expires=values.get("expires"),  # type: ignore[arg-type]
        nonce=values.get("nonce"),  # type: ignore[arg-type]
        alg=values.get("alg"),  # type: ignore[arg-type]
        keyid=values.get("keyid"),  # type: ignore[arg-type]
        tag=values.get("tag"),  # type: ignore[arg-type]
        serialized=_sf.serialize_member(member),
    )


def signature_base(params: SignatureParams, message: Message, *, in_response: bool) -> bytes:
    """The bytes that are signed (RFC 9421 section 2.5).

    :raises HTTPSignatureError: from :func:`component_value` for a component that cannot
        be resolved.
    """
    lines = [
        f"{c.serialized()}: {component_value(c, message, in_response=in_response)}"
        for c in params.components
    ]
    lines.append(f'"@signature-params": {params.serialized}')
    return "\n".join(lines).encode("ascii")
