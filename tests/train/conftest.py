from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARD_SIZE
from vidseg.data.shards import ShardSet, sha256_file, write_manifest, write_shard


@pytest.fixture(scope="session")
def overfit_shards(tiny_shards: Path, tmp_path_factory) -> Path:
    """Train and val are the same 4 videos (true masks everywhere): a set a trial can overfit."""
    out = tmp_path_factory.mktemp("overfit")
    train = ShardSet.open(tiny_shards).split("train")
    masks = train.true.take(range(len(train)))
    splits = {}
    for split in ("train", "val"):
        path = out / f"{split}-00000.arrow"
        write_shard(path, split, train.video_ids, masks, masks, "none")
        splits[split] = {"frames": 22, "labeled": True, "num_videos": len(masks), "shards": [
            {"file": path.name, "video_ids": train.video_ids.tolist(), "num_videos": len(masks),
             "bytes": path.stat().st_size, "sha256": sha256_file(path)}]}
    write_manifest(out, {"resolution": {"height": SHARD_SIZE[0], "width": SHARD_SIZE[1]},
                         "unet": {"sha256": "none"}, "splits": splits})
    assert np.array_equal(ShardSet.open(out).split("val").unet[0], masks[0])
    return out
