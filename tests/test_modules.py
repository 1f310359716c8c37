"""The packages' layout: every module is reachable by its dotted name, no module or package imports
in a circle, and Ray's and Optuna's internals stay in their adapters."""

import ast
import re
import importlib
import pkgutil
import types
from pathlib import Path

import pytest

import search
import vidseg


def _modules(package: types.ModuleType) -> list[str]:
    return [info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
            if not info.name.split(".")[-1].startswith("__")]


@pytest.mark.parametrize("package", [vidseg, search], ids=lambda p: p.__name__)
def test_no_module_is_shadowed_by_a_name_in_its_package(package):
    """``import a.b`` then ``a.b`` must be the module b: a function of the same name in ``a``'s
    ``__init__`` (as ``vidseg.train.fit`` once was) would hide it."""
    names = _modules(package)
    assert "vidseg.train.loop" in names or package is search
    shadowed = []
    for name in names:
        module = importlib.import_module(name)
        parent, _, leaf = name.rpartition(".")
        if getattr(importlib.import_module(parent), leaf) is not module:
            shadowed.append(name)
    assert not shadowed, f"shadowed by a name in their package: {shadowed}"


def test_no_script_folder_module_hides_an_installed_package():
    """``python search/run_search.py`` puts ``search/`` first on sys.path, so a module there named
    like an installed package (``search/tensorboard.py`` once was) would be imported in its place,
    by torch among others."""
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(search.__file__).parent
    others = [p for p in sys.path if Path(p or ".").resolve() != folder.resolve()]
    clashes = []
    names = [f.stem for f in folder.glob("*.py")] + [d.name for d in folder.iterdir() if (d / "__init__.py").is_file()]
    assert {"run_search", "space", "run", "results", "tools"} <= set(names)
    for name in names:
        if name.startswith("__"):
            continue
        spec = importlib.machinery.PathFinder.find_spec(name, others)
        if spec is not None and spec.origin is None:
            spec = None  # a plain folder (e.g. the repository's results/), not an installed package
        if spec is not None or name in sys.builtin_module_names or name in sys.stdlib_module_names:
            clashes.append(name)
    assert not clashes, f"modules and packages in search/ named like installed ones: {clashes}"
    assert importlib.util.find_spec("tensorboard") is not None  # the check above can find one


# ----------------------------------------------------------------------------------------------
# imports: no circle, search/'s layers, and third-party internals only in their adapters

ROOT = Path(search.__file__).resolve().parent.parent
ADAPTERS = {"search.run.ray_internals", "search.run.optuna_internals"}
# search/'s packages, each importing only those before it (the commands at its top import any)
LAYERS = ("search.space", "search.results", "search.run", "search.tools")


def _sources() -> dict[str, Path]:
    out = {}
    for top in ("search", "vidseg"):
        for file in (ROOT / top).rglob("*.py"):
            parts = file.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _imports(sources: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project's modules it imports, at its top or inside a function."""
    graph = {}
    for name, file in sources.items():
        deps = set()
        for node in _runtime_nodes(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                deps |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {d for d in deps if d in sources and d != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_between_modules_nor_packages():
    graph = _imports(_sources())
    assert "search.results.rows" in graph["search.results.report"]  # the graph sees imports
    assert not _circles(graph), "modules that import each other"
    package = {}
    for name, deps in graph.items():
        top = ".".join(name.split(".")[:2])
        package.setdefault(top, set()).update(".".join(d.split(".")[:2]) for d in deps)
    package = {k: v - {k} for k, v in package.items()}
    assert not _circles(package), "packages that import each other"


def test_search_packages_import_only_the_layers_below_them():
    graph = _imports(_sources())
    upward = []
    for name, deps in graph.items():
        layer = next((i for i, p in enumerate(LAYERS) if name == p or name.startswith(p + ".")), None)
        if layer is None:
            continue
        for dep in deps:
            above = next((i for i, p in enumerate(LAYERS) if dep == p or dep.startswith(p + ".")), None)
            if dep.startswith("search.") and (above is None or above > layer):
                upward.append(f"{name} -> {dep}")
    assert not upward, f"imports against search/'s layers {LAYERS}: {upward}"


def _third_party_privates(name: str, file: Path) -> list[str]:
    """Where a module reaches into Ray's or Optuna's insides: a private module, a private attribute
    of something not its own (``x._y``), or, in a class built on theirs, a private attribute it reads
    but never sets."""
    tree = ast.parse(file.read_text())
    third = {}  # local name -> the Ray or Optuna object it was imported as
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("ray", "optuna"):
            if any(part.startswith("_") for part in node.module.split(".")):
                found.append(f"{name}:{node.lineno} from {node.module}")
            third.update({a.asname or a.name: node.module for a in node.names})
        elif isinstance(node, ast.Import):
            third.update({(a.asname or a.name).split(".")[0]: a.name for a in node.names
                          if a.name.split(".")[0] in ("ray", "optuna")})
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Name) and owner.id in ("torch", "np"):
                continue  # not Ray's nor Optuna's (torch._dynamo's settings: vidseg.train.loop)
            found.append(f"{name}:{node.lineno} {ast.unparse(node)}")
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b).split(".")[0] in third for b in node.bases):
            own, read = set(), {}
            for inner in ast.walk(node):
                if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    own.add(inner.name)
                if isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Name) and inner.value.id == "self" \
                        and inner.attr.startswith("_") and not inner.attr.startswith("__"):
                    (own.add(inner.attr) if isinstance(inner.ctx, ast.Store) else read.setdefault(inner.attr, inner.lineno))
            found += [f"{name}:{line} {node.name} reads self.{attr}" for attr, line in read.items() if attr not in own]
    return found


def test_the_privates_finder_finds_each_kind(tmp_path):
    file = tmp_path / "m.py"
    file.write_text("from ray.autoscaler._private import util\nfrom ray.tune.search.optuna import OptunaSearch\n"
                    "class S(OptunaSearch):\n    def f(self):\n        self._mine = 1\n"
                    "        return self._ot_study, self._mine\n\ndef g(study):\n    return study._storage\n")
    found = _third_party_privates("m", file)
    assert sorted(f.split(" ", 1)[1] for f in found) == ["S reads self._ot_study", "from ray.autoscaler._private",
                                                         "study._storage"], found


def test_ray_and_optuna_internals_are_used_only_in_their_adapters():
    sources = _sources()
    assert ADAPTERS <= set(sources)
    assert _third_party_privates("search.run.ray_internals", sources["search.run.ray_internals"])  # it sees them
    found = [hit for name, file in sources.items() if name not in ADAPTERS for hit in _third_party_privates(name, file)]
    assert not found, f"Ray or Optuna internals outside {sorted(ADAPTERS)}: {found}"


# ----------------------------------------------------------------------------------------------
# the task's facts, once

FACTS = re.compile(r"\b(22|49|11)\b|160, 240|160x240")
NOT_THE_TASK = {  # lines that match FACTS but are about something else: (file, text on the line, why)
    ("vidseg/accel.py", "torch 2.11.0", "a torch version"),
    ("vidseg/models/simvp.py", "INCEPTION_KERNELS = (3, 5, 7, 11)", "SimVP's Inception kernel sizes"),
    ("vidseg/models/simvp.py", "CONVMIXER_KERNEL = 11", "ConvMixer's depthwise kernel size in OpenSTL"),
    ("search/run_search.py", "--gpu-memory-gb 22", "an A10G's memory in GiB"),
    ("search/run/settings.py", "an A10G: 22", "an A10G's memory in GiB"),
    ("search/run/tuner.py", "an A10G: 22", "an A10G's memory in GiB"),
    ("search/results/progress.py", ":>11", "a column's width"),
    ("search/results/board.py", "row, columns, column = 22, 2, 400", "a legend's layout in pixels"),
}


def test_the_tasks_facts_are_written_only_in_vidseg_task():
    """Frames in (11), frames in all (22), classes (49) and the frame size (160x240) are
    ``vidseg.task``'s; every other module imports them (prose names frames by role)."""
    assert FACTS.search("frames 1-11 of 160x240") and not FACTS.search("frame221")
    hits = []
    for name, file in _sources().items():
        path = file.relative_to(ROOT).as_posix()
        if path == "vidseg/task.py":
            continue
        for number, line in enumerate(file.read_text().splitlines(), 1):
            if FACTS.search(line) and not any(path == f and text in line for f, text, _ in NOT_THE_TASK):
                hits.append(f"{path}:{number}: {line.strip()}")
    assert not hits, "the task's facts outside vidseg/task.py:\n" + "\n".join(hits)


LONGEST, LONG, MOST_LONG = 80, 60, 5  # lines: none longer; how many may be longer than LONG


def _function_lengths(files, root: Path = ROOT) -> list[tuple[int, str]]:
    """(lines, "file:name") of every function and method in ``files``, nested ones included."""
    found = []
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((node.end_lineno - node.lineno + 1, f"{file.relative_to(root)}:{node.name}"))
    return found


def test_the_length_finder_counts_a_function_whole(tmp_path):
    (tmp_path / "m.py").write_text("def f():\n" + "    x = 1\n" * 70 + "\n    def g():\n        return 2\n")
    assert sorted(_function_lengths([tmp_path / "m.py"], tmp_path)) == [(2, "m.py:g"), (74, "m.py:f")]


def test_functions_are_short():
    """A function does one thing: none in search/ or vidseg/ over LONGEST lines, at most MOST_LONG over LONG."""
    lengths = _function_lengths(sorted((ROOT / "search").rglob("*.py")) + sorted((ROOT / "vidseg").rglob("*.py")))
    assert [where for lines, where in lengths if lines > LONGEST] == []
    long = sorted((lines, where) for lines, where in lengths if lines > LONG)
    assert len(long) <= MOST_LONG, long
