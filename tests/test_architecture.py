"""The one-way architecture (docs/architecture.md): the import graph, light imports, static model metadata,
trace-friendly models, greppable registry names and files written before the restructuring."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from squeezelab import create_model as create_with_weights
from squeezelab.cli.main import COMMANDS, build_parser
from squeezelab.errors import InputShapeError, SqueezelabError
from squeezelab.extras import EXTRAS
from squeezelab.models import create_model, get_model_entry, list_models
from squeezelab.models._base import SpatialOp, min_input_side, output_side
from squeezelab.weights import WEIGHTS_LOADERS, build_model, load_weights, register_weights_loader

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "squeezelab"
COMPAT = ROOT / "tests" / "data" / "compat"
HEAVY = ("onnxruntime", "matplotlib", "sklearn", "skimage")
#: The core: what every stage may import and what imports no stage (docs/architecture.md).
CORE = ("squeezelab", "squeezelab.errors", "squeezelab.io", "squeezelab.tables", "squeezelab.extras", "squeezelab.cpu",
        "squeezelab.plotting", "squeezelab.lazy", "squeezelab.models", "squeezelab.weights",
        "squeezelab.data.preprocess", "squeezelab.data.imagenet")
CLI = ("squeezelab.cli", "squeezelab.__main__")
#: The demo's stages: above every stage (each demo stage drives one), below the CLI; no stage imports it.
DEMO = "squeezelab.demo"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path) -> set[str]:
    """The squeezelab modules ``name`` imports anywhere (module level and inside functions).

    Blocks under ``if TYPE_CHECKING:`` never run and are left out, and so are the ``"module:function"``
    strings of lazy tables (``WEIGHTS_LOADERS``, the package's ``_API``), which are data, not imports.
    """
    found: set[str] = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit_one(other)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
        visit(node)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in MODULES}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> str:
    if any(module == c or module.startswith(c + ".") for c in CLI):
        return "cli"
    if module == DEMO or module.startswith(DEMO + "."):
        return "demo"
    if any(module == c or (c != "squeezelab" and module.startswith(c + ".")) for c in CORE):
        return "core"
    return "stage"


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as [a, b, ..., a], or [] when it has none."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_import_graph_has_no_cycle():
    cycle = _cycle(GRAPH)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def _package(module: str) -> str:
    """The node of ``module`` in the package graph: its stage package (``squeezelab.compress.int8`` ->
    ``compress``), or itself for a top-level module (``squeezelab.io`` -> ``io``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_package_graph_has_no_cycle():
    """Importing any module of a package runs the package's ``__init__`` first, so two packages whose modules
    import each other can fail at import time (a partly initialised ``__init__``) even when the module graph
    has no cycle: each package imports only packages that never import it back (compress -> export -> core)."""
    packages: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        packages.setdefault(_package(module), set()).update(_package(t) for t in targets)
    for package, targets in packages.items():
        targets.discard(package)
    assert "export" in packages["compress"]  # compress.int8 exports to ONNX before quantizing
    cycle = _cycle(packages)
    assert not cycle, "package import cycle: " + " -> ".join(cycle)


def test_layers_import_only_downwards():
    assert len(GRAPH) > 80 and GRAPH["squeezelab.weights.loader"]  # the parser found the package
    allowed = {"core": {"core"}, "stage": {"core", "stage"}, "demo": {"core", "stage", "demo"},
               "cli": {"core", "stage", "demo", "cli"}}
    wrong = sorted(f"{m} ({_layer(m)}) imports {t} ({_layer(t)})" for m, targets in GRAPH.items()
                   for t in targets if _layer(t) not in allowed[_layer(m)])
    assert not wrong, "\n".join(wrong)


#: Imports inside functions outside the CLI that are not optional dependencies, and why each stays there.
#: torchvision is a core dependency, but importing it costs about 1.2 s (it loads sympy), and only the
#: model names outside the zoo need it (measured on the 2-core machine; docs/architecture.md).
FUNCTION_IMPORT_EXCEPTIONS = {
    ("squeezelab.models.baselines", "torchvision"):
        "the baselines and torchvision names outside the zoo ('simulate alexnet', 'profile resnet18'); at the "
        "top it adds 1.2 s to every 'squeezelab profile' or 'simulate' of a zoo model (3.4 s -> 4.6 s)",
}


def _function_imports(name: str, path: Path) -> list[tuple[int, str]]:
    """(line, module) of each import that runs inside a function of ``name``, relative ones made absolute.

    ``if TYPE_CHECKING:`` blocks never run and are left out.
    """
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit_one(other, in_function)
                continue
            visit_one(child, in_function)

    def visit_one(node: ast.AST, in_function: bool) -> None:
        if in_function and isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif in_function and isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            found.append((node.lineno, ".".join(base + ([node.module] if node.module else []))))
        visit(node, in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


FUNCTION_IMPORTS = {name: _function_imports(name, path) for name, path in MODULES.items() if _layer(name) != "cli"}


def test_no_squeezelab_import_inside_a_function():
    """Rule 2: a stage or core module imports squeezelab modules at the top, where the graph tests see them,
    never inside a function to dodge a cycle. Only the CLI imports its stage inside ``run()`` (a light --help)."""
    hidden = sorted(f"{MODULES[m].relative_to(ROOT)}:{line}: {target}" for m, found in FUNCTION_IMPORTS.items()
                    for line, target in found if target.split(".")[0] == "squeezelab")
    assert not hidden, "move these imports to the top of the module:\n" + "\n".join(hidden)


def test_imports_inside_functions_are_optional_dependencies():
    """Rule 2: outside the CLI, an import inside a function (``import x`` or ``extras.require("x", ...)``) is of a
    heavy optional dependency listed in ``extras.EXTRAS``; core dependencies (torch, numpy, PIL, safetensors)
    and the standard library are imported at the top, but for the exceptions listed above with their reason."""
    wrong, used = [], set()
    for module, found in FUNCTION_IMPORTS.items():
        for line, target in found:
            top = target.split(".")[0]
            if (module, top) in FUNCTION_IMPORT_EXCEPTIONS:
                used.add((module, top))
            elif top not in EXTRAS and top != "squeezelab":  # squeezelab: the test above
                wrong.append(f"{MODULES[module].relative_to(ROOT)}:{line}: {target}")
    assert not wrong, "import these at the top of the module:\n" + "\n".join(sorted(wrong))
    assert used == set(FUNCTION_IMPORT_EXCEPTIONS), "stale exceptions: " + str(set(FUNCTION_IMPORT_EXCEPTIONS) - used)
    required = sorted((name, node.args[0].value) for name, path in MODULES.items()
                      for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                      if isinstance(node, ast.Call) and ast.unparse(node.func) in ("require", "extras.require")
                      and node.args and isinstance(node.args[0], ast.Constant))
    assert required and all(module.split(".")[0] in EXTRAS for _, module in required), required


#: The one layer trace (docs/architecture.md): the only module that runs a model under forward hooks or a
#: torch function mode to read its layers. Counting, the profile and the simulator are views of it.
TRACE = "squeezelab.models.tracing"
TRACE_VIEWS = ("squeezelab.analysis.counting", "squeezelab.analysis.profiling", "squeezelab.hwsim.sim",
               "squeezelab.train.checks")
#: Other modules that hook into a model's run, and why theirs is not a second layer trace.
HOOK_EXCEPTIONS = {
    "squeezelab.compress.biascorr": "captures the input activations of chosen layers on real images (bias correction)",
    "squeezelab.compress.ptq": "captures each convolution's inputs and outputs on calibration images (INT8 "
                               "equalisation, rounding and bias correction)",
    "squeezelab.analysis.memory": "counts the bytes of live tensors per ATen op (peak memory), which a layer list "
                                  "cannot show",
    "squeezelab.search.proxies": "reads the ReLU activation patterns of real images (the NASWOT kernel), values "
                                 "that a layer list does not hold",
}
_HOOK_CALLS = ("register_forward_hook", "register_forward_pre_hook", "register_module_forward_hook",
               "register_module_forward_pre_hook")
_MODES = ("TorchFunctionMode", "TorchDispatchMode")


def _hooking(path: Path) -> bool:
    """Whether a module registers forward hooks or defines a torch function / dispatch mode."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in _HOOK_CALLS:
            return True
        if isinstance(node, ast.ClassDef) and any(ast.unparse(base).split(".")[-1] in _MODES for base in node.bases):
            return True
    return False


def test_one_layer_trace():
    """Counting, profile and simulate read one trace, in the core; no other module traces a model's layers."""
    assert _layer(TRACE) == "core"
    assert sorted(m for m, p in MODULES.items() if _hooking(p)) == sorted([TRACE, *HOOK_EXCEPTIONS])
    assert all(TRACE in GRAPH[view] for view in TRACE_VIEWS), [v for v in TRACE_VIEWS if TRACE not in GRAPH[v]]


#: The one image-source layer (docs/architecture.md): the only module that turns folders, zips and arrays into
#: sets of labelled images. Training, eval, fidelity, calibration and the INT8 check read their images through it.
SOURCES = "squeezelab.data.sources"
SOURCE_USERS = ("squeezelab.data.datasets", "squeezelab.inference.evaluate", "squeezelab.compress.fidelity",
                "squeezelab.compress.measure", "squeezelab.compress.int8", "squeezelab.deploy.optimize")
#: Other modules that open zips or image files, and why theirs is not a second source layer.
IMAGE_READ_EXCEPTIONS = {
    "squeezelab.data.preprocess": "defines the one image rule, the one decoder (read_image) and the one file walk",
    "squeezelab.data.fingerprint": "digests zip central directories and file sizes (resume checks); decodes nothing",
    "squeezelab.inference.predict": "opens the one image file the user names (predict), not a set",
}
_IMAGE_READERS = ("zipfile", "read_image", "files_under", "image_files", "is_image_file_name")


def _reads_images(path: Path) -> bool:
    """Whether a module names ``zipfile`` or one of the image-file functions of ``data.preprocess``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [alias.name for alias in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
        if isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, (ast.FunctionDef, ast.Attribute)):
            names = [getattr(node, "name", None) or node.attr]
        if any(name in _IMAGE_READERS for name in names):
            return True
    return False


def test_one_image_source_layer():
    """Folders, zips and arrays become image sets in one stage module that imports only the core; no other module
    scans folders or opens zips for images (issue 29: five containers, two zip readers and two folder scans)."""
    core = {m for m in MODULES if _layer(m) == "core"}
    assert _layer(SOURCES) == "stage" and GRAPH[SOURCES] <= core, GRAPH[SOURCES] - core
    assert sorted(m for m, p in MODULES.items() if _reads_images(p)) == sorted([SOURCES, *IMAGE_READ_EXCEPTIONS])
    assert all(SOURCES in GRAPH[user] for user in SOURCE_USERS), [u for u in SOURCE_USERS if SOURCES not in GRAPH[u]]


def test_models_never_import_weights():
    """models <- weights, one way: weights build the architecture a file names; models know no files."""
    wrong = sorted(f"{m} imports {t}" for m, targets in GRAPH.items() if m.startswith("squeezelab.models")
                   for t in targets if not t.startswith("squeezelab.models") and t != "squeezelab.errors")
    assert not wrong, "\n".join(wrong)


def test_weights_loaders_are_lazy_strings_of_stage_functions():
    import importlib

    for fmt, loader in WEIGHTS_LOADERS.items():
        for target in (loader.read, loader.run):
            if target is None:
                continue
            module, _, function = target.partition(":")
            assert _layer(module) == "stage", (fmt, target)
            assert callable(getattr(importlib.import_module(module), function))
    assert WEIGHTS_LOADERS["onnx"].run_name == "squeezelab.export.load_onnx"


def test_registered_loader_is_what_load_weights_and_create_model_use(monkeypatch):
    from squeezelab.compress.sqz import read_sqz

    calls: list[Path] = []

    def counting_read(path: Path):
        calls.append(path)
        return read_sqz(path)

    def run(path: Path):
        raise AssertionError("create_model must not run the file")

    monkeypatch.setitem(WEIGHTS_LOADERS, "sqz", WEIGHTS_LOADERS["sqz"])  # restored after the test
    register_weights_loader("sqz", counting_read)
    model = create_with_weights("squeezenet1_1", weights=COMPAT / "squeezenet1_1_small.sqz")
    assert calls == [COMPAT / "squeezenet1_1_small.sqz"] and model.num_classes == 10
    register_weights_loader("sqz", counting_read, run)
    with pytest.raises(SqueezelabError, match=r"run it with test_architecture\.test_registered_loader.*\.run\("):
        create_with_weights("squeezenet1_1", weights=COMPAT / "squeezenet1_1_small.sqz")


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                          cwd=ROOT).stdout


def test_import_squeezelab_and_cli_help_stay_light():
    loaded = _run("import sys, squeezelab; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))").split()
    assert not set(HEAVY + ("torch",)) & set(loaded)
    code = ("import sys, contextlib, io\nfrom squeezelab.cli import main\nwith contextlib.redirect_stdout(io.StringIO()):"
            "\n    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
            "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))")
    assert not set(HEAVY + ("torch",)) & set(_run(code).split())


def test_core_use_stays_light():
    """Building a model and reading a checkpoint import no optional dependency, not torchvision and no stage."""
    ckpt = COMPAT / "squeezenet1_1_small.safetensors"
    loaded = _run(f"import sys, squeezelab\nsqueezelab.create_model('squeezenet1_1', weights={str(ckpt)!r})\n"
                  "print(' '.join(sorted(sys.modules)))").split()
    assert not {m.split(".")[0] for m in loaded} & set(HEAVY + ("torchvision",))
    # squeezelab.data's __init__ runs for data.preprocess; its dataset names load on first use
    assert not [m for m in loaded if m.startswith("squeezelab.") and _layer(m) != "core" and m != "squeezelab.data"]


def test_lazy_cli_help_matches_the_full_parser():
    full = build_parser()
    assert full.format_help() == build_parser(lazy=True).format_help()
    commands = next(a for a in full._actions if a.dest == "command")
    assert {a.dest: a.help for a in commands._choices_actions} == {k: v[1] for k, v in COMMANDS.items()}


def test_no_library_module_touches_pyplot_or_the_backend():
    offenders = [str(p.relative_to(SRC)) for p in PACKAGE.rglob("*.py")
                 if re.search(r"matplotlib\.use\(|matplotlib\.pyplot|import pyplot", p.read_text(encoding="utf-8"))]
    assert not offenders


def test_every_optional_import_maps_to_a_declared_extra():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS.values()) <= set(extras)
    assert {"train", "deploy", "plots", "data", "all", "test"} <= set(extras)


def test_registered_names_are_greppable_defs():
    source = "\n".join(p.read_text(encoding="utf-8") for p in (PACKAGE / "models").glob("*.py"))
    missing = [name for name in list_models() if not re.search(rf"^def {name}\(", source, re.M)]
    assert not missing


def _zoo_variants() -> list[tuple[str, bool]]:
    return [(name, small) for name in list_models() for small in (False, True)
            if not small or get_model_entry(name).small_input]


def _accepts(model: torch.nn.Module, side: int) -> bool:
    """Whether the trunk runs on a ``side`` x ``side`` image and leaves at least one pixel (a real forward pass)."""
    try:
        out = model.forward_features(torch.zeros(1, model.in_chans, side, side))
    except RuntimeError:
        return False
    return min(out.shape[-2:]) >= 1


@pytest.mark.parametrize(("name", "small_input"), _zoo_variants())
def test_min_input_size_matches_real_forward_passes(name: str, small_input: bool):
    model = create_model(name, num_classes=3, **({"small_input": True} if small_input else {})).eval()
    side = model.min_input_size
    with torch.no_grad():
        assert _accepts(model, side)
        assert side == 1 or not _accepts(model, side - 1)
        if side > 1:
            with pytest.raises(InputShapeError, match=f"minimum {side}x{side}"):
                model(torch.zeros(1, model.in_chans, side - 1, side - 1))


def test_small_input_metadata_says_which_models_accept_it():
    for name in list_models():
        accepts = True
        try:
            with torch.device("meta"):
                create_model(name, num_classes=3, small_input=True)
        except SqueezelabError:
            accepts = False
        assert get_model_entry(name).small_input == accepts, name


def test_min_input_side_arithmetic():
    ceil_pool = SpatialOp(3, 2, 0, True, True)
    assert [output_side(n, ceil_pool) for n in (1, 2, 3, 4)] == [0, 1, 1, 2]  # PyTorch's ceil-mode rule
    assert [output_side(n, SpatialOp(3, 2, 0, False, True)) for n in (2, 3)] == [0, 1]
    assert min_input_side([SpatialOp(7, 2), ceil_pool, ceil_pool, ceil_pool]) == 21  # torchvision's v1.0 min_size
    with pytest.raises(ValueError):
        min_input_side([SpatialOp(1 << 17, 1)])


@pytest.mark.parametrize("name", ["squeezenet1_1", "sqnxt23v5_w1"])
def test_models_trace_export_and_fx_without_wrappers(name: str):
    model = create_model(name, num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        with warnings.catch_warnings():
            warnings.simplefilter("error", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.trace is deprecated"
            traced = torch.jit.trace(model, (x,))
        torch.testing.assert_close(traced(x), expected)
        torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), expected)
        torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), expected)
    with pytest.raises(InputShapeError, match="input channels"):  # eager mode still checks
        model(torch.randn(1, 1, 64, 64))


COMPAT_FILES = ["squeezenet1_1_small.safetensors", "sqnxt23_w1_small.safetensors", "squeezenet1_1_small.sqz"]


@pytest.mark.parametrize("name", COMPAT_FILES)
def test_files_written_before_the_restructuring_still_load(name: str):
    expected = load_file(COMPAT / "expected.safetensors")
    model = create_with_weights(load_weights(COMPAT / name)[1].architecture, weights=COMPAT / name)
    assert isinstance(model, torch.nn.Module) and model.num_classes == 10 and not model.training
    with torch.no_grad():
        torch.testing.assert_close(model(expected["input"]), expected[name], rtol=1e-5, atol=1e-5)


def test_onnx_written_before_the_restructuring_runs_through_the_explicit_call():
    pytest.importorskip("onnxruntime")
    from squeezelab.export import load_onnx

    path = COMPAT / "squeezenet1_1_small.onnx"
    expected = load_file(COMPAT / "expected.safetensors")
    runtime, meta = load_onnx(path)
    assert meta.architecture == "squeezenet1_1" and meta.model_kwargs["small_input"] is True
    torch.testing.assert_close(runtime(expected["input"]), expected[path.name], rtol=1e-5, atol=1e-5)
    generic = build_model(path, architecture="squeezenet1_1")  # the generic loader still opens it, through the table
    torch.testing.assert_close(generic(expected["input"]), expected[path.name], rtol=1e-5, atol=1e-5)
    with pytest.raises(SqueezelabError, match=r"squeezelab\.export\.load_onnx\(") as info:
        create_with_weights("squeezenet1_1", weights=path, num_classes=10)
    assert "\n" not in str(info.value)


def test_architecture_only_create_model_points_to_the_weights_one():
    with pytest.raises(SqueezelabError, match=r"squeezelab\.create_model\(name, weights="):
        create_model("squeezenet1_1", weights="squeezenet1_1.caffe")


def test_missing_optional_dependency_names_the_extra(monkeypatch):
    from squeezelab.extras import require

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(SqueezelabError, match=r"pip install 'squeezelab\[deploy\]'"):
        require("onnxruntime", "running ONNX models")
