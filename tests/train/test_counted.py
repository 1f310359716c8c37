"""The machine's kept model counts: counted once, read back by another process, started afresh when
the code or the folder changes, and a broken or unwritable file costs a count, not a search."""

import json
import os
import subprocess
import sys

from vidseg.train import TrainConfig
from vidseg.train.counted import CACHE_ENV, Counted, code_version
from vidseg.train.memory import _trace, probe_activation_bytes

CONFIG = TrainConfig(N_S=2, N_T=2, hid_S=8, hid_T=32, translator="gsta", input_encoding="embed", embed_dim=8, loss="ce")


def test_a_count_is_made_once_and_another_process_reads_it(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    calls = []
    counted = Counted("things")
    assert counted.get("a", lambda: calls.append(1) or 3.0) == 3.0
    assert counted.get("a", lambda: calls.append(1) or 4.0) == 3.0 and calls == [1]
    kept = json.loads(counted.path().read_text())
    assert kept == {"a": 3.0} and code_version() in counted.path().name
    # a second process: the trace is read, not made (its count differs from what a fresh trace gives)
    counted.path().with_name(counted.path().name.replace("things", "activations")).write_text("{}")
    bytes_here = probe_activation_bytes(CONFIG, (32, 48), 2)
    assert bytes_here == _trace(CONFIG, (32, 48), 2)
    path = counted.path().with_name(counted.path().name.replace("things", "activations"))
    planted = {key: value + 1 for key, value in json.loads(path.read_text()).items()}
    path.write_text(json.dumps(planted))
    code = ("from vidseg.train import TrainConfig; from vidseg.train.memory import probe_activation_bytes; "
            f"print(probe_activation_bytes(TrainConfig(**{CONFIG.__dict__!r}), (32, 48), 2))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ}, capture_output=True, text=True, check=True)
    assert int(out.stdout) == bytes_here + 1


def test_a_broken_or_unwritable_file_is_counted_again(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    counted = Counted("things")
    counted.path().parent.mkdir(parents=True, exist_ok=True)
    counted.path().write_text("{not json")
    assert counted.get("a", lambda: 5.0) == 5.0
    assert json.loads(counted.path().read_text()) == {"a": 5.0}
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    monkeypatch.setenv(CACHE_ENV, str(a_file / "inner"))  # a folder that cannot be made (root writes anywhere)
    assert Counted("things").get("b", lambda: 6.0) == 6.0  # not kept, and nothing said
    assert not (a_file / "inner").exists()
