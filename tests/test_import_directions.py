"""Keeps the module table of design.md section 2 true: imports only point the allowed way."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "coach"

# Area of a module -> areas it may import (besides itself and the package root `coach`).
# sinks and sources may raise errors at the edges (start-up, files, devices).
ALLOWED: dict[str, set[str]] = {
    "types": set(),
    "errors": set(),
    "config": {"types", "errors"},
    "profiles": {"types", "errors"},
    "wire": {"types", "errors", "profiles"},
    "sources": {"types", "errors", "profiles", "wire"},
    "stream": {"types", "config"},
    "cues": {"types", "config"},
    "sinks": {"types", "config", "errors"},
    "evaluation": {"types", "stream"},
    "remote_tuning": {"types", "errors", "config"},
    "athlete": {"types", "errors", "config"},
    "tuning": {"types", "errors", "config", "cues"},
    "config_watch": {"types", "errors", "config"},
    "report": {"types", "errors", "config", "cues", "tuning", "sources"},
}
TOP_LEVEL = {
    "runtime",
    "cli",
    "cli_replay",
    "cli_simulate",
    "cli_recording",
    "cli_tune",
    "cli_live",
    "live",
    "__main__",
    "__init__",
}


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _coach_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("coach"))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.startswith("coach")
        ):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(relative.parts)


def test_imports_follow_the_module_table() -> None:
    known_areas = set(ALLOWED) | TOP_LEVEL
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        area = _area(module)
        assert area in known_areas, f"{module}: area {area!r} is not in the table"
        if area not in ALLOWED:
            continue
        for imported in _coach_imports(path):
            target = _area(imported)
            if imported == "coach" or target == area or target not in known_areas:
                continue
            if target not in ALLOWED[area]:
                violations.append(f"{module} imports {imported}")
    assert not violations, "imports against design.md section 2:\n" + "\n".join(violations)


def test_the_core_does_no_io_and_no_asyncio() -> None:
    forbidden = {"asyncio", "time", "socket", "threading", "open"}
    for folder in ("stream", "cues"):
        for path in (PACKAGE / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = {node.module.split(".")[0]}
                elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    names = {node.func.id} & {"open"}
                else:
                    continue
                assert not names & forbidden, f"{path.name} uses {names & forbidden}"
