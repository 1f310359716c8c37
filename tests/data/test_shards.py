"""The shard reader: round trip, zero-copy views, and one clear error per damaged file."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from tests.conftest import SHARD_SIZE
from vidseg.data.layout import Dataset
from vidseg.data.shards import MANIFEST, ShardError, ShardSet, read_shard, sha256_file, shard_schema, write_shard
from vidseg.segment.frames import resize_masks


def test_round_trip_all_four_splits(tiny_shards, tiny_dataset):
    shards = ShardSet.open(tiny_shards)
    dataset = Dataset.open(tiny_dataset)
    assert shards.splits == ["train", "val", "unlabeled", "hidden"]
    assert shards.resolution == SHARD_SIZE
    for split in shards.splits:
        part = shards.split(split)
        videos = dataset.videos(split)
        assert part.video_ids.tolist() == [v.video_id for v in videos]
        frames = 11 if split == "hidden" else 22
        unet_frames = 22 if split == "unlabeled" else 11  # a labeled video's: its input frames, what trials read
        assert part.frames == frames and part.unet_frames == unet_frames
        assert part.unet.shape == (len(videos), unet_frames, *SHARD_SIZE)
        assert part.unet[0].dtype == np.uint8 and part.unet[0].max() < 49
        if split in ("train", "val"):
            assert part.true.shape == (len(videos), frames, *SHARD_SIZE)
            for i, video in enumerate(videos):  # true masks: nearest-downscaled originals
                expected = resize_masks(torch.from_numpy(video.masks().astype(np.uint8)), SHARD_SIZE).numpy()
                assert np.array_equal(part.true[i], expected)
        else:
            assert part.true is None
    # videos_per_shard=3 cut train (4 videos) into two shards
    assert [s["num_videos"] for s in shards.manifest["splits"]["train"]["shards"]] == [3, 1]


def test_reads_are_zero_copy_memory_maps(tiny_shards):
    before = pa.total_allocated_bytes()
    shards = ShardSet.open(tiny_shards)
    train = shards.split("train")
    video = train.true[3]
    assert pa.total_allocated_bytes() == before  # nothing was read into Arrow's memory pool
    for split in shards.splits:  # all four
        part = shards.split(split)
        for array in part.unet.parts + (part.true.parts if part.true else []):
            assert not array.flags.owndata and not array.flags.writeable
            assert isinstance(array.base, memoryview) or array.base is not None
    assert np.shares_memory(video, train.true.parts[1])
    batch = train.true.take([0, 3])
    assert batch.flags.owndata and np.array_equal(batch[1], video)


def test_manifest_records_provenance(tiny_shards):
    manifest = json.loads((tiny_shards / MANIFEST).read_text())
    assert manifest["schema_version"] == 1
    assert manifest["unet"]["sha256"] == sha256_file(tiny_shards / "unet" / "unet_best.pt")
    assert 0.0 <= manifest["unet"]["val_iou"] <= 1.0 and manifest["unet"]["size"] == [80, 120]
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            assert sha256_file(tiny_shards / shard["file"]) == shard["sha256"]


def _rewrite_manifest(root, edit):
    manifest = json.loads((root / MANIFEST).read_text())
    edit(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest))


def _entry(manifest, file):
    return next(s for split in manifest["splits"].values() for s in split["shards"] if s["file"] == file)


def _manifest_agrees_with(root, path):
    """Record a shard's new size and checksum, so only the file's own content is wrong."""
    _rewrite_manifest(root, lambda m: _entry(m, path.name).update(bytes=path.stat().st_size, sha256=sha256_file(path)))


def test_truncated_shard(shards_copy):
    path = shards_copy / "val-00000.arrow"
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(ShardError, match="truncated") as err:
        ShardSet.open(shards_copy)
    assert err.value.path == path


def test_truncated_shard_that_the_manifest_agrees_with(shards_copy):
    path = shards_copy / "val-00000.arrow"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _manifest_agrees_with(shards_copy, path)
    with pytest.raises(ShardError, match="not a readable Arrow IPC file") as err:
        ShardSet.open(shards_copy)
    assert err.value.path == path


def test_checksum_mismatch(shards_copy):
    path = shards_copy / "train-00001.arrow"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="checksum mismatch") as err:
        ShardSet.open(shards_copy)
    assert err.value.path == path
    ShardSet.open(shards_copy, verify=False)  # the damage is in mask bytes: only the checksum sees it


def test_wrong_schema(shards_copy):
    path = shards_copy / "hidden-00000.arrow"
    info, unet, _ = read_shard(path)
    unet = np.array(unet)  # a copy: the file is about to be replaced
    metadata = shard_schema("hidden", 11, *SHARD_SIZE, False, info.unet_sha256).metadata
    table = pa.table({"video_id": pa.array(info.video_ids, pa.int32()),  # int64 in the real schema
                      "unet_masks": pa.FixedSizeListArray.from_arrays(pa.array(unet.reshape(-1)), unet[0].size)},
                     metadata=metadata)
    tmp = path.with_suffix(".tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    tmp.replace(path)
    _manifest_agrees_with(shards_copy, path)
    with pytest.raises(ShardError, match="wrong schema") as err:
        ShardSet.open(shards_copy)
    assert err.value.path == path


def test_manifest_that_disagrees_with_the_files(shards_copy):
    _rewrite_manifest(shards_copy, lambda m: _entry(m, "unlabeled-00000.arrow").update(video_ids=[6, 99]))
    with pytest.raises(ShardError, match="disagrees with the manifest on video ids") as err:
        ShardSet.open(shards_copy)
    assert err.value.path == shards_copy / "unlabeled-00000.arrow"


def test_malformed_manifest(shards_copy):
    _rewrite_manifest(shards_copy, lambda m: _entry(m, "val-00000.arrow").pop("bytes"))
    with pytest.raises(ShardError, match="malformed manifest") as err:
        ShardSet.open(shards_copy)
    assert err.value.path == shards_copy / MANIFEST


def test_missing_shard_and_missing_manifest(shards_copy):
    (shards_copy / "val-00000.arrow").unlink()
    with pytest.raises(ShardError, match="missing shard") as err:
        ShardSet.open(shards_copy)
    assert err.value.path == shards_copy / "val-00000.arrow"
    (shards_copy / MANIFEST).unlink()
    with pytest.raises(ShardError, match="missing manifest") as err:
        ShardSet.open(shards_copy)
    assert err.value.path == shards_copy / MANIFEST


def test_write_shard_is_atomic_and_checks_shapes(tmp_path):
    masks = np.random.default_rng(0).integers(0, 49, (2, 22, 8, 12), dtype=np.uint8)
    write_shard(tmp_path / "val-00000.arrow", "val", np.array([3, 4]), masks, masks[::-1].copy(), "sha")
    assert [p.name for p in tmp_path.iterdir()] == ["val-00000.arrow"]
    info, unet, true = read_shard(tmp_path / "val-00000.arrow")
    assert info.video_ids == [3, 4] and np.array_equal(unet, masks) and np.array_equal(true, masks[::-1])
    with pytest.raises(ValueError, match="do not agree"):
        write_shard(tmp_path / "x.arrow", "val", np.array([1]), masks, None, "sha")
