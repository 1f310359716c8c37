import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torchmetrics import JaccardIndex

from tests.conftest import TINY_COUNTS, TINY_SEED, files_under, run_cli, run_main
from vidseg.data import synth
from vidseg.data.layout import Dataset, read_frame


def test_same_seed_same_clip_other_seed_other_clip():
    cfg = synth.SynthConfig(seed=3)
    a = synth.render_video(5, cfg, num_frames=6)
    b = synth.render_video(5, cfg, num_frames=6)
    c = synth.render_video(5, synth.SynthConfig(seed=4), num_frames=6)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.masks, c.masks)


def test_output_does_not_depend_on_worker_count(tiny_dataset, tmp_path):
    out = tmp_path / "serial"
    synth.generate(out, TINY_COUNTS, synth.SynthConfig(seed=TINY_SEED), workers=1, progress=False)
    parallel = sorted(p.relative_to(tiny_dataset) for p in tiny_dataset.rglob("*") if p.is_file())
    serial = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert parallel == serial
    for rel in serial:
        if rel.suffix in (".png", ".npy"):
            assert (out / rel).read_bytes() == (tiny_dataset / rel).read_bytes(), rel


def test_layout_of_generated_dataset(tiny_dataset):
    names = {split: sorted(p.name for p in (tiny_dataset / split).iterdir()) for split in TINY_COUNTS}
    assert names == {
        "train": ["video_00000", "video_00001", "video_00002", "video_00003"],
        "val": ["video_00004", "video_00005"],
        "unlabeled": ["video_00006", "video_00007"],
        "hidden": ["video_00008", "video_00009"],
    }
    train = tiny_dataset / "train" / "video_00000"
    assert sorted(p.name for p in train.iterdir()) == sorted([f"image_{t}.png" for t in range(22)] + ["mask.npy"])
    assert sorted(p.name for p in (tiny_dataset / "unlabeled/video_00006").iterdir()) == sorted(
        f"image_{t}.png" for t in range(22))
    assert sorted(p.name for p in (tiny_dataset / "hidden/video_00008").iterdir()) == sorted(
        f"image_{t}.png" for t in range(11))
    mask = np.load(train / "mask.npy")
    assert mask.shape == (22, 160, 240) and np.issubdtype(mask.dtype, np.integer)
    assert not list(tiny_dataset.rglob(".*"))  # staging and temporary folders cleaned up


def test_hidden_answers_are_the_frame_22_masks(tiny_dataset):
    answers = np.load(tiny_dataset / "hidden_answers.npy")
    assert answers.shape == (2, 160, 240)
    cfg = synth.SynthConfig(seed=TINY_SEED)
    for row, video_id in enumerate((8, 9)):
        clip = synth.render_video(video_id, cfg)
        assert np.array_equal(answers[row], clip.masks[21])
        last_input = read_frame(tiny_dataset / f"hidden/video_{video_id:05d}/image_10.png")
        assert np.array_equal(last_input, clip.frames[10])


def test_manifest_and_motion_statistic(tiny_dataset):
    manifest = json.loads((tiny_dataset / "dataset.json").read_text())
    assert manifest["generator_version"] == synth.GENERATOR_VERSION
    assert manifest["counts"] == TINY_COUNTS and manifest["config"]["seed"] == TINY_SEED
    assert manifest["resolution"] == {"height": 160, "width": 240}
    assert len(manifest["classes"]) == 49 and manifest["classes"][0]["name"] == "background"
    # The statistic is the competition's metric of mask[10] against mask[21] over val.
    val = Dataset.open(tiny_dataset).videos("val")
    masks = [v.masks().astype(np.int64) for v in val]
    preds = torch.from_numpy(np.stack([m[10] for m in masks]))
    target = torch.from_numpy(np.stack([m[21] for m in masks]))
    expected = float(JaccardIndex(task="multiclass", num_classes=49)(preds, target))
    assert manifest["motion"]["copy_last_frame_iou_val"] == pytest.approx(expected, abs=1e-6)


def test_attribute_triples_unique_over_many_scenes():
    cfg = synth.SynthConfig()
    camera = synth.make_camera(cfg.width, cfg.height)
    sizes = set()
    for video_id in range(300):
        scene = synth.sample_scene(synth._video_rng(0, video_id), cfg, camera)
        ids = [o.class_id for o in scene.objects]
        assert len(ids) == len(set(ids)), video_id
        sizes.add(len(ids))
        assert any(o.role != "enter" for o in scene.objects)  # something is in view at frame 0
    assert sizes == set(range(3, 9))


def test_masks_hold_only_scene_objects_and_hidden_scenes_stay_out(tiny_dataset):
    manifest = json.loads((tiny_dataset / "dataset.json").read_text())
    assert {m["split"] for m in manifest["videos"]} == {"train", "val", "unlabeled"}
    assert manifest["classes"][26]["name"] == "red rubber sphere" and manifest["classes"][26]["shape"] == "sphere"
    for meta in manifest["videos"]:
        ids = [o["class_id"] for o in meta["objects"]]
        if meta["split"] in ("train", "val"):
            split_dir = tiny_dataset / meta["split"] / f"video_{meta['video_id']:05d}"
            present = set(np.unique(np.load(split_dir / "mask.npy")).tolist())
            assert present <= {0, *ids}
            assert 0 in present


def test_objects_move_enter_and_collide():
    cfg = synth.SynthConfig(seed=11)
    moved, contacts, entered = 0, 0, 0
    for video_id in range(8):
        clip = synth.render_video(video_id, cfg)
        moved += (clip.masks[10] != clip.masks[21]).sum() > 200
        contacts += bool(clip.contacts)
        for obj in clip.scene.objects:
            if obj.role == "enter":
                visible = [(clip.masks[t] == obj.class_id).any() for t in range(22)]
                entered += (not visible[0]) and any(visible)
    assert moved >= 7, "frame 22 should differ from frame 11 in nearly every video"
    assert contacts >= 2, "some pairs of objects should touch"
    assert entered >= 1, "some objects should enter the view during the clip"


def test_motion_zero_gives_still_scenes_and_more_motion_lowers_copy_last_iou():
    still = synth.render_video(1, synth.SynthConfig(seed=2, motion=0.0))
    moving = synth.render_video(1, synth.SynthConfig(seed=2, motion=1.0))
    # Resting objects may settle by a pixel on contact; nothing travels.
    assert max((still.masks[0] != still.masks[t]).sum() for t in range(22)) <= 10
    assert (moving.masks[0] != moving.masks[21]).sum() > 200
    # Same scenes, faster: the copy-last-frame baseline gets worse.
    from vidseg.metrics import JaccardAccumulator

    scores = []
    for motion in (0.5, 1.5):
        acc = JaccardAccumulator()
        for vid in range(6):
            clip = synth.render_video(vid, synth.SynthConfig(seed=2, motion=motion))
            acc.update(torch.from_numpy(clip.masks[10].astype(np.int64)),
                       torch.from_numpy(clip.masks[21].astype(np.int64)))
        scores.append(acc.compute())
    assert scores[0] > scores[1]


def test_interrupted_run_resumes_without_redoing_finished_videos(tmp_path, capsys):
    out = tmp_path / "resume"
    args = [sys.executable, "-m", "vidseg.data.synth", "--out", str(out), "--train=6", "--val=2",
            "--workers=1", "--quiet", "--seed=5"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list((out / "train").glob("video_*"))) < 2:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = sorted((out / "train").glob("video_*"))
    assert 2 <= len(done) < 8 and not (out / "dataset.json").exists()
    stamp = done[0].stat().st_mtime_ns
    assert run_main(synth.main, *args[3:], capsys=capsys).returncode == 0
    assert done[0].stat().st_mtime_ns == stamp  # kept, not regenerated
    fresh = tmp_path / "fresh"
    synth.generate(fresh, {"train": 6, "val": 2, "unlabeled": 0, "hidden": 0}, synth.SynthConfig(seed=5),
                   progress=False)
    for video in Dataset.open(fresh).videos("train") + Dataset.open(fresh).videos("val"):
        rel = video.path.relative_to(fresh)
        assert np.array_equal(np.load(out / rel / "mask.npy"), video.masks())
        assert (out / rel / "image_21.png").read_bytes() == video.frame_path(21).read_bytes()


def test_other_settings_into_same_folder_is_refused(tiny_dataset):
    before = (tiny_dataset / "dataset.json").read_bytes()
    result = run_cli("-m", "vidseg.data.synth", "--out", str(tiny_dataset), "--train=4", "--val=2",
                     "--seed=99", "--quiet")  # in a real process: exit 2, one line, no traceback
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and str(tiny_dataset) in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert (tiny_dataset / "dataset.json").read_bytes() == before


@pytest.mark.parametrize("flag", ["--train=-1", "--workers=0", "--motion=-2", "--val=0", "--seed=-1",
                                  "--max-objects=40"])
def test_cli_rejects_bad_values(flag, tmp_path, capsys):
    result = run_main(synth.main, "--out", str(tmp_path / "x"), flag, "--quiet", capsys=capsys)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(("error: ", "python -m vidseg.data.synth: error: "))
    assert flag.split("=")[0].lstrip("-").replace("-", "_") in lines[-1].replace("-", "_")
    assert not (tmp_path / "x").exists()


def test_unwritable_output_and_corrupt_manifest_are_one_line_errors(tmp_path, capsys):
    result = run_main(synth.main, "--out", "/proc/nope/x", "--train=1", "--val=1", "--quiet", capsys=capsys)
    assert result.returncode == 2 and result.stderr.startswith("error: /proc/nope")
    assert result.stderr.count("\n") == 1
    out = tmp_path / "d"
    out.mkdir()
    (out / "dataset.json").write_text("[1, 2")
    result = run_main(synth.main, "--out", str(out), "--train=1", "--val=1", "--quiet", capsys=capsys)
    assert result.returncode == 2 and result.stderr.startswith(f"error: {out / 'dataset.json'}: unreadable")
    assert result.stderr.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json"]


def test_rerun_of_finished_dataset_is_a_no_op(tiny_dataset, capsys):
    before = files_under(tiny_dataset)
    args = [f"--{k}={v}" for k, v in TINY_COUNTS.items()]
    result = run_main(synth.main, "--out", str(tiny_dataset), *args, f"--seed={TINY_SEED}", "--quiet", capsys=capsys)
    assert result.returncode == 0, result.stderr
    assert files_under(tiny_dataset) == before
