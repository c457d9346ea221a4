"""The package's import arrows (issue #12): data flows sources → pipeline → sinks / checkpoint, and
these seams stay where they were put. Read from the source with ``ast``, so a lazy import inside a
function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "agent"


def _imports(path: Path) -> set[str]:
    """Every ``agent.…`` module ``path`` imports (``from a.b import c`` counts as ``a.b`` and ``a.b.c``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "agent" or name.startswith("agent.")}


def _modules(*parts: str) -> list[Path]:
    base = PACKAGE.joinpath(*parts)
    return [base] if base.suffix == ".py" else sorted(base.rglob("*.py"))


def _offenders(files: list[Path], forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    out = []
    for path in files:
        for name in sorted(_imports(path)):
            if name in allowed:
                continue
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                out.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    return out


def test_sinks_do_not_import_sources() -> None:
    assert _offenders(_modules("sinks"), ("agent.sources",)) == []


@pytest.mark.parametrize("family", ["sinks", "sources", "codecs"])
def test_components_do_not_import_the_agent_config(family: str) -> None:
    """Config composes the components' models; the components never reach back into it."""
    assert _offenders(_modules(family), ("agent.config",)) == []


def test_config_imports_no_component_internals_lazily() -> None:
    init = (PACKAGE / "config" / "__init__.py").read_text(encoding="utf-8")
    assert "__getattr__" not in init


def test_commands_use_only_what_agent_sources_exports() -> None:
    """``commands/`` and the CLI see sources through ``agent.sources`` (its ``__all__``), never a
    module inside it."""
    import agent.sources

    exported = ("agent.sources", *(f"agent.sources.{name}" for name in agent.sources.__all__))
    files = _modules("commands") + _modules("cli.py")
    assert _offenders(files, ("agent.sources",), allowed=exported) == []


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The reader itself: a lazy import inside a function is found."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from agent.sources.graph.client import GraphClient\n", encoding="utf-8")
    assert "agent.sources.graph.client" in _imports(probe)
