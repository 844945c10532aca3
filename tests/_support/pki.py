"""The test PKI: the package's own (:mod:`dpop_guard.devtools.demo._pki`), which the demo's mTLS leg
uses too, so that there is one copy."""

from __future__ import annotations

from dpop_guard.devtools.demo._pki import PKI, Identity, PKIFiles

__all__ = ["PKI", "Identity", "PKIFiles"]
