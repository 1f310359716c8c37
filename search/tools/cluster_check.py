"""Check a Ray cluster-launcher YAML offline: Ray's own validator, then this project's rules.

    python -m search.cluster_check cluster/gpu.yaml

Ray's ``prepare_config`` and ``validate_config`` (what ``ray up`` runs first) check the schema.
Then: GPU worker types exist and run on spot instances, every ``ray start`` uses token
authentication with a token file from outside the repository, the dashboard is not bound to all
interfaces, and no security-group rule opens a Ray port (6379, 8265, 10001) to the internet.
Prints one line per problem and exits 2, or prints a summary and exits 0.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__all__ = ["check_cluster_config", "RAY_PORTS"]

RAY_PORTS = (6379, 8265, 10001)
PUBLIC = {"0.0.0.0/0", "::/0"}


def _public_ray_port_rules(config: dict[str, Any]) -> list[str]:
    problems = []
    for rule in config.get("provider", {}).get("security_group", {}).get("IpPermissions", []):
        cidrs = {r.get("CidrIp") for r in rule.get("IpRanges", [])} | {r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])}
        if not cidrs & PUBLIC:
            continue
        low, high = rule.get("FromPort", -1), rule.get("ToPort", -1)
        if str(rule.get("IpProtocol")) == "-1" or low == -1 or any(low <= p <= high for p in RAY_PORTS):
            problems.append(f"security group rule {rule} opens a Ray port ({', '.join(map(str, RAY_PORTS))}) "
                            "to the internet")
    return problems


def check_cluster_config(raw: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """``(prepared config, problems)``; the config is None when Ray's validator refuses it."""
    from search.run.ray_internals import validate_cluster_config

    try:
        config = validate_cluster_config(raw)
    except Exception as err:  # jsonschema.ValidationError, ValueError: Ray's own words
        return None, [f"Ray's validator: {str(err).splitlines()[0]}"]
    problems = []
    types = config["available_node_types"]
    gpu_types = {name: t for name, t in types.items()
                 if name != config["head_node_type"] and t.get("resources", {}).get("GPU", 0) >= 1}
    if not gpu_types:
        problems.append("no GPU worker node type (resources: {GPU: ...})")
    for name, node in gpu_types.items():
        market = node.get("node_config", {}).get("InstanceMarketOptions", {}).get("MarketType")
        if market != "spot":
            problems.append(f"GPU worker type {name} does not use spot instances (InstanceMarketOptions.MarketType)")
        if node.get("max_workers", 0) < 1:
            problems.append(f"GPU worker type {name} has max_workers {node.get('max_workers')}")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config.get(key, []) if "ray start" in c]
        if not starts or not all("RAY_AUTH_MODE=token" in c for c in starts):
            problems.append(f"{key}: every `ray start` must run with RAY_AUTH_MODE=token")
        if any("--dashboard-host=0.0.0.0" in c for c in starts):
            problems.append(f"{key}: the dashboard listens on all interfaces (--dashboard-host=0.0.0.0)")
    tokens = {remote: local for remote, local in config.get("file_mounts", {}).items() if remote.endswith(".ray/auth_token")}
    if not tokens:
        problems.append("file_mounts: no auth token (\"/home/<user>/.ray/auth_token\": \"~/.ray/auth_token\")")
    for local in tokens.values():
        if not str(local).startswith(("~", "/")):
            problems.append(f"file_mounts: the token comes from {local!r}, inside the repository; use ~/.ray/auth_token")
    problems += _public_ray_port_rules(config)
    return config, problems


def main(argv: list[str] | None = None) -> int:
    import yaml

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m search.cluster_check CLUSTER_YAML", file=sys.stderr)
        return 2
    path = Path(args[0])
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        print(f"error: {path}: {getattr(err, 'strerror', None) or str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    if not isinstance(raw, dict):
        print(f"error: {path}: not a YAML mapping", file=sys.stderr)
        return 2
    config, problems = check_cluster_config(raw)
    for problem in problems:
        print(f"error: {path}: {problem}", file=sys.stderr)
    if problems:
        return 2
    types = ", ".join(f"{n} ({t['min_workers']}-{t['max_workers']})" for n, t in config["available_node_types"].items())
    print(f"{path}: valid; node types {types}; token auth on; no Ray port open to the internet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
