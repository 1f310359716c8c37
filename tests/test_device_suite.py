"""The device suite runs every part, at toy size on the CPU, with neither Ray, Optuna nor pybullet."""

import json
import subprocess
import sys
from pathlib import Path

SUITE = Path(__file__).parent / "bench" / "device_suite.py"

# The bare CUDA machine has no Ray, Optuna or pybullet: importing any of them fails here too.
BARE = """
import importlib.abc, runpy, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ray", "optuna", "pybullet"):
            raise ModuleNotFoundError(f"No module named {name!r} (not on the device machine)")
        return None
sys.meta_path.insert(0, Absent())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_dry_run_measures_every_part(tmp_path):
    out = tmp_path / "suite.json"
    result = subprocess.run([sys.executable, "-c", BARE, str(SUITE), "--dry-run", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "summary: 6 of 6 parts ran" in result.stdout
    report = json.loads(out.read_text())
    parts = report["parts"]
    assert report["dry_run"] and set(parts) == {"steps", "busy", "packing", "memory", "openstl", "unet"}
    assert not [name for name, part in parts.items() if "error" in part]
    steps = parts["steps"]["rows"]
    assert {r["variant"] for r in steps} >= {"fp32"} and all(r["ms_per_step"] > 0 for r in steps)
    assert set(parts["steps"]["recommended_defaults"]) == {"channels_last", "compile", "tf32"}
    assert [r["data_on_device"] for r in parts["busy"]["rows"]] == [True, False]
    assert [r["processes"] for r in parts["packing"]["rows"]] == [1, 2]
    assert all(r["trials_per_hour"] > 0 for r in parts["packing"]["rows"])
    memory = parts["memory"]["rows"]
    assert len(memory) >= 2 and all(r["estimate_gib"] > r["traced_activations_gib"] > 0 for r in memory)
    assert parts["openstl"]["skipped"]  # no copy of OpenSTL is ever in the repository
    assert parts["unet"]["rows"] and parts["unet"]["rows"][0]["val_iou"] >= 0


def test_bad_arguments_are_one_line_and_exit_2(tmp_path, capsys):
    import runpy

    from tests.conftest import run_main

    main = runpy.run_path(str(SUITE))["main"]  # the script's main(argv), in this process
    result = run_main(main, "--dry-run", "--parts", "steps,warp", capsys=capsys)
    assert result.returncode == 2 and result.stderr.strip() == \
        "error: unknown part(s) warp; valid: steps, busy, packing, memory, openstl, unet"
    result = run_main(main, "--dry-run", "--openstl", str(tmp_path), capsys=capsys)
    assert result.returncode == 2 and "not a copy of OpenSTL" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
