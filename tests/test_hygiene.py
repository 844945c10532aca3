"""Rules about the code base itself: tests share helpers only through ``tests/_support`` and
``tests/conftest.py`` fixtures, nothing imports an example, and every ``>>>`` example in the
package's docstrings runs and passes."""

from __future__ import annotations

import ast
import doctest
import importlib
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
PACKAGE = ROOT / "dpop_guard"
BENCHMARKS = ROOT / "benchmarks"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(source: str, module: str, *, is_package: bool) -> list[str]:
    """Every module ``source`` (the text of ``module``) imports, relative imports resolved
    to absolute names. ``from x import y`` yields both ``x`` and ``x.y``: ``y`` may be a
    submodule (``from . import test_middleware``)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.append(target)
            found.extend(f"{target}.{alias.name}" for alias in node.names)
    return found


def _forbidden(target: str) -> bool:
    """A test module, a conftest, or an example: none of them is a library."""
    parts = target.split(".")
    return (
        parts[0] == "examples"
        or (parts[0] == "tests" and any(p.startswith("test_") for p in parts[1:]))
        or "conftest" in parts
    )


def _violations(path: Path, forbidden: Callable[[str], bool] = _forbidden) -> list[str]:
    module = _module_name(path)
    imported = _imported(
        path.read_text(encoding="utf-8"), module, is_package=path.name == "__init__.py"
    )
    return [f"{module} imports {target}" for target in imported if forbidden(target)]


class TestImports:
    def test_no_test_imports_a_test_module_conftest_or_example(self) -> None:
        """Shared test code lives in tests/_support; fixtures in conftest, found by pytest."""
        problems = [v for path in sorted(TESTS.rglob("*.py")) for v in _violations(path)]
        assert problems == []

    def test_package_never_imports_tests_or_examples(self) -> None:
        """The library stands without the test tree and the examples."""
        problems = [
            v
            for path in sorted(PACKAGE.rglob("*.py"))
            for v in _violations(path, lambda t: t.split(".")[0] in ("tests", "examples"))
        ]
        assert problems == []

    def test_benchmarks_import_no_test_module_conftest_or_example(self) -> None:
        """The benchmarks share tests/_support and the package, nothing else of the tests."""
        problems = [v for path in sorted(BENCHMARKS.rglob("*.py")) for v in _violations(path)]
        assert problems == []

    @pytest.mark.parametrize(
        ("module", "source"),
        [
            ("tests.test_a", "from .test_middleware import Harness"),
            ("tests.sub.test_a", "from ..test_middleware import ORIGIN"),
            ("tests.test_a", "from . import test_middleware"),
            ("tests.test_a", "import tests.test_middleware"),
            ("tests.test_a", "from tests.conftest import _signer"),
            ("tests.test_a", "from .conftest import _signer"),
            ("tests.test_a", "from examples.fastapi_accounts import create_app"),
            ("tests.test_a", "import examples.accounts"),
        ],
    )
    def test_the_check_catches(self, module: str, source: str) -> None:
        """Each kind of forbidden import is found, relative ones resolved."""
        imported = _imported(source, module, is_package=False)
        assert any(_forbidden(target) for target in imported), imported

    @pytest.mark.parametrize(
        "source",
        [
            "from tests._support.harness import Harness",
            "from ._support.pki import PKI",
            "from dpop_guard.testing import make_proof",
            "import pytest",
        ],
    )
    def test_the_check_allows(self, source: str) -> None:
        """Support modules, the package and third parties are fine."""
        assert not any(_forbidden(t) for t in _imported(source, "tests.test_a", is_package=False))


# Every package module but the ``__main__`` ones (importing those runs them). Names only:
# modules are imported by the test, not at collection.
MODULES = sorted(_module_name(path) for path in PACKAGE.rglob("*.py") if path.name != "__main__.py")


def _prompts(module: str) -> int:
    """The ``>>>`` lines in the module's source, wherever they are."""
    path = ROOT.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return sum(line.lstrip().startswith(">>>") for line in path.read_text().splitlines())


class TestDoctests:
    @pytest.mark.parametrize("module", MODULES)
    def test_examples_run(self, module: str) -> None:
        """Every ``>>>`` line of the module is part of a doctest, and each one passes: an
        example that cannot run is a ``::`` block, not a fake doctest."""
        imported = importlib.import_module(module)
        tests = doctest.DocTestFinder().find(imported, module)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        for test in tests:
            runner.run(test)
        assert sum(len(t.examples) for t in tests) == _prompts(module)
        assert runner.failures == 0, f"{runner.failures} failing example(s) in {module}"

    @pytest.mark.parametrize(
        "name",
        [
            "dpop_guard.proof.compute_ath",
            "dpop_guard.proof.ProofVerifier",
            "dpop_guard.jwk.jwk_thumbprint",
            "dpop_guard.challenges.build_challenge",
            "dpop_guard.routes.Route",
            "dpop_guard.testing.make_proof",
        ],
    )
    def test_entry_points_keep_a_runnable_example(self, name: str) -> None:
        """The pure entry points show a doctest (run by test_examples_run), not a sketch."""
        module, _, attribute = name.rpartition(".")
        docstring = getattr(importlib.import_module(module), attribute).__doc__
        assert doctest.DocTestParser().get_examples(docstring)


REFERENCE = ROOT / "docs" / "reference"
# Public modules the API reference leaves out, each for a reason.
NOT_IN_REFERENCE = {
    "dpop_guard.cli": "a command, documented in docs/cli.md",
    "dpop_guard.devtools": "the development tools' namespace; its modules are listed below",
    "dpop_guard.devtools.demo": "a program (python -m dpop_guard.devtools.demo)",
    "dpop_guard.devtools.demo.accounts": "the demo's app",
    "dpop_guard.devtools.demo.authorization_server": "the demo's authorization server",
    "dpop_guard.devtools.demo.fastapi_accounts": "the FastAPI example app",
    "dpop_guard.forward_auth": "a server, documented in docs/forward-auth.md",
}


def _rendered_in_extension() -> set[str]:
    """The RENDERED set of tools/griffe_sphinx_roles.py, read without importing griffe."""
    tree = ast.parse((ROOT / "tools" / "griffe_sphinx_roles.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "RENDERED" for t in node.targets
        ):
            return set(ast.literal_eval(node.value.args[0]))  # type: ignore[attr-defined]
    raise AssertionError("RENDERED not found")


class TestReference:
    def test_every_public_module_is_in_the_reference(self) -> None:
        """docs/reference/*.md have one ``:::`` block per public module, or say why not; the
        docs build's link resolver knows the same list. (A block may also name one object.)"""
        blocks = [
            line.removeprefix(":::").strip()
            for page in sorted(REFERENCE.glob("*.md"))
            for line in page.read_text().splitlines()
            if line.startswith(":::")
        ]
        listed = {name for name in blocks if name in MODULES}
        public = {m for m in MODULES if not any(p.startswith("_") for p in m.split("."))}
        assert public - set(NOT_IN_REFERENCE) == listed
        assert listed == _rendered_in_extension()
