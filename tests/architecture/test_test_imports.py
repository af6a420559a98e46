"""No test module imports another test module.

What several tests share lives in ``tests/support/`` (helpers, fixtures a module imports) or in
a ``conftest.py``; a ``test_*.py`` file holds tests only. So a test module can be moved, split or
deleted without breaking another, and a helper is found where helpers are. The walk reads every
Python file under tests/ (the test modules, the conftests and the support modules) with ``ast``.

Run as a script (``python -m tests.architecture.test_test_imports``) it prints the offenders.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _is_test_module(dotted: str) -> bool:
    parts = dotted.split(".")
    return parts[0] == "tests" and parts[-1].startswith("test_")


def _package_of(path: Path, root: Path) -> list[str]:
    """The dotted package of ``path``, counted from the folder that holds ``root`` (tests/)."""
    return [root.name, *path.relative_to(root).parent.parts]


def imported_test_modules(path: Path, root: Path = TESTS) -> list[str]:
    """The ``tests.….test_*`` modules that the file at ``path`` imports, in the order written."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from .test_x import y, from . import test_x
                package = _package_of(path, root)
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if _is_test_module(module):
                found.append(module)
            else:  # from tests.web import test_pages
                found += [f"{module}.{alias.name}" for alias in node.names
                          if _is_test_module(f"{module}.{alias.name}")]
    return found


def imports_of_test_modules(root: Path = TESTS) -> list[str]:
    """One line per import of a test module, in any Python file under ``root``."""
    lines = []
    for path in sorted(root.rglob("*.py")):
        if "node_modules" in path.parts:
            continue
        for module in imported_test_modules(path, root):
            lines.append(f"{path.relative_to(root.parent)} imports {module}")
    return lines


def test_no_test_module_imports_another() -> None:
    offenders = imports_of_test_modules()
    assert not offenders, "move what they share to tests/support/ or a conftest.py:\n" + "\n".join(
        offenders)


def test_the_check_sees_an_import_of_a_test_module(tmp_path: Path) -> None:
    """The walk itself: each way of writing the import is caught; support and conftest are not."""
    root = tmp_path / "tests"
    (root / "web").mkdir(parents=True)
    (root / "support").mkdir()
    (root / "web" / "test_pages.py").write_text("def test_page():\n    pass\n")
    (root / "web" / "test_probe.py").write_text(
        "from tests.web.test_pages import csrf_token\n"
        "import tests.web.test_pages\n"
        "from tests.web import test_pages\n"
        "from .test_pages import test_page\n"
        "def helper():\n"
        "    from tests.web.test_pages import later\n"
        "from tests.support.pages import csrf_token as fine\n"
        "from tests.conftest import Api\n"
    )
    (root / "support" / "pages.py").write_text("from tests.web.test_pages import sneaky\n")

    offenders = imports_of_test_modules(root)

    probe = [line for line in offenders if line.startswith("tests/web/test_probe.py")]
    assert probe == ["tests/web/test_probe.py imports tests.web.test_pages"] * 5
    assert offenders[0] == "tests/support/pages.py imports tests.web.test_pages"
    assert len(offenders) == 6


if __name__ == "__main__":
    print("\n".join(imports_of_test_modules()) or "no test module imports another")
