"""The public surface is deliberate."""

from __future__ import annotations

import dpop_guard


def test_all_sorted_and_exported() -> None:
    """__all__ is sorted, unique, and every name in it exists."""
    assert dpop_guard.__all__ == sorted(set(dpop_guard.__all__))
    for name in dpop_guard.__all__:
        assert hasattr(dpop_guard, name), name


def test_exported_members() -> None:
    """Every public class or function defined in the package is exported (or private)."""
    exported = set(dpop_guard.__all__)
    for name in dir(dpop_guard):
        member = getattr(dpop_guard, name)
        if name.startswith("_") or not callable(member):
            continue
        if getattr(member, "__module__", "").startswith("dpop_guard"):
            assert name in exported, name
