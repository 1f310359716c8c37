"""Shard sets on shared storage: publish a folder to a bucket, and cache it once per node.

On a cluster, trials run on nodes that do not share a disk with the driver. The driver publishes
the shard set to the experiment's storage (S3, GCS, or any URI ``pyarrow.fs`` reads, including
``file://`` for a shared folder), and every trial asks ``cached_shards(uri)`` for a local copy: the
first trial on a node downloads it (into a temporary folder, verified against the manifest's
checksums, then renamed into place); the others, concurrent or later, reuse it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from vidseg.data.shards import MANIFEST, ShardError, ShardSet

__all__ = ["is_uri", "filesystem", "publish_shards", "cached_shards", "CACHE_ENV", "read_manifest"]

log = logging.getLogger(__name__)

CACHE_ENV = "VIDSEG_SHARD_CACHE"  # where nodes cache shard sets (default: the system's temp dir)


def is_uri(location: str | Path) -> bool:
    return "://" in str(location)


def filesystem(uri: str):
    """``(pyarrow filesystem, path inside it)`` for a URI or a local path."""
    import pyarrow.fs as pafs

    if not is_uri(uri):
        return pafs.LocalFileSystem(), str(Path(uri).resolve())
    return pafs.FileSystem.from_uri(uri)


def _read_manifest_bytes(uri: str) -> bytes:
    fs, root = filesystem(uri)
    with fs.open_input_stream(f"{root}/{MANIFEST}") as f:
        return f.read()


def read_manifest(location: str | Path) -> dict:
    """A shard set's manifest, from a folder or a URI (no shard is read)."""
    return json.loads(_read_manifest_bytes(str(location)))


def publish_shards(local: Path | str, uri: str) -> str:
    """Copy a local shard set to ``uri`` (skipped when the manifest there is already the same)."""
    import pyarrow.fs as pafs

    local = Path(local)
    ShardSet.open(local, verify=False)
    mine = (local / MANIFEST).read_bytes()
    try:
        if _read_manifest_bytes(uri) == mine:
            return uri
    except (FileNotFoundError, OSError):
        pass
    fs, root = filesystem(uri)
    fs.create_dir(root, recursive=True)
    files = sorted(p for p in local.iterdir() if p.is_file() and p.name != MANIFEST and not p.name.startswith("."))
    for path in files:
        pafs.copy_files(str(path), f"{root}/{path.name}", destination_filesystem=fs)
    # the manifest last: a reader that sees it sees every shard it lists
    with fs.open_output_stream(f"{root}/{MANIFEST}") as f:
        f.write(mine)
    log.info("published %d shard files to %s", len(files), uri)
    return uri


def cached_shards(location: str | Path, cache_root: str | Path | None = None) -> Path:
    """A local folder holding the shard set at ``location`` (a path is returned as it is)."""
    if not is_uri(location):
        return Path(location)
    import pyarrow.fs as pafs

    manifest = _read_manifest_bytes(str(location))
    key = hashlib.sha256(str(location).encode() + b"\0" + manifest).hexdigest()[:16]
    cache_root = Path(cache_root or os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "vidseg-shards")
    cache_root.mkdir(parents=True, exist_ok=True)
    target = cache_root / key
    with open(cache_root / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one download per node; the others wait, then reuse it
        if (target / MANIFEST).is_file():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache_root))
        try:
            fs, root = filesystem(str(location))
            listed = json.loads(manifest)
            files = [shard["file"] for entry in listed["splits"].values() for shard in entry["shards"]]
            if listed.get("hidden_answers"):  # known answers travel with the shards, to score the hidden split
                files.append(listed["hidden_answers"]["file"])
            for file in files:
                if Path(file).name != file or file.startswith("."):  # a manifest may not write outside the cache
                    raise ShardError(f"{str(location).rstrip('/')}/{MANIFEST}", f"lists a file named {file!r}")
                pafs.copy_files(f"{root}/{file}", str(tmp / file), source_filesystem=fs)
            (tmp / MANIFEST).write_bytes(manifest)
            try:
                ShardSet.open(tmp, verify=True)
            except ShardError as err:  # name the file where it came from, not the temporary copy
                raise ShardError(f"{str(location).rstrip('/')}/{err.path.name}", err.problem) from None
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("cached %s in %s", location, target)
    return target
