from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARD_SIZE, write_shard_set
from vidseg.data.shards import ShardSet


@pytest.fixture(scope="session")
def overfit_shards(tiny_shards: Path, tmp_path_factory) -> Path:
    """Train and val are the same 4 videos (true masks everywhere), cropped to their top-left
    quarter (20x30: a quarter of the compute): a set a trial can overfit."""
    train = ShardSet.open(tiny_shards).split("train")
    masks = np.ascontiguousarray(train.true.take(range(len(train)))[..., :SHARD_SIZE[0] // 2, :SHARD_SIZE[1] // 2])
    assert all(video[-1].any() for video in masks)  # every video's frame 22 has an object in the crop
    out = write_shard_set(tmp_path_factory.mktemp("overfit"), {split: (train.video_ids, masks, masks)
                                                               for split in ("train", "val")})
    assert np.array_equal(ShardSet.open(out).split("val").unet[0], masks[0])
    return out
