"""The one warning filter the simulator needs, scoped to its own joserfc calls."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from joserfc.errors import SecurityWarning

__all__ = ["eddsa_accepted"]


@contextmanager
def eddsa_accepted() -> Iterator[None]:
    """Authlete still lists "EdDSA"; joserfc warns on every use of the RFC 9864-deprecated
    name. Silence exactly that warning, only around the simulator's own joserfc calls (which
    never await), instead of for the whole process."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)
        yield
