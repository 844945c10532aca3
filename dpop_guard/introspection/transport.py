"""Deprecated alias of :mod:`dpop_guard.introspection._http`, kept only while other
branches that still import it are merged; import from ``dpop_guard`` (or, inside the
package, from ``._http``) instead. It will be removed."""

from ._http import (
    AsyncioHTTPClient,
    HttpxTransport,
    PostTransport,
    Response,
    TransportConnectError,
    TransportError,
    TransportHeaderError,
    TransportTimeout,
    as_transport,
)

__all__ = [
    "AsyncioHTTPClient",
    "HttpxTransport",
    "PostTransport",
    "Response",
    "TransportConnectError",
    "TransportError",
    "TransportHeaderError",
    "TransportTimeout",
    "as_transport",
]
