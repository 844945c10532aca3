"""A griffe extension for the docs site: the docstrings' Sphinx roles become links.

The package's docstrings use ``:class:`~dpop_guard.errors.InvalidToken```, ``:meth:`install```
and friends (the ``:param:`` style mkdocstrings reads). Markdown knows no roles, so each
one is resolved here, as Sphinx would: a dotted ``dpop_guard`` path as written, a bare name
in the scope of the object whose docstring holds it (its class, then its module, imports
included). A name that resolves into a module the reference renders becomes an autorefs
link, which ``mkdocs build --strict`` checks; a private object stays code, and so does a
builtin or a name of the standard library or a dependency (:data:`EXTERNAL`). A name that
resolves to nothing is a warning, which ``--strict`` turns into a failed build.

Two more pieces of reStructuredText read well in Markdown after a small change: a doctest
(``>>>`` lines, which Markdown would take for a quotation) becomes a ``pycon`` code block,
and a paragraph ending in ``::`` (the literal block that follows is already indented code)
ends in ``:``.
"""

from __future__ import annotations

import builtins
import logging
import re
from typing import Any

import griffe

# A warning on an "mkdocs." logger fails `mkdocs build --strict`.
logger = logging.getLogger("mkdocs.plugins.griffe_sphinx_roles")
# Names from outside the package that docstrings may cite; they render as code.
EXTERNAL = ("os.", "httpx.", "starlette.", "redis.", "anyio.", "ssl.", "asyncio.", "typing.")

_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`(~?)([^`]+)`")
# Keep in step with docs/reference/*.md: the modules whose objects have a page anchor.
RENDERED = frozenset(
    {
        "dpop_guard",
        "dpop_guard.proof",
        "dpop_guard.jwk",
        "dpop_guard.nonce",
        "dpop_guard.errors",
        "dpop_guard.facts",
        "dpop_guard.challenges",
        "dpop_guard.guard",
        "dpop_guard.middleware",
        "dpop_guard.settings",
        "dpop_guard.routes",
        "dpop_guard.metadata",
        "dpop_guard.credentials",
        "dpop_guard.mtls",
        "dpop_guard.metrics",
        "dpop_guard.prometheus",
        "dpop_guard.otel",
        "dpop_guard.logs",
        "dpop_guard.starlette",
        "dpop_guard.fastapi",
        "dpop_guard.httpsig",
        "dpop_guard.replay",
        "dpop_guard.replay.memory",
        "dpop_guard.replay.redis",
        "dpop_guard.introspection",
        "dpop_guard.introspection.authlete",
        "dpop_guard.introspection.rfc7662",
        "dpop_guard.introspection.jwt",
        "dpop_guard.introspection.cached",
        "dpop_guard.introspection.redis_cache",
        "dpop_guard.client",
        "dpop_guard.testing",
        "dpop_guard.devtools.conformance",
        "dpop_guard.devtools.simulator",
    }
)


def _module_of(obj: griffe.Object) -> griffe.Module:
    while not isinstance(obj, griffe.Module):
        assert obj.parent is not None
        obj = obj.parent
    return obj


def _lookup(scope: griffe.Object, dotted: str) -> griffe.Object | griffe.Alias | None:
    head, _, rest = dotted.partition(".")
    member = scope.members.get(head)
    for part in rest.split(".") if rest else ():
        if member is None:
            return None
        try:
            member = member.members.get(part)
        except griffe.AliasResolutionError:
            return None
    return member


def _resolve(obj: griffe.Object, target: str, package: griffe.Module) -> str | None:
    """The canonical path ``target`` names from ``obj``'s docstring: ``None`` if it names
    nothing, ``""`` if it names an object without a page anchor."""
    found: griffe.Object | griffe.Alias | None = None
    if target.startswith(package.name + "."):
        found = _lookup(package, target.removeprefix(package.name + "."))
    elif target == package.name:
        found = package
    else:
        scopes: list[griffe.Object] = []
        current: griffe.Object | None = obj
        while current is not None:
            if isinstance(current, (griffe.Class, griffe.Module)):
                scopes.append(current)
            current = current.parent
        for scope in scopes:
            found = _lookup(scope, target)
            if found is not None:
                break
    if found is None:
        return None
    try:
        final = found.final_target if isinstance(found, griffe.Alias) else found
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    # mkdocstrings leaves out what has no docstring and what is not public: no anchor.
    if final.docstring is None or not final.is_public:
        return ""
    return final.path


def _rendered(path: str) -> bool:
    parts = path.split(".")
    if any(p.startswith("_") and p != "__init__" for p in parts):
        return False
    return any(".".join(parts[:n]) in RENDERED for n in range(len(parts), 0, -1)) and (
        path in RENDERED or ".".join(parts[:-1]) in RENDERED or ".".join(parts[:-2]) in RENDERED
    )


_LITERAL = re.compile(r"(\S)::$", re.MULTILINE)


def _markdown(text: str) -> str:
    """Doctests fenced as ``pycon``, ``Para::`` as ``Para:``."""
    out: list[str] = []
    block: list[str] = []
    indent = 0
    for line in text.splitlines():
        if block and not line.strip():
            out += ["```pycon", *block, "```"]
            block = []
        if block or line.lstrip().startswith(">>>"):
            if not block:
                indent = len(line) - len(line.lstrip())
            block.append(line[indent:])
            continue
        if line.strip() != "::":  # a lone "::" introduces the block and says nothing
            out.append(line)
    if block:
        out += ["```pycon", *block, "```"]
    return _LITERAL.sub(r"\1:", "\n".join(out))


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._walk(pkg, pkg, set())

    def _walk(self, obj: griffe.Object, package: griffe.Module, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = _markdown(
                _ROLE.sub(
                    lambda m: self._render(obj, package, short=bool(m[1]), target=m[2]),
                    obj.docstring.value,
                )
            )
        for member in list(obj.members.values()):
            if isinstance(member, griffe.Alias):
                continue
            self._walk(member, package, seen)

    @staticmethod
    def _render(obj: griffe.Object, package: griffe.Module, *, short: bool, target: str) -> str:
        label = target.rsplit(".", 1)[-1] if short else target
        path = _resolve(obj, target, package)
        if path is None:
            if not (target.startswith(EXTERNAL) or hasattr(builtins, target)):
                logger.warning("%s: cannot resolve %r in its docstring", obj.path, target)
            return f"`{label}`"
        if not path or not _rendered(path):
            return f"`{label}`"
        return f"[`{label}`][{path}]"
