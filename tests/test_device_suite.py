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


def test_sigterm_writes_every_figure_taken_so_far_and_exits_143(tmp_path):
    """A device call cut at its limit gets SIGTERM: the JSON already holds the checks and each part
    that ended, and is written again with why it stopped."""
    import signal
    import time

    out = tmp_path / "suite.json"
    suite = subprocess.Popen([sys.executable, "-c", BARE, str(SUITE), "--dry-run", "--parts", "steps,packing",
                              "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while "steps" not in (json.loads(out.read_text())["parts"] if out.is_file() else {}):
            assert suite.poll() is None and time.monotonic() < deadline, "the suite ended before its first part did"
            time.sleep(0.05)
        suite.send_signal(signal.SIGTERM)  # packing, the second part, takes seconds
        stdout, stderr = suite.communicate(timeout=120)
    finally:
        if suite.poll() is None:
            suite.kill()
            suite.wait()
    assert suite.returncode == 143, stdout[-2000:] + stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["stopped"].startswith("SIGTERM after") and set(report["checks"]) == {"python", "gpu", "disk",
                                                                                       "bundle_site"}
    assert report["parts"]["steps"]["rows"] and "packing" not in report["parts"]
    assert "Traceback" not in stderr and stdout.strip().splitlines()[-1].startswith("stopped by SIGTERM after")


def test_a_search_that_would_end_past_the_deadline_is_not_started(tmp_path):
    """The search part's cut-off is the deadline less the time to stop it and rebuild its curves:
    with less than that left, no search starts (Ray and Optuna are only probed, in a process of their own)."""
    out = tmp_path / "suite.json"
    result = subprocess.run([sys.executable, "-c", BARE, str(SUITE), "--dry-run", "--parts", "search", "--deadline", "30",
                             "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    part = json.loads(out.read_text())["parts"]["search"]
    assert part["skipped"].endswith("s of search left before the deadline, under the 10 s worth a start")
    assert part["versions"]["ray"] and "[search]\n  Ray " in result.stdout


def test_bad_arguments_are_one_line_and_exit_2(tmp_path, capsys):
    import runpy

    from tests.conftest import run_main

    main = runpy.run_path(str(SUITE))["main"]  # the script's main(argv), in this process
    result = run_main(main, "--dry-run", "--parts", "steps,warp", capsys=capsys)
    assert result.returncode == 2 and result.stderr.strip() == \
        "error: unknown part(s) warp; valid: steps, busy, packing, memory, openstl, unet, search"
    result = run_main(main, "--dry-run", "--openstl", str(tmp_path), capsys=capsys)
    assert result.returncode == 2 and "not a copy of OpenSTL" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run_main(main, "--dry-run", "--variants", "bf16,fp16", capsys=capsys)
    assert result.returncode == 2 and result.stderr.strip().startswith("error: unknown variant(s) fp16; valid: fp32,")
    result = run_main(main, "--dry-run", "--search-epochs", "0", capsys=capsys)
    assert result.returncode == 2 and result.stderr.strip() == "error: --search-epochs is 0, but must be >= 1"


def test_search_figures_from_trial_folders(tmp_path):
    """The search part's reading of a search's trial folders: planned against measured memory, OOM, overlap."""
    import csv
    import runpy

    suite = runpy.run_path(str(SUITE))
    experiment = tmp_path / "device-search"

    def trial(name: str, trial_id: str, reports: list[dict], error: str | None = None) -> None:
        folder = experiment / name
        folder.mkdir(parents=True)
        lines = [json.dumps({"trial_id": trial_id, **r}) for r in reports]
        (folder / "result.json").write_text("\n".join(lines) + "\n{\"epoch\": 3, \"val_io")  # the last line cut short
        if error:
            (folder / "error.txt").write_text(error)

    plan = {"gpu_share": 0.125, "planned_peak_gb": 10.0, "memory_budget_gb": 16.5}
    trial("a", "a1", [{"epoch": 1, "val_iou": 0.2, "peak_memory_gb": 8.0, "timestamp": 110, "time_total_s": 10, **plan},
                      {"epoch": 2, "val_iou": 0.3, "peak_memory_gb": 9.0, "timestamp": 120, "time_total_s": 20, **plan}])
    trial("b", "b1", [{"epoch": 1, "val_iou": 0.1, "peak_memory_gb": 12.0, "timestamp": 130, "time_total_s": 15, **plan}],
          error="Traceback...\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    trial("c", "c1", [{"epoch": 0, "val_iou": float("nan"), "timestamp": 140, "time_total_s": 0.5}])  # infeasible
    with open(experiment / "leaderboard.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["trial_id", "status"])
        writer.writeheader()
        writer.writerows([{"trial_id": "a1", "status": "TERMINATED"}, {"trial_id": "b1", "status": "ERROR"}])

    rows = {row["trial"]: row for row in suite["search_trials"](experiment)}
    assert rows["a"]["epochs"] == 2 and rows["a"]["best_val_iou"] == 0.3 and rows["a"]["status"] == "TERMINATED"
    assert rows["a"]["peak_gib"] == 9.0 and rows["a"]["peak_over_planned"] == 0.9 and rows["a"]["start"] == 100
    assert rows["b"]["oom"] and rows["b"]["peak_over_planned"] == 1.2 and "CUDA out of memory" in rows["b"]["error"]
    assert rows["c"]["epochs"] == 0 and rows["c"]["peak_gib"] is None and not rows["c"]["oom"]
    ran = [rows["a"], rows["b"]]
    assert suite["max_overlap"](ran) == 2  # a ran 100-120, b 115-130
    assert suite["max_overlap"]([rows["a"], {**rows["b"], "start": 121}]) == 1
