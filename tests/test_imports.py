"""The module table of DESIGN.md §3: library modules import only what it allows."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xferlab"
# DESIGN.md §3, layer by layer: what each module may import of xferlab (besides itself and
# `config`, the schemas and registries' machinery every layer stands on).
LIBRARY = {
    "config": set(), "files": set(), "packages": set(), "plugins": set(), "figures": set(),
    "console": set(),
    "evaluate": {"data", "figures"}, "scores": set(),
    "data": {"packages"}, "backbones": {"files", "packages"}, "heads": set(),
    "freezing": set(), "optim": {"freezing"}, "tracking": {"figures"},
    "engine": {"freezing", "optim", "evaluate", "console"}, "features": {"engine", "backbones"},
    "tune": {"tracking"}, "report": {"tracking", "figures"}, "checkpoint": {"files", "tracking"},
}
LAUNCH = set(LIBRARY)
RECIPES = LAUNCH | {"launch"}
# a recipe may run another: tune's trials and pretrain's sources are train runs
ALLOWED = {**LIBRARY, "launch": LAUNCH, "recipes": RECIPES,
           "commands": RECIPES | {"recipes"}, "cli": RECIPES | {"recipes", "commands"}}


def _module(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """The xferlab modules a file imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("xferlab"):
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("xferlab."))
    return found


def test_every_module_imports_only_what_the_design_allows():
    files = [p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py"]
    unplaced = sorted({_module(p) for p in files} - set(ALLOWED))
    assert unplaced == [], "place these modules in DESIGN.md §3 and ALLOWED"
    bad = [f"{p.relative_to(PACKAGE)} imports xferlab.{dep}" for p in files
           for dep in _imports(p) - ALLOWED[_module(p)] - {_module(p), "config"}]
    assert bad == []


def test_the_recipes_package_holds_only_recipes():
    assert {p.stem for p in (PACKAGE / "recipes").glob("*.py")} == {
        "__init__", "train", "pretrain", "tune", "rank"}


def test_cli_help_does_not_import_heavy_libraries():
    import subprocess
    import sys

    code = ("import sys; from xferlab import cli; cli.main(['--help']); "
            "print(sorted(m for m in ('torch', 'timm', 'mlflow', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_config_errors_answer_without_importing_torch(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from xferlab import cli; code = cli.main(['train', 'data.fraction=2']); "
            "print(code, sorted(m for m in ('torch', 'timm', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path)
    assert out.stdout.strip().splitlines()[-1] == "2 []"
    assert "data.fraction=2.0 is out of range" in out.stderr
