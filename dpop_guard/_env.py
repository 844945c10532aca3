"""One environment reader for every ``from_env``.

Each value is stripped of surrounding whitespace; an empty value counts as unset. A value
holding a control character (a pasted ``\\n``, a NUL, ``\\x7f``) is refused rather than
passed on, since it would otherwise reach an HTTP header or a URL. Numbers must be finite:
``nan`` and ``inf`` parse as floats in Python but make every comparison against a TTL or a
timeout meaningless. Every error is a :class:`ConfigurationError` (a :class:`ValueError`)
whose text is one line naming the variable, the problem and the fix; values of secrets never
appear in a message. Booleans have one dialect (:meth:`EnvReader.flag`).

>>> env = EnvReader({"DPOP_GUARD_CACHE_TTL": " 30 "}, prefix="DPOP_GUARD_")
>>> env.number("CACHE_TTL", 60.0)
30.0
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Collection, Mapping
from typing import Any, Final

from ._json import DOCUMENT_LIMITS, JSONError, parse_object

__all__ = ["ConfigurationError", "EnvReader", "check_names"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_SEPARATORS = re.compile(r"[\s,]+")
# ASCII decimal notation only: float() would also take "1_0", Arabic-Indic or full-width
# digits, which no operator means to type and a reviewer would not read as a number.
_NUMBER: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


def _has_control(value: str) -> bool:
    # C0 controls, DEL and the C1 range: none belongs in a setting once it is stripped.
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)


class ConfigurationError(ValueError, SystemExit):
    """A setting that stops start-up: its text is one line naming the variable, what is
    wrong with its value and how to fix it (never a secret's value).

    It is a :class:`ValueError` (catch it as one) and also a :class:`SystemExit`, so that a
    server that builds the guard at import and does not catch it exits with status 1 and
    that one line, instead of a traceback through the server's import machinery.

    :param variable: the environment variable at fault (``None``: several or none).
    :param problem: what is wrong, as a clause beginning with a verb (``variable`` is put
        in front of it unless
        it begins with it).
    :param fix: what to do, as a clause; empty when the problem says it.
    """

    def __init__(self, variable: str | None, problem: str, fix: str = "") -> None:
        self.variable = variable
        self.problem = problem
        self.fix = fix
        named = variable is None or problem.startswith(variable)
        line = problem if named else f"{variable} {problem}"
        if fix:
            line = f"{line}; {fix}"
        line = " ".join(line.split())  # one line, whatever a nested message held
        super().__init__(line)
        self.code = line  # what the interpreter prints when nobody catches it

    def __str__(self) -> str:
        return str(self.args[0])


def check_names(
    environ: Mapping[str, str], prefix: str, known: Collection[str], *, what: str
) -> None:
    """Refuse a set variable under ``prefix`` that nothing reads: a misspelt name would
    otherwise leave its setting at the default without a word.

    :param what: how the message names the known set, e.g. ``"a dpop_guard setting"``.
    :raises ConfigurationError: naming the first unknown variable and the closest known one.
    """
    for name in sorted(environ):
        if not name.startswith(prefix) or name in known:
            continue
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
        fix = f"did you mean {close[0]}?" if close else "unset it"
        raise ConfigurationError(name, f"is not {what}", fix)


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
        :raises ConfigurationError: the value holds a control character.
        """
        raw = self.environ.get(self.name(key))
        if raw is None:
            return default
        value = raw.strip()
        if not value:
            return default
        if _has_control(value):
            what = "a secret" if secret else "a value"
            raise ConfigurationError(
                self.name(key),
                f"holds a control character; control characters are refused in {what}",
                "set it again without line breaks or other invisible characters",
            )
        return value

    def required(self, key: str, *, secret: bool = False) -> str:
        """The stripped value.

        :raises ConfigurationError: the variable is unset or empty, or holds a control character.
        """
        value = self.text(key, secret=secret)
        if value is None:
            raise ConfigurationError(self.name(key), "is not set")
        return value

    def integer(self, key: str, default: int) -> int:
        """An integer (decimal digits, optional sign).

        :raises ConfigurationError: naming the variable, for anything else.
        """
        value = self.text(key)
        if value is None:
            return default
        if not re.fullmatch(r"[+-]?[0-9]{1,18}", value):
            raise ConfigurationError(self.name(key), f"must be an integer, got {value!r}")
        return int(value)

    def number(self, key: str, default: float) -> float:
        """A finite number in ASCII decimal notation (``2.5``, ``1e3``).

        :raises ConfigurationError: naming the variable, for text, ``nan``, an infinity, or
            what only Python's ``float()`` reads as a number (``1_0``, non-ASCII digits).
        """
        value = self.text(key)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigurationError(self.name(key), f"must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigurationError(self.name(key), f"must be a finite number, got {value!r}")
        if not _NUMBER.fullmatch(value):
            raise ConfigurationError(
                self.name(key), f"must be a number in ASCII decimal notation, got {value!r}"
            )
        return number

    def flag(self, key: str, default: bool) -> bool:
        """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``), any case.

        :raises ConfigurationError: naming the variable, for anything else.
        """
        value = self.text(key)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigurationError(
            self.name(key), f"must be true or false (or 1/0, yes/no, on/off), got {value!r}"
        )

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        """One of ``choices``, compared case-insensitively and returned as listed.

        :raises ConfigurationError: naming the variable and the choices.
        """
        value = self.text(key)
        if value is None:
            return default
        for option in choices:
            if value.lower() == option.lower():
                return option
        raise ConfigurationError(
            self.name(key), f"must be one of {', '.join(choices)}; got {value!r}"
        )

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
        :raises ConfigurationError: naming the variable, for anything but a JSON object.
        """
        value = self.text(key, secret=secret)
        if value is None:
            return None
        try:
            return parse_object(value.encode("utf-8", "surrogatepass"), DOCUMENT_LIMITS)
        except JSONError:
            raise ConfigurationError(self.name(key), f"must be {what}") from None
