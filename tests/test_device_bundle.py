"""The device bundle (tests/bench/device_bundle.py) and the device suite's search part, dry-run on the CPU.

The bundle is made from the distributions installed here (no network in the test's namespace),
stripped as for the device, installed with ``pip --no-index`` into a folder of its own, and then
carries a real Ray Tune search with Optuna: the suite's ``search`` part, its own process blocking
Ray and Optuna as the bare GPU machine lacks them, with only the bundle to give them to
``search/run_search.py``."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import runpy
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import RAY, run_cli, run_main
from tests.test_device_suite import BARE

BENCH = Path(__file__).parent / "bench"
BUNDLE = BENCH / "device_bundle.py"
SUITE = BENCH / "device_suite.py"


@pytest.fixture(scope="module")
def bundle() -> dict:
    return runpy.run_path(str(BUNDLE))


def _wheel(path: Path, files: dict[str, tuple[bytes, int]], dist_info: str = "demo-1.0.dist-info",
           requires: str = "") -> Path:
    """A wheel of ``files`` (name: (bytes, mode)) with its METADATA, WHEEL and a RECORD."""
    metadata = f"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n{requires}".encode()
    files = {f"{dist_info}/METADATA": (metadata, 0o100644),
             f"{dist_info}/WHEEL": (b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n", 0o100644), **files}
    with zipfile.ZipFile(path, "w") as z:
        for name, (data, mode) in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            z.writestr(info, data)
        z.writestr(f"{dist_info}/RECORD", "".join(f"{name},,\n" for name in files) + f"{dist_info}/RECORD,,\n")
    return path


def test_strip_drops_what_a_search_never_loads_and_keeps_modes_and_record(bundle, tmp_path):
    wheel = _wheel(tmp_path / "demo-1.0-py3-none-any.whl", {
        "ray/__init__.py": (b"", 0o100644), "ray/jars/ray_dist.jar": (b"x" * 5000, 0o100644),
        "ray/dashboard/client/build/index.html": (b"<html>", 0o100644), "ray/dashboard/head.py": (b"", 0o100644),
        "ray/core/src/ray/raylet/raylet": (b"#!/bin/sh\necho raylet\n", 0o100755), "ray/rllib/x.py": (b"", 0o100644)})
    lost = bundle["strip_wheel"](wheel)
    assert lost > 0
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert {"ray/__init__.py", "ray/dashboard/head.py", "ray/core/src/ray/raylet/raylet"} <= names
        assert not {n for n in names if n.startswith(("ray/jars/", "ray/dashboard/client/", "ray/rllib/"))}
        assert z.getinfo("ray/core/src/ray/raylet/raylet").external_attr >> 16 & stat.S_IXUSR
        record = {row[0]: row[1:] for row in csv.reader(io.StringIO(z.read("demo-1.0.dist-info/RECORD").decode()))}
        assert set(record) == names  # every member listed, no dropped one
        for name in names - {"demo-1.0.dist-info/RECORD"}:
            digest = base64.urlsafe_b64encode(hashlib.sha256(z.read(name)).digest()).rstrip(b"=").decode()
            assert record[name] == [f"sha256={digest}", str(len(z.read(name)))]
    target = tmp_path / "site"  # pip takes it, and the binary stays executable
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
                           str(target), str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert os.access(target / "ray/core/src/ray/raylet/raylet", os.X_OK)


def test_a_folder_that_cannot_run_programs_is_told_apart(bundle, tmp_path):
    """A temporary folder mounted noexec (a real tmpfs, in a mount namespace of the test's own):
    Ray's raylet and GCS could not start from a bundle installed there."""
    from tests.conftest import need_small_tmpfs

    assert bundle["runs_programs"](tmp_path / "site") is None
    need_small_tmpfs(tmp_path)
    folder = tmp_path / "noexec"
    folder.mkdir()
    probe = f"import runpy, sys; print(runpy.run_path(sys.argv[1])['runs_programs'](__import__('pathlib').Path(sys.argv[2])))"
    done = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m,noexec tmpfs {folder} && "
                           f"{sys.executable} -c \"{probe}\" {BUNDLE} {folder}/site"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("programs cannot run there (Permission denied")


def test_device_environment_and_requirements(bundle):
    env = bundle["target_environment"]("3.12")
    assert env["python_version"] == "3.12" and env["sys_platform"] == "linux" and env["platform_machine"] == "x86_64"
    requirement = bundle["Requirement"]
    applies = bundle["applies"]
    assert applies(requirement("jsonschema"), {""}, env)
    assert not applies(requirement("jsonschema"), {"tune"}, env)  # followed once, with the plain requirements
    assert applies(requirement('pandas; extra == "tune"'), {"tune"}, env)
    assert not applies(requirement('pandas; extra == "tune"'), {""}, env)
    assert not applies(requirement('async-timeout; python_version < "3.11"'), {""}, env)
    assert "torch" in bundle["DEVICE_HAS"] and "ray" not in bundle["DEVICE_HAS"] and "optuna" not in bundle["DEVICE_HAS"]


def test_ray_and_optuna_are_chosen_within_pyprojects_bounds(bundle, tmp_path):
    import importlib.metadata as metadata
    import tomllib

    declared = tomllib.loads((BENCH.parents[1] / "pyproject.toml").read_text())["project"]["dependencies"]
    roots = bundle["declared_roots"]()
    assert roots == [bundle["Requirement"](d) for d in declared if d.startswith(("ray[", "optuna"))]
    ray, optuna = roots
    assert ray.extras == {"tune"} and ray.specifier and optuna.specifier  # both bounded
    here = metadata.version("optuna")
    assert bundle["choose"](optuna) == (f"optuna=={here}", "installed here")  # what the tests ran
    outside = bundle["Requirement"](f"optuna>{here}")  # none installed within: the newest release within
    assert bundle["choose"](outside) == (
        f"optuna>{here}", f"the newest release within the bounds ({here} installed here lies outside them)")
    spec, why = bundle["choose"](bundle["Requirement"]("no-such-dist-here>=1,<2"))
    assert bundle["Requirement"](spec).specifier == bundle["Requirement"]("x>=1,<2").specifier
    assert why == "the newest release within the bounds (none installed here)"
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["optuna>=4"]\n')
    with pytest.raises(bundle["BadInput"], match="declares no requirement on ray"):
        bundle["declared_roots"](tmp_path / "pyproject.toml")


def test_bad_input_is_one_line_and_exit_2(bundle, tmp_path, capsys):
    main = bundle["main"]
    result = run_main(main, "install", "--out", str(tmp_path / "nowhere"), "--target", str(tmp_path / "t"), capsys=capsys)
    assert result.returncode == 2 and result.stderr.startswith(f"error: {tmp_path / 'nowhere'}: no bundle there")
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl").write_text("not a zip")
    result = run_main(main, "install", "--out", str(tmp_path / "wheels"), "--target", str(tmp_path / "t"), capsys=capsys)
    assert result.returncode == 2 and "not a wheel (not a zip file)" in result.stderr
    result = run_main(main, "--python-version", "twelve", "--out", str(tmp_path / "b"), capsys=capsys)
    assert result.returncode == 2 and "--python-version 'twelve'" in result.stderr
    assert not (tmp_path / "t").exists() and not (tmp_path / "b").exists()
    (tmp_path / "other").mkdir()  # a bundle for another Python: refused before pip, naming both versions
    _wheel(tmp_path / "other" / "demo-1.0-py3-none-any.whl", {"demo/__init__.py": (b"", 0o100644)})
    (tmp_path / "other" / "bundle.json").write_text(json.dumps({"python": "3.99"}))
    result = run_main(main, "install", "--out", str(tmp_path / "other"), "--target", str(tmp_path / "t"), capsys=capsys)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert result.returncode == 1 and f"the bundle is for CPython 3.99, but this is CPython {here}" in result.stderr
    assert not (tmp_path / "t").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")  # a folder that is not a bundle is never replaced
    result = run_main(main, "--from-installed", "--out", str(tmp_path / "mine"), capsys=capsys)
    assert result.returncode == 2 and "exists and is not a bundle" in result.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@RAY
def test_bundle_carries_a_real_search_with_ray_and_optuna_blocked_in_the_suite(bundle, tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    built = run_cli(str(BUNDLE), "build", "--from-installed", "--out", str(wheels), timeout=600)
    assert built.returncode == 0, built.stderr
    manifest = json.loads((wheels / "bundle.json").read_text())
    versions = manifest["versions"]  # within pyproject.toml's bounds, and said so in one line
    assert set(versions) == {"ray", "optuna"} and all(v["within_bounds"] and v["bounds"] for v in versions.values())
    [line] = [line for line in built.stdout.splitlines() if line.startswith("versions: ")]
    assert f"ray {versions['ray']['version']} (installed here; pyproject.toml: {versions['ray']['bounds']})" in line
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert manifest["python"] == here and manifest["for_the_device"] == (here == bundle["DEVICE_PYTHON"])
    assert (f"note: built for CPython {here}, not the device's" in built.stdout) != manifest["for_the_device"]
    names = {w["name"] for w in manifest["wheels"]}
    assert {"ray", "optuna", "sqlalchemy", "alembic"} <= names and not names & bundle["DEVICE_HAS"]
    assert manifest["fits_one_call"] and manifest["bundle_bytes"] < 64 << 20
    # the closure: every requirement of a bundled wheel, for the extras asked, is bundled or on the device
    env = bundle["target_environment"](manifest["python"])
    for entry in manifest["wheels"]:
        extras = {"", "tune"} if entry["name"] == "ray" else {""}
        for req in bundle["wheel_requirements"](wheels / entry["file"]):
            if bundle["applies"](req, extras, env):
                name = bundle["canonicalize_name"](req.name)
                assert name in names or name in bundle["DEVICE_HAS"], f"{entry['name']} needs {req}, left out"
    with zipfile.ZipFile(next(wheels.glob("ray-*.whl"))) as z:
        assert not [n for n in z.namelist() if bundle["stripped"](n)]

    installed = run_cli(str(BUNDLE), "install", "--out", str(wheels), "--target", str(target), timeout=300)
    assert installed.returncode == 0, installed.stderr
    assert "every requirement met" in installed.stdout

    out = tmp_path / "suite" / "suite.json"
    absent = tmp_path / "absent" / "pybullet"  # the device has no pybullet: nor does the search here
    absent.mkdir(parents=True)
    (absent / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'pybullet' (not on the device)\")\n")
    # Ray and Optuna only from the bundle's site, which the suite finds in installed.json; a search
    # far longer than the deadline, cut (here once 3 epochs are in, so that a slow machine still has
    # some), saved, and its curves rebuilt from its trial folders
    env = {**os.environ, "PYTHONPATH": str(absent.parent)}
    result = subprocess.run([sys.executable, "-c", BARE, str(SUITE), "--dry-run", "--parts", "search", "--out", str(out),
                             "--bundle", str(wheels), "--search-epochs", "1000", "--search-cut-at-epochs", "3",
                             "--deadline", "240"], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    checks = report["checks"]
    assert checks["python"].endswith(": ok") and checks["gpu"].startswith("none")
    assert checks["bundle_site"].startswith(f"{target.resolve()}: Ray ") and "its programs run" in checks["bundle_site"]
    assert "GiB free" in checks["disk"]
    part = report["parts"]["search"]
    assert Path(part["versions"]["ray_path"]).resolve().is_relative_to(target.resolve())
    assert part["exit_code"] == 143 and part["cut"].startswith("stopped by SIGTERM") and "(3 epochs reported)" in part["cut"]
    assert report["seconds"] < 240  # within the deadline, the stop and the rebuilt curves included
    assert part["trials_ran"] >= 1 and part["epochs"] >= 3 and part["trials_per_hour"] > 0, result.stdout[-3000:]
    assert part["oom"] == 0 and not part["errors"]
    assert part["gpu_busy_share"] is None and part["gpu_sampler"]  # no GPU here, and it says why
    assert Path(part["curves"]).is_file() and Path(part["curves"]).parent == out.parent  # the table comes back
    import pyarrow.parquet as pq

    table = pq.read_table(part["curves"]).to_pylist()
    assert {r["trial_id"] for r in part["rows"] if r["epochs"]} <= {row["trial_id"] for row in table}, part["curves_rebuilt"]
    assert len(table) >= part["epochs"]  # the rebuilt table holds every epoch reported before the cut

    # a requirement the machine does not meet: a warning, or with --strict a failure (a bundle of one
    # wheel, into the folder that already holds Ray and Optuna: the check imports them from there)
    unmet = tmp_path / "unmet"
    unmet.mkdir()
    _wheel(unmet / "demo-1.0-py3-none-any.whl", {"demo/__init__.py": (b"", 0o100644)},
           requires="Requires-Dist: no-such-package-here>=1\n")
    warned = run_cli(str(BUNDLE), "install", "--out", str(unmet), "--target", str(target), timeout=300)
    assert warned.returncode == 0 and "warning: demo needs no-such-package-here>=1, which is missing" in warned.stdout
    refused = run_cli(str(BUNDLE), "install", "--strict", "--out", str(unmet), "--target", str(target))
    assert refused.returncode == 1 and "demo needs no-such-package-here>=1" in refused.stderr
