"""Shard sets on shared storage: a shared local folder (file://) stands in for the bucket."""

import threading

import numpy as np
import pytest

from vidseg.data.remote import cached_shards, publish_shards
from vidseg.data.shards import MANIFEST, ShardError, ShardSet


def test_publish_then_every_node_caches_once(tiny_shards, tmp_path):
    uri = (tmp_path / "bucket" / "shards").as_uri()
    assert publish_shards(tiny_shards, uri) == uri
    stamp = (tmp_path / "bucket" / "shards" / MANIFEST).stat().st_mtime_ns
    publish_shards(tiny_shards, uri)  # unchanged: not copied again
    assert (tmp_path / "bucket" / "shards" / MANIFEST).stat().st_mtime_ns == stamp

    cache = tmp_path / "node-cache"
    got = []
    threads = [threading.Thread(target=lambda: got.append(cached_shards(uri, cache))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1 and len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 1
    local = ShardSet.open(got[0])
    assert np.array_equal(local.split("val").true[1], ShardSet.open(tiny_shards).split("val").true[1])
    assert cached_shards(tiny_shards) == tiny_shards  # a plain path is used where it is
    # the known hidden answers travel with the shards, so that the driver on any machine can score
    assert (got[0] / "hidden_answers.npy").read_bytes() == (tiny_shards / "hidden_answers.npy").read_bytes()


def test_a_damaged_bucket_copy_is_refused_by_name(shards_copy, tmp_path):
    uri = (tmp_path / "bucket").as_uri()
    publish_shards(shards_copy, uri)
    victim = tmp_path / "bucket" / "val-00000.arrow"
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"bucket/val-00000.arrow: .*(checksum|sha)"):
        cached_shards(uri, tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]  # nothing half-cached
