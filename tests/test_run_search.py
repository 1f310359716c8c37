"""The entry script, end to end on its smoke setting: generate, cache, check."""

import json

from tests.conftest import run_cli


def test_smoke_run_generates_checks_and_reuses(tmp_path):
    args = ["search/run_search.py", "--smoke-test", "--data-dir", str(tmp_path), "--workers=2"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    root = tmp_path / "smoke" / "seed0"
    assert f"dataset ok: {root}" in first.stdout
    manifest = json.loads((root / "dataset.json").read_text())
    assert manifest["counts"] == {"train": 4, "val": 2, "unlabeled": 2, "hidden": 2}
    stamp = (root / "dataset.json").stat().st_mtime_ns
    second = run_cli(*args)
    assert second.returncode == 0 and "already complete" in second.stderr
    assert (root / "dataset.json").stat().st_mtime_ns == stamp


def test_bad_data_root_is_one_line_exit_2(tmp_path):
    result = run_cli("search/run_search.py", "--data", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'missing'}: no such dataset folder"


def test_help_explains():
    result = run_cli("search/run_search.py", "--help")
    assert result.returncode == 0 and "--smoke-test" in result.stdout and "--data" in result.stdout
