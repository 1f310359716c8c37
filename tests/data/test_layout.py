import shutil

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY_SEED
from vidseg.data import synth
from vidseg.data.layout import Dataset, LayoutError, read_frame, read_mask


def test_round_trip_matches_the_generator(tiny_dataset):
    ds = Dataset.open(tiny_dataset)
    assert {s: len(v) for s, v in ds.splits.items()} == {"train": 4, "val": 2, "unlabeled": 2, "hidden": 2}
    video = ds.videos("val")[1]
    assert video.video_id == 5 and video.labeled
    clip = synth.render_video(5, synth.SynthConfig(seed=TINY_SEED))
    assert np.array_equal(video.frames(), clip.frames)
    assert np.array_equal(video.masks(), clip.masks)
    hidden = ds.videos("hidden")[0]
    assert hidden.frames().shape == (11, 160, 240, 3)
    with pytest.raises(LayoutError, match="no masks"):
        hidden.masks()


def test_unpadded_names_are_ordered_numerically(dataset_copy):
    train = dataset_copy / "train"
    for old, new in (("video_00000", "video_10"), ("video_00001", "video_2"), ("video_00002", "video_1")):
        (train / old).rename(train / new)
    ids = [v.video_id for v in Dataset.open(dataset_copy).videos("train")]
    assert ids == [1, 2, 3, 10]


def test_duplicate_numbers_are_rejected(dataset_copy):
    train = dataset_copy / "train"
    shutil.copytree(train / "video_00003", train / "video_3")
    with pytest.raises(LayoutError, match="video number 3"):
        Dataset.open(dataset_copy)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16, np.int8])
def test_any_integer_mask_dtype_is_accepted(dataset_copy, dtype):
    path = dataset_copy / "train/video_00000/mask.npy"
    original = np.load(path)
    np.save(path, original.astype(dtype))
    mask = Dataset.open(dataset_copy).videos("train")[0].masks()
    assert mask.dtype == dtype and np.array_equal(mask, original)


def test_alpha_channel_is_dropped(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (160, 240, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "image_0.png")
    frame = read_frame(tmp_path / "image_0.png")
    assert frame.shape == (160, 240, 3) and frame.dtype == np.uint8
    assert np.array_equal(frame, rgba[..., :3])


def test_read_mask_validates(tmp_path):
    path = tmp_path / "mask.npy"
    np.save(path, np.zeros((22, 160, 240), dtype=np.float32))
    with pytest.raises(LayoutError, match="float32"):
        read_mask(path)
    np.save(path, np.full((22, 160, 240), 49, dtype=np.uint8))
    with pytest.raises(LayoutError, match="49"):
        read_mask(path)
    np.save(path, np.zeros((21, 160, 240), dtype=np.uint8))
    with pytest.raises(LayoutError, match=r"\(21, 160, 240\)"):
        read_mask(path)


def test_missing_required_split(dataset_copy):
    shutil.rmtree(dataset_copy / "val")
    with pytest.raises(LayoutError, match="missing val split"):
        Dataset.open(dataset_copy)
