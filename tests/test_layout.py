"""The package's layers, as the README's layout section states them: imports only go downward
(toolkit <- gan <- evaluation <- cli), and the leaves import nothing of the package."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lsswgan_core"
# lower number = lower layer; a module may import its own layer and those below
LAYERS = {"config": 0, "files": 0, "resources": 0, "progress": 0, "ranks": 0, "_version": 0,
          "_ext": 0, "_C": 0, "ops": 1, "io": 1, "stats": 1, "sim": 1, "data": 1, "gan": 2, "evaluation": 3}
LEAVES = ("config", "files", "resources", "progress", "ranks")


def _top(module: str) -> str:
    """'lsswgan_core.gan.train' -> 'gan'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    """The lsswgan_core modules a file imports, absolute, relative and inside functions."""
    here = ["lsswgan_core", *path.relative_to(PACKAGE).with_suffix("").parts]
    package = here[:-1]           # the package a relative import starts from
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [f"{mod}.{a.name}" for a in node.names]
            if mod.startswith("lsswgan_core"):
                found |= {n if _top(mod) == "" else mod for n in names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lsswgan_core")}
    return found


def test_every_module_has_a_layer():
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.glob("*")
            if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())}
    assert tops - {"__init__"} == set(LAYERS) - {"_C"}   # _C: the compiled extension


def test_imports_only_go_downward():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.name == "__init__.py" and len(rel.parts) == 1:
            continue                      # the package's lazy front door
        own = rel.parts[0].removesuffix(".py")
        for mod in _imports(path):
            top = _top(mod)
            if top and LAYERS[top] > LAYERS[own]:
                wrong.append(f"{rel} imports {mod}")
            if own in LEAVES and top and top != own:
                wrong.append(f"{rel} (a leaf) imports {mod}")
    assert not wrong, "\n".join(wrong)


def test_the_leaves_import_without_torch_or_the_build():
    import subprocess
    import sys

    code = ("import sys; sys.modules['lsswgan_core._C'] = None; "
            "import lsswgan_core.config, lsswgan_core.files, lsswgan_core.resources, "
            "lsswgan_core.progress, lsswgan_core.ranks; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
