"""OAuth 2.0 Protected Resource Metadata (RFC 9728): the settings, the document and the
endpoint that serves it.

The document is built once, at start-up; the endpoint answers ``GET`` and ``HEAD`` at
the well-known path derived from the resource identifier (RFC 9728 section 3.1).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from ._asgi import Send
from .routes import Route

if TYPE_CHECKING:
    from .settings import GuardSettings

__all__ = [
    "WELL_KNOWN",
    "MetadataEndpoint",
    "ResourceMetadata",
    "metadata_document",
    "metadata_endpoint",
]

WELL_KNOWN: Final = "/.well-known/oauth-protected-resource"


@dataclass(frozen=True, kw_only=True, slots=True)
class ResourceMetadata:
    """OAuth 2.0 Protected Resource Metadata (RFC 9728) for this API.

    :param resource: the resource identifier, an https URL (usually the public URL).
    :param authorization_servers: issuer URLs of the authorization servers it trusts.
    :param scopes_supported: the scopes it uses; by default those its routes require.
    :param resource_name: a human-readable name.
    :raises ValueError: ``resource`` is not an absolute URL without query or fragment.
    """

    resource: str
    authorization_servers: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] | None = None
    resource_name: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.resource)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.query
            or parts.fragment
        ):
            raise ValueError("resource must be an absolute URL without query or fragment")
        object.__setattr__(self, "authorization_servers", tuple(self.authorization_servers))

    @property
    def path(self) -> str:
        """Where the document is served: the well-known prefix, then the resource's path
        (RFC 9728 section 3.1)."""
        return WELL_KNOWN + urlsplit(self.resource).path.rstrip("/")

    @property
    def url(self) -> str:
        """The document's URL, announced as ``resource_metadata`` in challenges."""
        parts = urlsplit(self.resource)
        return f"{parts.scheme}://{parts.netloc}{self.path}"


def metadata_document(
    meta: ResourceMetadata,
    *,
    routes: Iterable[Route],
    algorithms: Sequence[str],
    bound_tokens_required: bool,
    mtls: bool = False,
) -> dict[str, object]:
    """The RFC 9728 document: ``scopes_supported`` defaults to the scopes the rules name.

    :param algorithms: the proof ``alg`` allow-list (``dpop_signing_alg_values_supported``).
    :param bound_tokens_required: ``dpop_bound_access_tokens_required``; forced to
        ``False`` when ``mtls``, since certificate-bound tokens are then accepted too.
    :param mtls: certificate-bound tokens are accepted on some route (a certificate source
        is configured): ``tls_client_certificate_bound_access_tokens`` is ``true``.
    """
    scopes = meta.scopes_supported
    if scopes is None:
        scopes = tuple(sorted({s for r in routes for s in r.scopes}))
    document: dict[str, object] = {
        "resource": meta.resource,
        "authorization_servers": list(meta.authorization_servers),
        "scopes_supported": list(scopes),
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": list(algorithms),
        "dpop_bound_access_tokens_required": bound_tokens_required and not mtls,
    }
    if mtls:
        document["tls_client_certificate_bound_access_tokens"] = True
    if meta.resource_name:
        document["resource_name"] = meta.resource_name
    return document


class MetadataEndpoint:
    """Serves one precomputed document at ``meta.path``, publicly cacheable."""

    __slots__ = ("body", "path")

    def __init__(self, meta: ResourceMetadata, document: dict[str, object]) -> None:
        self.path = meta.path
        self.body = json.dumps(document).encode()

    def serves(self, path: str, method: str) -> bool:
        """Whether ``method path`` asks for the document."""
        return path == self.path and method.upper() in ("GET", "HEAD")

    async def __call__(self, send: Send, method: str) -> None:
        """Answer with the document (its head only for ``HEAD``)."""
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", b"public, max-age=3600"),
            (b"content-length", str(len(self.body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        head = method.upper() == "HEAD"
        await send({"type": "http.response.body", "body": b"" if head else self.body})


def metadata_endpoint(settings: GuardSettings, *, mtls: bool = False) -> MetadataEndpoint | None:
    """The endpoint for ``settings.metadata``, or ``None`` when no metadata is set.

    :param mtls: a route accepts certificate-bound tokens and a certificate source is
        configured (see :func:`metadata_document`).
    """
    meta = settings.metadata
    if meta is None:
        return None
    document = metadata_document(
        meta,
        routes=settings.routes,
        algorithms=settings.policy.algorithms,
        bound_tokens_required=not settings.allow_unbound_tokens,
        mtls=mtls,
    )
    return MetadataEndpoint(meta, document)
