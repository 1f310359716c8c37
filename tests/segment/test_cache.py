"""The frame cache: decoded once, reused, rebuilt when damaged or stale, gathered onto the device."""

import json

import numpy as np
import pytest
import torch

from vidseg.data.layout import Dataset, LayoutError
from vidseg.segment.cache import DeviceFrames, frame_cache, frame_index
from vidseg.segment.frames import resize_images, resize_masks

SIZE = (40, 60)


def _files(cache_dir):
    return {p.name: p.stat().st_mtime_ns for p in sorted(cache_dir.iterdir())}


def test_the_cache_holds_the_resized_frames_and_is_built_once(tiny_dataset, tmp_path):
    videos = Dataset.open(tiny_dataset).videos("train")
    cache = frame_cache(videos, SIZE, tmp_path, workers=2, progress=False)
    assert cache.images.shape == (4, 22, 40, 60, 3) and cache.masks.shape == (4, 22, 40, 60)
    assert cache.video_ids == tuple(v.video_id for v in videos) and cache.size == SIZE
    video = videos[2]
    frames = torch.from_numpy(video.frames()).permute(0, 3, 1, 2).float() / 255
    expected = resize_images(frames, SIZE).permute(0, 2, 3, 1).numpy() * 255
    assert np.abs(cache.images[2].astype(np.float32) - expected).max() <= 0.5 + 1e-3  # uint8 rounding only
    masks = resize_masks(torch.from_numpy(video.masks().astype(np.uint8)), SIZE).numpy()
    assert np.array_equal(cache.masks[2], masks)

    stamps = _files(tmp_path)
    assert sorted(stamps) == ["train-40x60-images.npy", "train-40x60-masks.npy", "train-40x60.json"]
    again = frame_cache(videos, SIZE, tmp_path, workers=2, progress=False)
    assert _files(tmp_path) == stamps  # reused: nothing decoded or written again
    assert np.array_equal(again.images, cache.images)

    fewer = frame_cache(videos[:3], SIZE, tmp_path, progress=False)  # other videos: rebuilt in place
    assert fewer.images.shape[0] == 3 and _files(tmp_path)["train-40x60.json"] != stamps["train-40x60.json"]
    assert np.array_equal(fewer.images, cache.images[:3])
    other = frame_cache(videos, (32, 48), tmp_path, progress=False)  # another size: a cache beside it
    assert other.images.shape == (4, 22, 32, 48, 3) and "train-40x60-images.npy" in _files(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "no json", "edited json", "stale temp files"])
def test_a_damaged_or_partial_cache_is_rebuilt(tiny_dataset, tmp_path, damage):
    videos = Dataset.open(tiny_dataset).videos("val")
    original = frame_cache(videos, SIZE, tmp_path, progress=False)
    reference = np.array(original.images), np.array(original.masks)
    del original
    images_path, json_path = tmp_path / "val-40x60-images.npy", tmp_path / "val-40x60.json"
    if damage == "truncate":  # what a crash between rename and fsync, or a full disk, may leave
        images_path.write_bytes(images_path.read_bytes()[:5000])
    elif damage == "no json":  # killed after the arrays, before the json: not trusted
        json_path.unlink()
    elif damage == "edited json":
        meta = json.loads(json_path.read_text())
        json_path.write_text(json.dumps({**meta, "video_ids": meta["video_ids"][::-1]}))
    else:  # killed while decoding: temp files, no arrays
        images_path.rename(tmp_path / ".val-40x60-images.npy.tmp999.npy")
        (tmp_path / ".val-40x60.json.tmp999").write_text("{")
    stamp = json_path.stat().st_mtime_ns if json_path.exists() else None
    rebuilt = frame_cache(videos, SIZE, tmp_path, progress=False)
    assert json_path.stat().st_mtime_ns != stamp
    assert np.array_equal(rebuilt.images, reference[0]) and np.array_equal(rebuilt.masks, reference[1])
    assert not list(tmp_path.glob(".*"))  # temp files swept


def test_a_regenerated_dataset_makes_a_new_cache(dataset_copy, tmp_path):
    videos = Dataset.open(dataset_copy).videos("val")
    first = np.array(frame_cache(videos, SIZE, tmp_path, progress=False).masks)
    masks = np.load(videos[0].mask_path)
    np.save(videos[0].mask_path, np.zeros_like(masks))  # same ids and size, other content
    second = frame_cache(videos, SIZE, tmp_path, progress=False)
    assert first[0].any() and not second.masks[0].any()


def test_a_bad_frame_is_a_layout_error_naming_it(dataset_copy, tmp_path):
    videos = Dataset.open(dataset_copy).videos("train")
    bad = videos[1].frame_path(5)
    bad.write_bytes(b"not a png")
    with pytest.raises(LayoutError, match=f"{bad}: unreadable PNG"):
        frame_cache(videos, SIZE, tmp_path, workers=1, progress=False)  # raised across a worker process
    assert not (tmp_path / "train-40x60.json").exists() and not list(tmp_path.glob(".*"))


def test_device_frames_gather_the_indexed_frames(tiny_dataset, tmp_path):
    videos = Dataset.open(tiny_dataset).videos("val")
    cache = frame_cache(videos, SIZE, tmp_path, progress=False)
    index = frame_index(len(videos), range(1, 22, 7))
    assert index.tolist() == [1, 8, 15, 23, 30, 37]
    frames = DeviceFrames(cache, torch.device("cpu"))
    images, masks = frames.take(index[[4, 0]])
    assert images.shape == (2, 40, 60, 3) and images.dtype == masks.dtype == torch.uint8
    assert np.array_equal(images[0].numpy(), cache.images[1, 8]) and np.array_equal(masks[1].numpy(), cache.masks[0, 1])
