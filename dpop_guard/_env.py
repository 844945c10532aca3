"""One environment reader for every ``from_env``.

Each value is stripped of surrounding whitespace; an empty value counts as unset. A value
holding a control character (a pasted ``\\n``, a NUL, ``\\x7f``) is refused rather than
passed on, since it would otherwise reach an HTTP header or a URL. Numbers must be finite:
``nan`` and ``inf`` parse as floats in Python but make every comparison against a TTL or a
timeout meaningless. Every error is a :class:`ValueError` that names the variable; values of
secrets never appear in a message.

>>> env = EnvReader({"DPOP_GUARD_CACHE_TTL": " 30 "}, prefix="DPOP_GUARD_")
>>> env.number("CACHE_TTL", 60.0)
30.0
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any, Final

from ._json import DOCUMENT_LIMITS, JSONError, parse_object

__all__ = ["EnvReader"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_SEPARATORS = re.compile(r"[\s,]+")
# ASCII decimal notation only: float() would also take "1_0", Arabic-Indic or full-width
# digits, which no operator means to type and a reviewer would not read as a number.
_NUMBER: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


def _has_control(value: str) -> bool:
    # C0 controls, DEL and the C1 range: none belongs in a setting once it is stripped.
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)


class EnvReader:
    """Typed, strict reads of ``environ`` under ``prefix``.

    :param environ: the mapping to read; ``None`` reads :data:`os.environ`.
    :param prefix: prepended to every name given to the methods (``DPOP_GUARD_``).
    """

    __slots__ = ("environ", "prefix")

    def __init__(self, environ: Mapping[str, str] | None = None, prefix: str = "") -> None:
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.prefix = prefix

    def name(self, key: str) -> str:
        """The full variable name for ``key``."""
        return self.prefix + key

    def is_set(self, key: str) -> bool:
        """Whether the variable holds anything but whitespace."""
        return self.text(key) is not None

    def text(self, key: str, default: str | None = None, *, secret: bool = False) -> str | None:
        """The stripped value, or ``default`` when unset or empty.

        :param secret: keep the value out of error messages (it never appears anyway; the
            flag documents intent at the call site).
        :raises ValueError: the value holds a control character.
        """
        raw = self.environ.get(self.name(key))
        if raw is None:
            return default
        value = raw.strip()
        if not value:
            return default
        if _has_control(value):
            what = "a secret" if secret else "a value"
            raise ValueError(f"{self.name(key)} holds a control character; refused as {what}")
        return value

    def required(self, key: str, *, secret: bool = False) -> str:
        """The stripped value.

        :raises ValueError: the variable is unset or empty, or holds a control character.
        """
        value = self.text(key, secret=secret)
        if value is None:
            raise ValueError(f"{self.name(key)} is not set")
        return value

    def integer(self, key: str, default: int) -> int:
        """An integer (decimal digits, optional sign).

        :raises ValueError: naming the variable, for anything else.
        """
        value = self.text(key)
        if value is None:
            return default
        if not re.fullmatch(r"[+-]?[0-9]{1,18}", value):
            raise ValueError(f"{self.name(key)} must be an integer, got {value!r}")
        return int(value)

    def number(self, key: str, default: float) -> float:
        """A finite number in ASCII decimal notation (``2.5``, ``1e3``).

        :raises ValueError: naming the variable, for text, ``nan``, an infinity, or what only
            Python's ``float()`` reads as a number (``1_0``, non-ASCII digits).
        """
        value = self.text(key)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{self.name(key)} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{self.name(key)} must be a finite number, got {value!r}")
        if not _NUMBER.fullmatch(value):
            raise ValueError(
                f"{self.name(key)} must be a number in ASCII decimal notation, got {value!r}"
            )
        return number

    def flag(self, key: str, default: bool) -> bool:
        """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``), any case.

        :raises ValueError: naming the variable, for anything else.
        """
        value = self.text(key)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{self.name(key)} must be true or false, got {value!r}")

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        """One of ``choices``, compared case-insensitively and returned as listed.

        :raises ValueError: naming the variable and the choices.
        """
        value = self.text(key)
        if value is None:
            return default
        for option in choices:
            if value.lower() == option.lower():
                return option
        raise ValueError(f"{self.name(key)} must be one of {', '.join(choices)}; got {value!r}")

    def items(self, key: str) -> tuple[str, ...]:
        """Items separated by whitespace or commas; empty when unset."""
        value = self.text(key)
        if value is None:
            return ()
        return tuple(item for item in _SEPARATORS.split(value) if item)

    def json_object(
        self, key: str, *, what: str = "a JSON object", secret: bool = False
    ) -> dict[str, Any] | None:
        """A JSON object (e.g. a JWK), or ``None`` when unset. Parsed strictly: a repeated
        member, ``NaN`` or an infinity, a lone surrogate or more than 32 levels of nesting
        is refused like any other non-object (never a ``RecursionError``).

        :param what: how the error message names the expected value.
        :raises ValueError: naming the variable, for anything but a JSON object.
        """
        value = self.text(key, secret=secret)
        if value is None:
            return None
        try:
            return parse_object(value.encode("utf-8", "surrogatepass"), DOCUMENT_LIMITS)
        except JSONError:
            raise ValueError(f"{self.name(key)} must be {what}") from None
