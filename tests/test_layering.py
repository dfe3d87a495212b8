"""Import layering, read from the source (AST, every import including those inside functions):
load → store → diagnose → charts / panels / report, arrows pointing down.

- the diagnostics never import panels, charts, the report or ipywidgets;
- panels and the report never import the ingest, the readers or the Delta writer;
- the sample account generator imports nothing of ours.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cfanalytics"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _files(package: str) -> list[Path]:
    """The source files of a module or package (``cfanalytics.sample`` may be a module or a package)."""
    relative = Path(*package.split("."))
    folder = PACKAGE.parent / relative
    if folder.is_dir():
        return sorted(folder.rglob("*.py"))
    module = folder.with_suffix(".py")
    return [module] if module.exists() else []


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved), at any depth."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _hits(package: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in _files(package):
        for module in sorted(imports(path)):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                out.append(f"{path.relative_to(PACKAGE.parent)} imports {module}")
    return out


def test_the_scanner_sees_imports_inside_functions():
    source = PACKAGE / "panels" / "postback_doctor.py"
    assert "ipywidgets" in imports(source)  # imported inside __init__ only
    assert "cfanalytics.panels._widgets.FilterBar" in imports(source)


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("cfanalytics.diagnose", ("cfanalytics.panels", "cfanalytics.charts", "cfanalytics.report", "ipywidgets")),
        ("cfanalytics.panels", ("cfanalytics.ingest", "cfanalytics.readers", "cfanalytics._delta")),
        ("cfanalytics.report", ("cfanalytics.ingest", "cfanalytics.readers", "cfanalytics._delta")),
    ],
)
def test_layers_import_only_downwards(package, forbidden):
    assert _files(package), package
    assert _hits(package, forbidden) == []


def test_the_sample_generator_imports_nothing_of_ours():
    files = _files("cfanalytics.sample")
    assert files
    ours = [
        f"{path.relative_to(PACKAGE.parent)} imports {module}"
        for path in files
        for module in sorted(imports(path))
        if (module == "cfanalytics" or module.startswith("cfanalytics."))
        and not module.startswith("cfanalytics.sample")
    ]
    assert ours == []


def test_pure_diagnostics_never_read_a_store():
    """The functions of frames import no loader: only ``frames`` and the one-line ``queries`` read."""
    pure = ("attribution", "error_rates", "events", "gaps", "incidents")
    for name in pure:
        found = imports(PACKAGE / "diagnose" / f"{name}.py")
        assert not {m for m in found if m.startswith(("cfanalytics.diagnose.frames", "cfanalytics.store"))}, name


def test_diagnostics_import_our_modules_at_the_top():
    """No hidden cycles: inside ``diagnose`` every import of our own modules is at module level."""
    nested = []
    for path in _files("cfanalytics.diagnose"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cfanalytics"):
                    nested.append(f"{path.name}:{node.lineno} {node.module}")
                elif isinstance(node, ast.Import) and any(a.name.startswith("cfanalytics") for a in node.names):
                    nested.append(f"{path.name}:{node.lineno}")
    assert nested == []
