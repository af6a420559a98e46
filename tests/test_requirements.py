"""The locked dependency set: requirements*.txt are pip-tools' compilation of requirements*.in.

``make`` installs the .txt files with ``--require-hashes``, so every line must be one package
pinned with ``==`` and hashed. These tests read the files only (no network, no pip): they catch
a hand-edited lock (a package added, a version changed, a hash or a provenance missing) and an
.in file changed without recompiling (a direct dependency absent from the lock, at another
version, or no longer direct), and they keep the development lock on the runtime's versions.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent

RUNTIME = ("requirements.in", "requirements.txt")
DEV = ("requirements-dev.in", "requirements-dev.txt")
PAIRS = [RUNTIME, DEV]

# One package of a compiled file once its continuation lines are joined: name==version and at
# least one sha256 hash, nothing else (no URL, no editable, no index or find-links option).
PINNED_LINE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)"
    r"(?P<hashes>(?:\s+--hash=sha256:[0-9a-f]{64})+)$"
)
# A direct dependency in an .in file: name, optional extras, ==version (pinned, as before).
IN_LINE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[(?P<extras>[A-Za-z0-9._,-]+)\])?"
    r"==(?P<version>[A-Za-z0-9.+!_-]+)$"
)


def canonical(name: str) -> str:
    """PEP 503 name: pip-compile writes ``flask``, the .in file may say ``Flask``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Locked:
    """One package of a compiled file, with what pip-compile wrote under it."""

    name: str
    version: str
    hashes: frozenset[str]
    via: list[str] = field(default_factory=list)


@dataclass
class Direct:
    """One direct dependency of an .in file."""

    name: str
    version: str
    extras: tuple[str, ...]


def logical_lines(text: str) -> list[str]:
    """Lines with their backslash continuations joined, as pip reads them."""
    joined: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        joined.append(pending + raw)
        pending = ""
    assert not pending, "the file ends on a backslash continuation"
    return joined


def parse_compiled(filename: str) -> dict[str, Locked]:
    """Reads a compiled file; fails on any line that is not a hashed pin or a comment."""
    packages: dict[str, Locked] = {}
    current: Locked | None = None
    for line in logical_lines((ROOT / filename).read_text(encoding="utf-8")):
        stripped = line.strip()
        if not stripped:
            current = None
            continue
        if stripped.startswith("#"):
            indented = line.startswith(" ")
            if not indented:
                current = None  # the header, or the "unsafe packages" note of --allow-unsafe
                continue
            assert current is not None, f"{filename}: a comment belongs to no package: {line!r}"
            body = stripped.lstrip("#").strip()
            if body.startswith("via"):
                body = body[len("via"):].strip()
            if body:
                current.via.append(body)
            continue
        match = PINNED_LINE.match(stripped)
        assert match, f"{filename}: not name==version with sha256 hashes: {stripped[:120]!r}"
        key = canonical(match["name"])
        assert key not in packages, f"{filename}: {match['name']} is listed twice"
        hashes = frozenset(re.findall(r"sha256:([0-9a-f]{64})", match["hashes"]))
        current = Locked(match["name"], match["version"], hashes)
        packages[key] = current
    return packages


def parse_in(filename: str) -> tuple[dict[str, Direct], list[str]]:
    """Direct dependencies of an .in file, and its -c / -r options."""
    direct: dict[str, Direct] = {}
    options: list[str] = []
    for raw in (ROOT / filename).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            options.append(line)
            continue
        match = IN_LINE.match(line)
        assert match, f"{filename}: a direct dependency is pinned with ==: {line!r}"
        key = canonical(match["name"])
        assert key not in direct, f"{filename}: {match['name']} is listed twice"
        extras = tuple(e.strip() for e in (match["extras"] or "").split(",") if e.strip())
        direct[key] = Direct(match["name"], match["version"], extras)
    return direct, options


@pytest.mark.parametrize(("in_file", "txt_file"), PAIRS)
def test_every_line_is_pinned_and_hashed_with_a_provenance(in_file: str, txt_file: str) -> None:
    packages = parse_compiled(txt_file)
    assert packages, f"{txt_file} lists no package"
    for key, locked in packages.items():
        assert locked.hashes, f"{txt_file}: {locked.name} has no hash"
        assert locked.via, (
            f"{txt_file}: {locked.name} has no '# via' line: added by hand? "
            f"Add it to {in_file} and recompile"
        )
        assert key == canonical(locked.name)


@pytest.mark.parametrize(("in_file", "txt_file"), PAIRS)
def test_the_header_names_the_compile_command(in_file: str, txt_file: str) -> None:
    """Compiled from its own .in, with hashes, unsafe packages kept, extras stripped, and no
    index or find-links of the machine that compiled it.

    Stripped extras keep requirements.txt usable as the constraints file of
    requirements-dev.in (pip refuses extras in a constraints file). The lock is resolved for
    one Python: a new interpreter means a recompile, not a lock that happens to install.
    """
    lines = (ROOT / txt_file).read_text(encoding="utf-8").splitlines()
    header = "\n".join(itertools.takewhile(lambda line: line.startswith("#"), lines))
    command = next(line for line in header.splitlines() if "pip-compile --" in line).split()
    flags = ("--generate-hashes", "--allow-unsafe", "--strip-extras", "--no-emit-index-url",
             "--no-emit-find-links", f"--output-file={txt_file}")
    for flag in flags:
        assert flag in command, f"{txt_file} was compiled without {flag}"
    assert command[-1] == in_file, f"{txt_file} was compiled from {command[-1]}, not {in_file}"
    python = re.search(r"autogenerated by pip-compile with Python (\d+)\.(\d+)", header)
    assert python, f"{txt_file}: the header does not say which Python it was compiled with"
    assert (int(python[1]), int(python[2])) == sys.version_info[:2], (
        f"{txt_file} was compiled for Python {python[1]}.{python[2]}: recompile on this one"
    )


@pytest.mark.parametrize(("in_file", "txt_file"), PAIRS)
def test_every_direct_dependency_is_locked_at_its_version(in_file: str, txt_file: str) -> None:
    direct, _ = parse_in(in_file)
    packages = parse_compiled(txt_file)
    assert direct, f"{in_file} lists no dependency"
    for key, wanted in direct.items():
        assert key in packages, f"{wanted.name} is in {in_file} but not in {txt_file}: recompile"
        locked = packages[key]
        assert locked.version == wanted.version, (
            f"{wanted.name}: {in_file} says {wanted.version}, {txt_file} {locked.version}"
        )
        assert f"-r {in_file}" in locked.via, f"{txt_file}: {wanted.name} not marked direct"
    # An extra's packages are locked too: psycopg[binary] brings psycopg-binary.
    assert "psycopg-binary" in parse_compiled(RUNTIME[1])


@pytest.mark.parametrize(("in_file", "txt_file"), PAIRS)
def test_every_locked_package_comes_from_the_in_file(in_file: str, txt_file: str) -> None:
    """Each provenance names the .in file, the runtime lock, or a package of the same lock, and
    every package is reached from a direct dependency (nothing left over from a removed one)."""
    direct, options = parse_in(in_file)
    packages = parse_compiled(txt_file)
    allowed_sources = {f"-r {in_file}"} | {opt for opt in options if opt.startswith("-c ")}
    children: dict[str, set[str]] = {key: set() for key in packages}
    for key, locked in packages.items():
        for source in locked.via:
            if source.startswith("-"):
                assert source in allowed_sources, f"{txt_file}: {locked.name} via {source!r}"
                if source == f"-r {in_file}":
                    assert key in direct, (
                        f"{txt_file}: {locked.name} is marked direct but is not in {in_file}"
                    )
                continue
            parent = canonical(source)
            assert parent in packages, (
                f"{txt_file}: {locked.name} comes via {source}, which the file does not list"
            )
            children[parent].add(key)
    reached: set[str] = set()
    todo = [key for key in packages if key in direct]
    while todo:
        key = todo.pop()
        if key not in reached:
            reached.add(key)
            todo.extend(children[key])
    assert set(packages) == reached, (
        f"{txt_file}: not needed by any package of {in_file}: {sorted(set(packages) - reached)}"
    )


def test_development_resolves_to_the_runtime_versions() -> None:
    """requirements-dev.txt goes on top of requirements.txt: a package both need is pinned to
    the same version with the same hashes, so the second install replaces nothing."""
    _, options = parse_in(DEV[0])
    assert f"-c {RUNTIME[1]}" in options, f"{DEV[0]} must be constrained by {RUNTIME[1]}"
    runtime = parse_compiled(RUNTIME[1])
    dev = parse_compiled(DEV[1])
    runtime_direct, _ = parse_in(RUNTIME[0])
    dev_direct, _ = parse_in(DEV[0])
    assert not set(runtime_direct) & set(dev_direct), "a direct dependency is listed in both .in"
    for key, locked in dev.items():
        constrained = f"-c {RUNTIME[1]}" in locked.via
        if key in runtime:
            assert (locked.version, locked.hashes) == (runtime[key].version, runtime[key].hashes), (
                f"{locked.name}: {DEV[1]} pins {locked.version}, {RUNTIME[1]} "
                f"{runtime[key].version} (or their hashes differ): recompile both"
            )
            assert constrained, f"{DEV[1]}: {locked.name} is not marked as constrained"
        else:
            assert not constrained, f"{DEV[1]}: {locked.name} is constrained by a missing pin"


@pytest.mark.parametrize(("in_file", "txt_file"), PAIRS)
def test_the_dependencies_of_each_locked_package_are_locked(in_file: str, txt_file: str) -> None:
    """A line deleted from a lock leaves no trace in the file itself, and a line added by hand
    can claim any provenance; the installed metadata (read from this environment, no network)
    says what each package needs. Checked for every locked package installed here at its locked
    version, which is all of them after ``make``."""
    direct, _ = parse_in(in_file)
    packages = parse_compiled(txt_file)
    extras: dict[str, set[str]] = {key: set(wanted.extras) for key, wanted in direct.items()}
    needs: dict[str, list[Requirement]] = {}
    for key, locked in packages.items():
        try:
            installed = importlib.metadata.version(locked.name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if canonical_version(installed) == canonical_version(locked.version):
            requires = importlib.metadata.requires(locked.name) or []
            needs[key] = [Requirement(text) for text in requires]
    changed = True
    while changed:  # extras asked for by other packages bring their own dependencies
        changed = False
        for key, requirements in needs.items():
            for requirement in applicable(requirements, extras.get(key, set())):
                wanted = extras.setdefault(canonical(requirement.name), set())
                if not requirement.extras <= wanted:
                    wanted |= requirement.extras
                    changed = True
    needed_by = {
        key: {canonical(r.name) for r in applicable(requirements, extras.get(key, set()))}
        for key, requirements in needs.items()
    }
    for key, locked in packages.items():
        for parent in (canonical(source) for source in locked.via if not source.startswith("-")):
            if parent in needed_by:
                assert key in needed_by[parent], (
                    f"{txt_file}: {locked.name} comes via {packages[parent].name}, "
                    "which does not need it"
                )
    for key, requirements in needs.items():
        for requirement in applicable(requirements, extras.get(key, set())):
            dependency = canonical(requirement.name)
            assert dependency in packages, (
                f"{txt_file}: {packages[key].name} needs {requirement}, which is not locked"
            )
            assert requirement.specifier.contains(packages[dependency].version, prereleases=True), (
                f"{txt_file}: {packages[key].name} needs {requirement}, "
                f"locked {packages[dependency].version}"
            )


def applicable(requirements: list[Requirement], extras: set[str]) -> list[Requirement]:
    """The requirements whose markers hold here, for the package itself or one of its extras."""
    return [
        requirement for requirement in requirements
        if requirement.marker is None
        or any(requirement.marker.evaluate({"extra": extra}) for extra in {"", *extras})
    ]


def canonical_version(version: str) -> str:
    """``1.0`` and ``1.0.0`` are one version."""
    return str(Version(version))
