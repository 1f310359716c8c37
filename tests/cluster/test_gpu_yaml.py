"""cluster/gpu.yaml through Ray's own validator, offline, and the security properties on top."""

import copy
from pathlib import Path

import pytest
import yaml

from search.tools.cluster_check import check_cluster_config
from tests.conftest import run_cli

YAML = Path(__file__).resolve().parents[2] / "cluster" / "gpu.yaml"


@pytest.fixture
def raw():
    return yaml.safe_load(YAML.read_text())


def test_ray_validator_accepts_it_and_the_properties_hold(raw):
    config, problems = check_cluster_config(raw)
    assert problems == []
    gpu = {n: t for n, t in config["available_node_types"].items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu and all(t["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot" for t in gpu.values())
    assert all(t["max_workers"] >= 1 for t in gpu.values()) and config["idle_timeout_minutes"] > 0
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert config["file_mounts"]["/home/ubuntu/.ray/auth_token"] == "~/.ray/auth_token"
    for rule in config["provider"]["security_group"]["IpPermissions"]:
        assert all(r["CidrIp"] != "0.0.0.0/0" for r in rule.get("IpRanges", []))
    # setup installs this project with the pinned versions
    setup = " ".join(config["setup_commands"])
    assert "torch==2.14.1" in setup and "torchvision==0.29.1" in setup and "pip install -q -e ~/vidseg-search" in setup
    assert YAML.read_text().count("s3://") == 1  # the bucket is named in one place


def _broken(raw, how):
    bad = copy.deepcopy(raw)
    if how == "typo":
        bad["idle_timout_minutes"] = bad.pop("idle_timeout_minutes")
    elif how == "public_gcs":
        bad["provider"]["security_group"]["IpPermissions"].append(
            {"IpProtocol": "tcp", "FromPort": 6379, "ToPort": 6379, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]})
    elif how == "all_traffic":
        bad["provider"]["security_group"]["IpPermissions"].append({"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]})
    elif how == "no_token":
        bad["worker_start_ray_commands"] = [c.replace("export RAY_AUTH_MODE=token; ", "") for c in bad["worker_start_ray_commands"]]
    elif how == "on_demand":
        for node in bad["available_node_types"].values():
            node["node_config"].pop("InstanceMarketOptions", None)
    elif how == "no_gpu":
        for node in bad["available_node_types"].values():
            node["resources"].pop("GPU", None)
    elif how == "open_dashboard":
        bad["head_start_ray_commands"] = [c.replace("127.0.0.1", "0.0.0.0") for c in bad["head_start_ray_commands"]]
    return bad


@pytest.mark.parametrize("how, message", [
    ("typo", "Ray's validator: Additional properties are not allowed ('idle_timout_minutes' was unexpected)"),
    ("public_gcs", "opens a Ray port"),
    ("all_traffic", "opens a Ray port"),
    ("no_token", "worker_start_ray_commands: every `ray start` must run with RAY_AUTH_MODE=token"),
    ("on_demand", "does not use spot instances"),
    ("no_gpu", "no GPU worker node type"),
    ("open_dashboard", "the dashboard listens on all interfaces"),
])
def test_a_broken_copy_is_rejected(raw, how, message):
    _, problems = check_cluster_config(_broken(raw, how))
    assert any(message in p for p in problems), problems


def test_cli_exit_codes(raw, tmp_path):
    good = run_cli("-m", "search.cluster_check", str(YAML))
    assert good.returncode == 0 and "valid" in good.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(_broken(raw, "public_gcs")))
    result = run_cli("-m", "search.cluster_check", str(broken))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and str(broken) in errors[0]
