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
