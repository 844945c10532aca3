"""The one environment reader: strip, refuse control characters and non-finite numbers,
name the variable in every error."""

from __future__ import annotations

import pytest

from dpop_guard._env import EnvReader

P = "DPOP_GUARD_"


def reader(**values: str) -> EnvReader:
    return EnvReader({P + k: v for k, v in values.items()}, prefix=P)


class TestText:
    def test_strips(self) -> None:
        """Surrounding whitespace is removed; whitespace alone counts as unset."""
        assert reader(REALM="  api \t").text("REALM") == "api"
        assert reader(REALM="   ").text("REALM", "d") == "d"
        assert reader().text("REALM") is None

    @pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\x00b", "a\x7fb", "a\x85b", "a\tb"])
    def test_control_characters(self, value: str) -> None:
        """A control character inside a value is refused, naming the variable only."""
        with pytest.raises(ValueError, match="DPOP_GUARD_SECRET holds a control") as info:
            reader(SECRET=value).text("SECRET", secret=True)
        assert value not in str(info.value)

    def test_required(self) -> None:
        """A required variable that is unset or blank is named."""
        with pytest.raises(ValueError, match="DPOP_GUARD_X is not set"):
            reader(X=" ").required("X")


class TestNumbers:
    @pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999"])
    def test_non_finite_float(self, value: str) -> None:
        """nan and infinities are refused."""
        with pytest.raises(ValueError, match="DPOP_GUARD_CACHE_TTL must be a finite number"):
            reader(CACHE_TTL=value).number("CACHE_TTL", 1.0)

    def test_float(self) -> None:
        """A finite number, stripped; unset gives the default."""
        assert reader(CACHE_TTL=" 2.5 ").number("CACHE_TTL", 1.0) == 2.5
        assert reader().number("CACHE_TTL", 1.0) == 1.0
        with pytest.raises(ValueError, match="DPOP_GUARD_CACHE_TTL must be a number"):
            reader(CACHE_TTL="ten").number("CACHE_TTL", 1.0)

    @pytest.mark.parametrize("value", ["1.5", "nan", "1e3", "0x10", "", "9" * 19])
    def test_integer_refused(self, value: str) -> None:
        """Only plain decimal integers are integers."""
        if not value:
            assert reader(N=value).integer("N", 7) == 7
            return
        with pytest.raises(ValueError, match="DPOP_GUARD_N must be an integer"):
            reader(N=value).integer("N", 7)

    def test_integer(self) -> None:
        """Signs and surrounding spaces are fine."""
        assert reader(N=" -3 ").integer("N", 0) == -3


class TestOthers:
    @pytest.mark.parametrize(("value", "expected"), [("TRUE", True), ("0", False), ("no", False)])
    def test_flag(self, value: str, expected: bool) -> None:
        """Booleans in their usual spellings."""
        assert reader(F=value).flag("F", not expected) is expected

    def test_flag_refused(self) -> None:
        """Anything else is named."""
        with pytest.raises(ValueError, match="DPOP_GUARD_F must be true or false"):
            reader(F="maybe").flag("F", False)

    def test_choice(self) -> None:
        """A closed set, case-insensitive, returned as listed; others are refused."""
        assert reader(M="JWT ").choice("M", ("authlete", "jwt"), "authlete") == "jwt"
        with pytest.raises(ValueError, match="DPOP_GUARD_M must be one of authlete, jwt"):
            reader(M="authlete_standard").choice("M", ("authlete", "jwt"), "authlete")

    def test_items(self) -> None:
        """Whitespace- or comma-separated lists."""
        assert reader(L="a, b  c,,d").items("L") == ("a", "b", "c", "d")
        assert reader().items("L") == ()

    def test_json_object(self) -> None:
        """A JSON object or a named error."""
        assert reader(K='{"kty": "EC"}').json_object("K") == {"kty": "EC"}
        for bad in ("{", "[1]"):
            with pytest.raises(ValueError, match="DPOP_GUARD_K must be a JSON object"):
                reader(K=bad).json_object("K")
