"""Ray and Optuna for the device machine: a bundle of wheels that installs there with no network.

    python tests/bench/device_bundle.py                    # here: download, strip, check -> .device-wheels/
    python3 tests/bench/device_bundle.py install           # there: pip --no-index into /tmp/site, then check

The GPU machine that runs ``tests/bench/device_suite.py`` has torch, numpy, pyarrow, pandas and
more, but neither Ray nor Optuna, reaches no registry, and takes at most 64 MiB of files a call,
the repository included. This script makes what its ``search`` part needs:

- **build** (the default, here): downloads from the registries the wheels of ``ray[tune]`` and
  ``optuna`` within ``pyproject.toml``'s bounds (the versions installed here where they lie within
  them: what the tests ran; else the newest release within them), for the device's Python
  (``--python-version``, 3.12) on manylinux x86_64, and the wheels of every requirement of theirs,
  followed to the end, that the device lacks (``DEVICE_HAS``, read off the machine's image); the
  versions installed here where they satisfy the requirement. ``bundle.json`` records each version
  chosen and why, and the builder says so in one line. Ray's wheel (79 MB) is stripped of
  what a headless search on one machine never loads (``STRIP``: Java workers, the dashboard's web
  front end, RLlib, Serve and Ray's LLM library) and re-zipped, modes kept. It checks that the
  bundle and the working tree that travels with it fit in one call, and writes ``bundle.json``
  (each wheel, its size, what was stripped, what the device already has).
- **build --from-installed**: the same closure, strip and check, but the wheels are made from the
  distributions installed here (their RECORD), for this machine's Python, with no network: the
  test suite's dry run.
- **install** (on the device): ``pip install --no-index --no-deps --target DIR`` of the bundle,
  then, in a fresh interpreter with ``DIR`` on ``PYTHONPATH``, imports Ray Tune and Optuna, checks
  that they came from ``DIR``, and that every bundled distribution's requirements are met by what
  the interpreter sees (a warning each where not; ``--strict`` fails). Then ``export
  PYTHONPATH=DIR`` (the device suite's ``search`` part runs ``search/run_search.py`` with it).

The bundle folder is git-ignored: a device call carries it (``carry=[".device-wheels"]``). Bad
input (no bundle, a wheel that is not one) is one line and exit 2; a bundle that does not fit, a
failed install or a failed check, exit 1.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib.metadata as metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / ".device-wheels"
DEFAULT_TARGET = "/tmp/site"
FALLBACK_SITE = ".device-site"  # in the working tree (git-ignored), where the target cannot run programs
INSTALLED = "installed.json"  # beside the wheels: where install put them, for the device suite
MIB = 1 << 20
CALL_LIMIT_MIB = 64  # what travels with one device call: the working tree and the carried paths
ROOT_NAMES = ("ray", "optuna")  # what the search needs beside what the device has
DEVICE_PYTHON = "3.12"  # the GPU machine's interpreter (the device tool's KINDS.md)

# The device's Python packages (the 'cuda' image, as read on 2026-11-17: the device tool's KINDS.md),
# canonical names. Versions are not listed there; ``install`` checks each requirement on the machine.
DEVICE_HAS = frozenset(canonicalize_name(name) for name in """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio interface-meta iniconfig jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())

# What a search on one machine never loads, by member path of Ray's wheel, and why. The search
# runs Ray's core (raylet, GCS, the runtime-env agent, whose vendored aiohttp stays), Tune, Train's
# session API and Ray Data's imports; a test runs a real Tune search with Optuna from the stripped
# bundle alone.
STRIP = (
    ("ray/jars/", "Java workers (32 MB of the 79 MB)"),
    ("ray/dashboard/client/", "the dashboard's web front end (the search runs headless)"),
    ("ray/rllib/", "RLlib, reinforcement learning"),
    ("ray/serve/", "Ray Serve, model serving"),
    ("ray/llm/", "Ray's LLM library"),
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")


class BadInput(Exception):
    """One line for the user; exit 2."""


def stripped(member: str) -> bool:
    return any(member.startswith(prefix) for prefix, _ in STRIP)


def target_environment(python_version: str) -> dict[str, str]:
    """The marker environment of the device's interpreter: CPython ``python_version`` on Linux x86_64."""
    env = default_environment()
    major_minor = ".".join(python_version.split(".")[:2])
    full = python_version if python_version.count(".") >= 2 else f"{major_minor}.0"
    env.update(python_version=major_minor, python_full_version=full, implementation_name="cpython",
               implementation_version=full, platform_python_implementation="CPython", sys_platform="linux",
               platform_system="Linux", platform_machine="x86_64", os_name="posix")
    return env


def wheel_requirements(wheel: Path) -> list[Requirement]:
    """A wheel's ``Requires-Dist``, every one."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        text = z.read(name).decode()
    return [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines() if line.startswith("Requires-Dist:")]


def applies(req: Requirement, extras: Iterable[str], env: dict[str, str]) -> bool:
    """Whether a requirement applies under ``env`` for any of ``extras`` ("" for the distribution itself)."""
    return req.marker is None and "" in extras or req.marker is not None and any(
        req.marker.evaluate({**env, "extra": extra}) for extra in extras)


def declared_roots(pyproject: Path = REPO / "pyproject.toml") -> list[Requirement]:
    """Ray's and Optuna's requirements as ``pyproject.toml`` declares them (``ray[tune]>=2.60,<3``):
    the bundle's versions lie within these bounds."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: the installed project's metadata says the same
        lines = metadata.requires("vidseg-search") or []
    else:
        lines = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    found = {canonicalize_name(req.name): req for req in map(Requirement, lines) if req.marker is None}
    missing = [name for name in ROOT_NAMES if name not in found]
    if missing:
        raise BadInput(f"{pyproject}: declares no requirement on {', '.join(missing)}")
    return [found[name] for name in ROOT_NAMES]


def choose(root: Requirement) -> tuple[str, str]:
    """A requirement as a pip argument within its bounds, and why: pinned to the version installed
    here where it lies within them (the device then runs what the tests here ran), else the newest
    release within them."""
    try:
        here = metadata.version(root.name)
    except metadata.PackageNotFoundError:
        here = None
    extras = f"[{','.join(sorted(root.extras))}]" if root.extras else ""
    if here is not None and root.specifier.contains(Version(here), prereleases=True):
        return f"{root.name}{extras}=={here}", "installed here"
    why = f"{here} installed here lies outside them" if here else "none installed here"
    return f"{root.name}{extras}{root.specifier}", f"the newest release within the bounds ({why})"


# ----------------------------------------------------------------------------------------------
# making wheels


def download_wheel(spec: str, out: Path, python_version: str) -> Path:
    """``pip download`` one wheel, without its requirements, for the device's interpreter."""
    before = set(out.glob("*.whl"))
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               python_version, "--implementation", "cp", *(f"--platform={p}" for p in PLATFORMS), "-d", str(out), spec]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"pip download {spec} failed: {done.stderr.strip().splitlines()[-1:]}")
    name = canonicalize_name(Requirement(spec).name)
    for path in set(out.glob("*.whl")) - before or out.glob("*.whl"):
        if canonicalize_name(parse_wheel_filename(path.name)[0]) == name:
            return path
    raise RuntimeError(f"pip download {spec} left no wheel of {name} in {out}")


def _record_line(name: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def _write_wheel(path: Path, members: Iterable[tuple[str, int, Callable[[], bytes]]], dist_info: str) -> None:
    """A wheel of ``members`` (name, Unix mode, reader), modes kept (Ray's binaries must stay
    executable), with a RECORD written anew (zlib level 6: level 9 is 3x slower for 0.5% less)."""
    record_name = f"{dist_info}/RECORD"
    rows = []
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        for name, mode, read in members:
            if name == record_name:
                continue
            data = read()
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (mode & 0xFFFF) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data, compresslevel=6)
            rows.append(_record_line(name, data))
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows([*rows, [record_name, "", ""]])
        z.writestr(record_name, text.getvalue())
    tmp.replace(path)


def strip_wheel(wheel: Path) -> int:
    """Rewrite ``wheel`` without the ``STRIP`` members (its RECORD with them); the bytes it lost."""
    before = wheel.stat().st_size
    with zipfile.ZipFile(wheel) as z:
        dist_info = next(n.split("/")[0] for n in z.namelist() if n.endswith(".dist-info/RECORD"))
        members = [(info.filename, (info.external_attr >> 16) or 0o100644, lambda info=info: z.read(info))
                   for info in z.infolist() if not info.is_dir() and not stripped(info.filename)]
        _write_wheel(wheel, members, dist_info)
    return before - wheel.stat().st_size


def wheel_from_installed(name: str, out: Path, strip: bool) -> Path:
    """A wheel of the distribution ``name`` as installed here, from its RECORD (bytecode and files
    outside site-packages, such as console scripts, left out)."""
    dist = metadata.distribution(name)
    record = next((f for f in dist.files or () if f.name == "RECORD" and f.parent.name.endswith(".dist-info")), None)
    if record is None:
        raise RuntimeError(f"{name} is installed here without a RECORD: no wheel can be made of it")
    root, info_dir = Path(dist.locate_file("")), Path(record.parent.as_posix())
    tag = next(line.split(":", 1)[1].strip() for line in dist.read_text("WHEEL").splitlines() if line.startswith("Tag:"))
    wheel = out / f"{re.sub(r'[-_.]+', '_', dist.metadata['Name'])}-{dist.version}-{tag}.whl"
    members = []
    for file in dist.files or ():
        relative = file.as_posix()
        if relative.startswith("..") or "__pycache__" in relative or relative.endswith(".pyc"):
            continue
        if strip and stripped(relative):
            continue
        path = root / relative
        if path.is_file():
            members.append((relative, path.stat().st_mode, path.read_bytes))
    _write_wheel(wheel, members, info_dir.as_posix())
    return wheel


# ----------------------------------------------------------------------------------------------
# build


@dataclass
class Bundled:
    name: str
    version: str
    wheel: Path
    stripped_bytes: int = 0


def travelling_bytes(repo: Path = REPO) -> int:
    """The working tree that travels with a device call: tracked files and untracked ones git does not ignore."""
    done = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                          capture_output=True, check=True)
    return sum((repo / name).stat().st_size for name in done.stdout.decode().split("\0")
               if name and (repo / name).is_file())


def build(out: Path, python_version: str, from_installed: bool, say: Callable[[str], None] = print) -> dict:
    """The bundle in ``out``: the closure of Ray Tune and Optuna, as ``pyproject.toml`` bounds them,
    less ``DEVICE_HAS``, Ray stripped. Returns its manifest."""
    env = target_environment(python_version)
    ours = ("bundle.json", INSTALLED)
    if out.exists() and (not out.is_dir() or any(p.name not in ours and p.suffix != ".whl" for p in out.iterdir())):
        raise BadInput(f"{out}: exists and is not a bundle (only wheels, bundle.json and installed.json); give another --out")
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out.parent))
    bundled: dict[str, Bundled] = {}
    on_device: set[str] = set()
    roots = declared_roots()
    chosen = {canonicalize_name(root.name): choose(root) for root in roots}
    queue = list(roots)
    followed: dict[str, set[str]] = {}  # the extras whose requirements are queued ("": the plain ones)
    try:
        while queue:
            req = queue.pop(0)
            name = canonicalize_name(req.name)
            if name in DEVICE_HAS:
                on_device.add(name)
                continue
            if name not in bundled:
                if from_installed:
                    wheel, lost = wheel_from_installed(req.name, staging, strip=name == "ray"), 0
                else:
                    spec = chosen[name][0] if name in chosen else choose(req)[0]
                    wheel = download_wheel(spec, staging, python_version)
                    lost = strip_wheel(wheel) if name == "ray" else 0
                version = str(parse_wheel_filename(wheel.name)[1])
                bundled[name] = Bundled(name, version, wheel, lost)
                say(f"  {name} {version}: {wheel.stat().st_size / MIB:.1f} MiB"
                    + (f" (stripped {lost / MIB:.1f} MiB)" if lost else ""))
            todo = ({""} | set(req.extras)) - followed.setdefault(name, set())
            followed[name] |= todo
            queue += [dep for dep in wheel_requirements(bundled[name].wheel) if applies(dep, todo, env)]
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    wheels = sorted(bundled.values(), key=lambda b: b.name)
    bundle_bytes = sum((out / b.wheel.name).stat().st_size for b in wheels)
    tree = travelling_bytes()
    versions = {name: {"version": bundled[name].version, "bounds": str(root.specifier),
                       "why": "installed here" if from_installed else chosen[name][1],
                       "within_bounds": root.specifier.contains(Version(bundled[name].version), prereleases=True)}
                for name, root in ((canonicalize_name(r.name), r) for r in roots)}
    outside = [f"{name} {v['version']} ({v['bounds']})" for name, v in versions.items() if not v["within_bounds"]]
    if outside:
        shutil.rmtree(out)
        raise BadInput(f"outside pyproject.toml's bounds: {', '.join(outside)}; install a version within them here")
    manifest = {
        "python": python_version, "device_python": DEVICE_PYTHON, "for_the_device": python_version == DEVICE_PYTHON,
        "from_installed": from_installed, "versions": versions,
        "wheels": [{"name": b.name, "version": b.version, "file": b.wheel.name,
                    "bytes": (out / b.wheel.name).stat().st_size, "stripped_bytes": b.stripped_bytes} for b in wheels],
        "stripped": [{"path": prefix, "why": why} for prefix, why in STRIP],
        "on_device": sorted(on_device), "bundle_bytes": bundle_bytes, "working_tree_bytes": tree,
        "fits_one_call": bundle_bytes + tree <= CALL_LIMIT_MIB * MIB,
    }
    (out / "bundle.json").write_text(json.dumps(manifest, indent=1))
    return manifest


# ----------------------------------------------------------------------------------------------
# install, on the device

CHECK = r"""
import importlib.metadata as md, json, sys
from pathlib import Path
from packaging.requirements import Requirement
from packaging.markers import default_environment
target, names = Path(sys.argv[1]).resolve(), json.loads(sys.argv[2])
import ray, optuna, ray.tune
from ray.tune.search.optuna import OptunaSearch
from ray.tune.schedulers import ASHAScheduler
elsewhere = [f"{m.__name__} imported from {m.__file__}, not from {target}" for m in (ray, optuna)
             if target not in Path(m.__file__).resolve().parents]
problems = []
env = default_environment()
for name, extras in names.items():
    for line in md.requires(name) or ():
        req = Requirement(line)
        if req.marker is not None and not any(req.marker.evaluate({**env, "extra": e}) for e in ["", *extras]):
            continue
        try:
            have = md.version(req.name)
        except md.PackageNotFoundError:
            problems.append(f"{name} needs {req}, which is missing"); continue
        if not req.specifier.contains(have, prereleases=True):
            problems.append(f"{name} needs {req}, but {req.name} {have} is installed")
print(json.dumps({"ray": ray.__version__, "optuna": optuna.__version__, "elsewhere": elsewhere, "problems": problems}))
"""


def _bundle_python(wheels: Path) -> str | None:
    """The Python version the bundle in ``wheels`` was built for (its bundle.json), if it says."""
    try:
        return json.loads((wheels / "bundle.json").read_text()).get("python")
    except (OSError, ValueError):
        return None


def runs_programs(folder: Path) -> str | None:
    """None if a program written into ``folder`` can be started (Ray starts its raylet and GCS from
    its package folder), else why not: a temporary folder may be mounted noexec."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = Path(tempfile.mkdtemp(prefix=".exec-probe-", dir=folder)) / "probe.sh"
        probe.write_text("#!/bin/sh\nexit 0\n")
        probe.chmod(0o755)
        try:
            done = subprocess.run([str(probe)], capture_output=True, timeout=30)
            return None if done.returncode == 0 else f"a program there exits {done.returncode}"
        finally:
            shutil.rmtree(probe.parent, ignore_errors=True)
    except OSError as err:  # PermissionError: a noexec mount
        return f"programs cannot run there ({err.strerror or err})"


def install(wheels: Path, target: Path, strict: bool = False, say: Callable[[str], None] = print) -> dict:
    """Install the bundle into ``target`` with no index, then check it in a fresh interpreter: Ray
    Tune and Optuna must import from ``target``; an unmet requirement (a package of the device's
    older or newer than a bundled one asks) is a warning, since the search may well run, unless
    ``strict``."""
    if not wheels.is_dir():
        raise BadInput(f"{wheels}: no bundle there (make one with: python tests/bench/device_bundle.py)")
    files = sorted(wheels.glob("*.whl"))
    if not files:
        raise BadInput(f"{wheels}: no wheels in the bundle (make one with: python tests/bench/device_bundle.py)")
    for path in files:
        if not zipfile.is_zipfile(path):
            raise BadInput(f"{path}: not a wheel (not a zip file)")
    built_for = _bundle_python(wheels)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if built_for and built_for != here:
        raise RuntimeError(f"{wheels}: the bundle is for CPython {built_for}, but this is CPython {here}: build it "
                           f"again with --python-version {here}")
    why = runs_programs(target)
    if why:
        fallback = REPO / FALLBACK_SITE
        say(f"warning: {target}: {why}; Ray's programs could not start from there, so the bundle goes into {fallback}")
        target = fallback
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                           "--no-cache-dir", "--upgrade", "--target", str(target), *map(str, files)],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"pip install --no-index failed: {(done.stderr or done.stdout).strip()[-2000:]}")
    dists = [parse_wheel_filename(p.name)[0] for p in files]
    names = {dist: ["tune"] if dist == "ray" else [] for dist in dists}  # each one's extras to check
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *filter(None, [os.environ.get("PYTHONPATH")])])}
    check = subprocess.run([sys.executable, "-c", CHECK, str(target), json.dumps(names)], capture_output=True,
                           text=True, env=env)
    if check.returncode:
        raise RuntimeError(f"importing Ray Tune and Optuna from {target} failed: {check.stderr.strip()[-2000:]}")
    result = json.loads(check.stdout.strip().splitlines()[-1])
    if result["elsewhere"] or (strict and result["problems"]):
        raise RuntimeError("; ".join(result["elsewhere"] + result["problems"]))
    for problem in result["problems"]:
        say(f"warning: {problem}")
    record = {"target": str(target.resolve()), "python": here, "ray": result["ray"], "optuna": result["optuna"],
              "problems": result["problems"]}
    (wheels / INSTALLED).write_text(json.dumps(record, indent=1))  # where the device suite finds it
    say(f"installed {len(files)} wheels into {target}: Ray {result['ray']}, Optuna {result['optuna']}; "
        + (f"{len(result['problems'])} requirement(s) unmet" if result["problems"] else "every requirement met")
        + f". Now: export PYTHONPATH={target}")
    return result


# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/bench/device_bundle.py", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="?", choices=("build", "install"), default="build",
                        help="build (here, the default) or install (on the device)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the bundle's folder (default {DEFAULT_OUT})")
    parser.add_argument("--python-version", default=DEVICE_PYTHON,
                        help=f"build: the device's Python, whose wheels are fetched (default {DEVICE_PYTHON})")
    parser.add_argument("--from-installed", action="store_true",
                        help="build: make the wheels from the distributions installed here, for this Python, "
                             "with no network (the test suite's dry run)")
    parser.add_argument("--target", type=Path, default=Path(DEFAULT_TARGET),
                        help=f"install: where the bundle goes (default {DEFAULT_TARGET})")
    parser.add_argument("--strict", action="store_true",
                        help="install: an unmet requirement fails the install (default: a warning)")
    args = parser.parse_args(argv)
    try:
        if args.action == "install":
            install(args.out, args.target, args.strict)
            return 0
        version = f"{sys.version_info.major}.{sys.version_info.minor}" if args.from_installed else args.python_version
        if not re.fullmatch(r"3\.\d+(\.\d+)?", version):
            raise BadInput(f"--python-version {version!r}: expected a CPython version such as 3.12")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        roots = ", ".join(str(root) for root in declared_roots())
        print(f"bundle of {roots} (pyproject.toml) for CPython {version} on Linux x86_64 "
              f"({'from the distributions installed here' if args.from_installed else 'from the registries'}):")
        manifest = build(args.out, version, args.from_installed)
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("versions: " + "; ".join(f"{name} {v['version']} ({v['why']}; pyproject.toml: {v['bounds']})"
                                   for name, v in manifest["versions"].items()))
    if not manifest["for_the_device"]:
        print(f"note: built for CPython {version}, not the device's {DEVICE_PYTHON}: its compiled wheels will not "
              f"load there (a dry run; for the device: python tests/bench/device_bundle.py)")
    total = manifest["bundle_bytes"] + manifest["working_tree_bytes"]
    print(f"{len(manifest['wheels'])} wheels, {manifest['bundle_bytes'] / MIB:.1f} MiB, in {args.out}; with the working "
          f"tree ({manifest['working_tree_bytes'] / MIB:.1f} MiB) {total / MIB:.1f} MiB of the {CALL_LIMIT_MIB} MiB a "
          f"device call carries; the device already has {len(manifest['on_device'])} of their requirements")
    if not manifest["fits_one_call"]:
        print(f"error: the bundle and the working tree are {total / MIB:.1f} MiB, over the {CALL_LIMIT_MIB} MiB a device "
              f"call carries", file=sys.stderr)
        return 1
    if args.out.resolve().is_relative_to(REPO):  # what a device call carries
        folder = args.out.resolve().relative_to(REPO)
        print(f"on the device: run(carry=['{folder}'], command='python3 tests/bench/device_bundle.py install --out {folder} "
              f"&& python3 tests/bench/device_suite.py --bundle {folder} --parts search') (docs/device-suite.md)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
