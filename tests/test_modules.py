"""The packages' layout: every module is reachable by its dotted name."""

import importlib
import pkgutil
import types

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
    for file in folder.glob("*.py"):
        if file.stem.startswith("__"):
            continue
        spec = importlib.machinery.PathFinder.find_spec(file.stem, others)
        if spec is not None or file.stem in sys.builtin_module_names or file.stem in sys.stdlib_module_names:
            clashes.append(file.stem)
    assert not clashes, f"modules in search/ named like installed ones: {clashes}"
    assert importlib.util.find_spec("tensorboard") is not None  # the check above can find one
