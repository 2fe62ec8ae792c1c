"""The package's layers (docs/architecture.md) hold: no module imports from a layer above its own.

Every import counts, also those inside functions (the lazy imports that keep torch out of the
classic path) and under TYPE_CHECKING: a lazy import upwards is still a dependency upwards. And
`smarthdr merge --backend classic` runs without importing torch.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_bracket

REPO = Path(__file__).resolve().parents[1]
# Source folder -> import name (pyproject.toml's package-dir).
PACKAGES = {"smarthdr_cli": REPO / "smarthdr_cli", "smarthdr_backends": REPO / "backends"}

# Bottom to top; a module may import from its own layer and the layers below it. A name ending in
# "." covers the package's every module. The most specific entry wins.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("smarthdr_cli", "smarthdr_cli.errors", "smarthdr_cli.sizes", "smarthdr_cli.signals", "smarthdr_cli.machine", "smarthdr_cli.heap", "smarthdr_cli.io", "smarthdr_cli.io.quiet")),
    ("core", (
        "smarthdr_cli.io.", "smarthdr_cli.exposure", "smarthdr_cli.bracket", "smarthdr_cli.response", "smarthdr_cli.preprocess",
        "smarthdr_cli.tonemap", "smarthdr_cli.metrics", "smarthdr_cli.align", "smarthdr_cli.camera",
    )),
    ("model", ("smarthdr_cli.model", "smarthdr_cli.model.")),
    ("plugins", ("smarthdr_backends", "smarthdr_backends.")),
    ("use cases", (
        "smarthdr_cli.reading", "smarthdr_cli.merge", "smarthdr_cli.discover", "smarthdr_cli.batch", "smarthdr_cli.evaluate",
        "smarthdr_cli.data", "smarthdr_cli.data.", "smarthdr_cli.train", "smarthdr_cli.train.",
    )),
    ("cli", ("smarthdr_cli.app", "smarthdr_cli.options", "smarthdr_cli.progress", "smarthdr_cli.__main__")),
]


def layer_of(module: str) -> int | None:
    """The index in LAYERS of `module`'s layer (the most specific entry that covers it), or None."""
    best: tuple[int, int] | None = None  # (length of the matching entry, layer)
    for index, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            if module == entry or (entry.endswith(".") and module.startswith(entry)):
                if best is None or len(entry) > best[0]:
                    best = (len(entry), index)
    return best[1] if best else None


def modules() -> dict[str, Path]:
    """Every module of the two packages by import name (a package by its own name)."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def imported(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(module imported, line) for every import of our packages anywhere in the file."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, one step up per extra dot
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # `from pkg import submodule` depends on the submodule
                candidate = f"{source}.{alias.name}"
                found.append((candidate if candidate in known else source, node.lineno))
    return [(name, line) for name, line in found if name.split(".")[0] in PACKAGES]


def test_every_module_has_a_layer():
    missing = sorted(m for m in modules() if layer_of(m) is None)
    assert not missing, f"modules without a layer (add them to docs/architecture.md and LAYERS here): {', '.join(missing)}"


def test_no_module_imports_from_a_layer_above_its_own():
    known = set(modules())
    upward = []
    for module, path in modules().items():
        own = layer_of(module)
        if own is None:
            continue
        for name, line in imported(module, path, known):
            target = layer_of(name)
            if target is not None and target > own:
                upward.append(
                    f"{path.relative_to(REPO)}:{line}: {module} ({LAYERS[own][0]}) imports {name} ({LAYERS[target][0]})"
                )
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_the_foundation_and_core_do_not_import_torch_at_module_level():
    """Below the model layer torch may only be imported inside a function (tonemap's torch path)."""
    heavy = []
    for module, path in modules().items():
        own = layer_of(module)
        if own is None or own > 1:
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            heavy += [f"{module}: {name}" for name in names if name.split(".")[0] == "torch"]
    assert not heavy, heavy


def test_the_checker_sees_an_upward_import(tmp_path):
    """The check must catch what it is for: a function-local import of the CLI by a core module."""
    path = tmp_path / "tonemap.py"
    path.write_text("def f():\n    from smarthdr_cli.app import app\n    from . import merge\n")
    names = [name for name, _ in imported("smarthdr_cli.tonemap", path, set(modules()))]
    assert names == ["smarthdr_cli.app", "smarthdr_cli.merge"]
    assert layer_of("smarthdr_cli.app") > layer_of("smarthdr_cli.merge") > layer_of("smarthdr_cli.tonemap")


CHILD = """
import json, sys
from smarthdr_cli.app import main
sys.argv = ["smarthdr", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "smarthdr_cli.model.gfhdr", "smarthdr_backends.torch")))
print(json.dumps({"code": code, "loaded": loaded}))
"""


def test_classic_merge_does_not_import_torch(tmp_path, static_scene):
    """`merge --backend classic` needs no PyTorch: not imported at all, not even lazily."""
    _, frames = static_scene
    paths = write_bracket(tmp_path / "bracket", frames)
    out = tmp_path / "out.exr"
    command = [sys.executable, "-c", CHILD, "merge", *map(str, paths), "-o", str(out), "--ev", "-2,0,2",
               "--backend", "classic", "--preview", str(tmp_path / "out.jpg"), "-q"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["code"] == 0, result.stderr
    assert out.is_file()
    assert report["loaded"] == [], f"the classic merge imported {report['loaded']}"


@pytest.mark.parametrize("module", ["smarthdr_cli.app", "smarthdr_cli.merge", "smarthdr_cli.batch"])
def test_importing_the_cli_and_the_merge_does_not_import_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_every_package_is_listed_in_pyproject():
    """A package missing from `packages` works in an editable checkout and is absent from a
    wheel: every folder with an __init__.py must be listed."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    for package, folder in PACKAGES.items():
        for init in folder.rglob("__init__.py"):
            name = ".".join([package, *init.parent.relative_to(folder).parts])
            assert name in listed, f"{name} is not in pyproject.toml's [tool.setuptools] packages"
