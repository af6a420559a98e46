"""The house's floors: no module of ``app/`` imports from a floor above its own.

Each room (a package or a module of ``app/``) sits on one floor. A module may import from its
own room, from any room on a lower floor, and from another room on its own floor; never from
a higher floor. Imports inside functions and under ``TYPE_CHECKING`` count too: a late import
is still a dependency. Run ``python -m tests.architecture.test_layers`` to print every import
that breaks the rule.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app"

#: From the ground up. The longest matching prefix places a module.
FLOORS: tuple[tuple[str, ...], ...] = (
    # 0. Foundations: pure rules and vocabularies, the unbound extensions.
    ("app.extensions", "app.states", "app.scopes", "app.labels", "app.gln", "app.phone",
     "app.email_address", "app.text", "app.pdf"),
    # 1. Settings, keys and the tables.
    ("app.config", "app.crypto", "app.models"),
    # 2. HTTP plumbing: headers, errors, locale, lists, forms, logs.
    ("app.web",),
    # 3. The audit trail, its queries and its exports.
    ("app.audit",),
    # 4. Notifications (email).
    ("app.notify",),
    # 5. Who is signed in: passwords, codes, sessions, HIN.
    ("app.auth",),
    # 6. The DPI's documents: ingest, policy, release, retraction, the API.
    ("app.dispatch",),
    # 7. Pages: the doctor's inbox and profile, the hospital's staff and desk, the site.
    ("app.inbox", "app.profile", "app.staff", "app.site"),
    # 8. Entry points: the factory, the command line, the jobs, the demo.
    ("app", "app.cli", "app.demo"),
)


def floor_of(module: str) -> tuple[int, str]:
    """The floor and the room (the longest matching prefix) of a module."""
    best: tuple[int, str] | None = None
    for level, rooms in enumerate(FLOORS):
        for room in rooms:
            if (module == room or module.startswith(room + ".")) and (
                best is None or len(room) > len(best[1])
            ):
                best = (level, room)
    if best is None:
        raise LookupError(f"{module} is on no floor: add it to FLOORS")
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every ``app`` module this file imports, wherever the import is."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "app" or alias.name.startswith("app."):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target == "app" or target.startswith("app."):
                if target == "app":  # `from app import models`: each name is a module or not
                    for alias in node.names:
                        sub = APP / alias.name
                        is_module = sub.is_dir() or sub.with_suffix(".py").exists()
                        yield node.lineno, f"app.{alias.name}" if is_module else "app"
                else:
                    yield node.lineno, target


def upward_imports() -> list[str]:
    found = []
    for path in sorted(APP.rglob("*.py")):
        me = module_name(path)
        my_floor, my_room = floor_of(me)
        for line, target in imports_of(path):
            their_floor, their_room = floor_of(target)
            if their_room == my_room or their_floor <= my_floor:
                continue
            found.append(f"{path.relative_to(ROOT)}:{line}: {me} (floor {my_floor}) imports "
                         f"{target} (floor {their_floor})")
    return found


def test_no_module_imports_from_a_floor_above_its_own() -> None:
    assert upward_imports() == []


def test_every_module_has_a_floor() -> None:
    for path in APP.rglob("*.py"):
        floor_of(module_name(path))


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The walk itself: a models module importing a dispatch operation is caught."""
    fake = APP / "models" / "_layer_probe.py"
    fake.write_text("def f():\n    from app.dispatch import ingest\n")
    try:
        assert any("app.models._layer_probe" in line for line in upward_imports())
    finally:
        fake.unlink()


if __name__ == "__main__":
    problems = upward_imports()
    print("\n".join(problems) or "no upward imports")
    sys.exit(1 if problems else 0)
