"""A real three-node Ray cluster on loopback, with token authentication: the smoke search runs on it,
one worker node is killed midway, and the search still finishes with nothing lost.

The nodes are ``ray start --block`` processes owned by this test (one logical GPU each); every
process started here is stopped by pid. A shared local folder (``file://``) stands in for the bucket:
results go there, and each node caches the shards from it once.
"""

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import RAY
from tests.loopback import RayNode, free_port, kill_processes, process_tree, token_env

ONE_GPU = ["--num-cpus=1", "--num-gpus=1"]  # a logical GPU: trials ask for GPU shares as on a real cluster


pytestmark = RAY


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and two worker nodes on 127.0.0.1, token authentication on; yields (address, env, nodes, its
    folder, where each node caches shards).
    Started once for the module: the token test runs first, the node kill last."""
    tmp_path = tmp_path_factory.mktemp("cluster")
    env = token_env(tmp_path)
    port = free_port()
    nodes = []
    short = Path(tempfile.mkdtemp(prefix="vr-", dir="/tmp"))  # Ray's socket paths must stay under 107 bytes
    try:
        head = RayNode("head", ["--head", f"--port={port}", "--include-dashboard=false", *ONE_GPU],
                    {**env, "VIDSEG_SHARD_CACHE": str(tmp_path / "cache-head")}, tmp_path, short)
        nodes.append(head)
        head.wait_ready()
        for name in ("w1", "w2"):
            nodes.append(RayNode(name, [f"--address=127.0.0.1:{port}", "--dashboard-agent-listen-port=0", *ONE_GPU],
                              {**env, "VIDSEG_SHARD_CACHE": str(tmp_path / f"cache-{name}")}, tmp_path, short))
        for node in nodes[1:]:
            node.wait_ready()
        yield f"127.0.0.1:{port}", env, {n.name: n for n in nodes}, tmp_path
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(short, ignore_errors=True)


def test_clients_without_the_token_are_refused(cluster):
    address, env, _, _ = cluster
    probe = f"import ray; ray.init(address={address!r}); print('nodes', len(ray.nodes()))"
    fast = {"RAY_gcs_server_port_wait_time_s": "3"}  # refused after 3 retries, not 20
    without = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    wrong_file = Path(env["RAY_AUTH_TOKEN_PATH"]).with_name("wrong_token")
    wrong_file.write_text(secrets.token_hex(32))
    clients = [subprocess.Popen([sys.executable, "-c", probe], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)  # the three at once: each spends its time waiting on the cluster
               for e in (env, {**without, **fast}, {**env, **fast, "RAY_AUTH_TOKEN_PATH": str(wrong_file)})]
    try:
        answers = [(c.wait(timeout=120), *c.communicate()) for c in clients]
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
    (code, out, err), *refused = answers
    assert code == 0 and "nodes 3" in out, err[-2000:]
    for code, out, err in refused:
        assert code != 0 and "nodes" not in out
        assert "Failed to connect to Ray cluster" in err or "Unauthenticated" in err


def _trial_on_node(experiment: Path, node_pids: set[int]) -> Path | None:
    """A trial folder whose process runs on the node (by pid) and has reported at least one epoch."""
    for result in experiment.glob("*/result.json"):
        lines = result.read_text().splitlines()
        if lines and json.loads(lines[-1])["pid"] in node_pids and json.loads(lines[-1])["epoch"] < 6:
            return result.parent
    return None


def test_search_survives_a_lost_worker_node(cluster, tiny_shards, tmp_path):
    """Last in the module: it loses a node of the shared cluster."""
    address, env, nodes, folder = cluster
    bucket = tmp_path / "bucket"
    name = "cluster"
    args = [sys.executable, "search/run_search.py", "--smoke-test", "--address", address, "--shards", str(tiny_shards),
            "--storage", bucket.as_uri(), "--name", name, "--num-samples=3", "--max-concurrent=3",
            "--max-epochs=6", "--grace-period=6", "--gpu-memory-gb=24"]  # the nodes' GPUs are logical: no memory to read
    driver_env = {**env, "VIDSEG_SHARD_CACHE": str(tmp_path / "cache-driver")}
    driver = subprocess.Popen(args, env=driver_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    experiment = bucket / name
    try:
        deadline, lost = time.monotonic() + 240, None
        while lost is None:  # the victim: a worker node (not the head, which holds the GCS) running a trial
            assert driver.poll() is None, driver.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no trial reported from a worker node"
            for victim in (nodes["w1"], nodes["w2"]):  # which one runs a trial is Ray's placement
                lost = _trial_on_node(experiment, {p.pid for p in process_tree(victim.process.pid)})
                if lost is not None:
                    break
            time.sleep(0.2)
        before = [json.loads(line)["epoch"] for line in (lost / "result.json").read_text().splitlines()]
        victim.kill_tree()  # the node's raylet and workers, by pid: a lost machine
        output, _ = driver.communicate(timeout=400)
    finally:
        if driver.poll() is None:
            kill_processes(process_tree(driver.pid))
            driver.wait(timeout=20)
    assert driver.returncode == 0, output[-3000:]
    after = [json.loads(line)["epoch"] for line in (lost / "result.json").read_text().splitlines()]
    assert after[-1] == 6 and after.count(1) == 1, (before, after)  # resumed from a checkpoint, not epoch 0
    import csv

    with open(experiment / "leaderboard.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(r["status"] == "TERMINATED" and r["epochs"] == "6" for r in rows)
    # the shards came from the bucket: each node that ran a trial cached them once
    caches = [p for n in ("head", "w1", "w2") for p in (folder / f"cache-{n}").glob("*/manifest.json")]
    assert 1 <= len(caches) <= 3 and (bucket / "shards").is_dir()
