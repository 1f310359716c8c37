"""``python -m vidseg.data.check``: a good dataset passes; each corruption fails with exit 2, naming the file."""

import shutil

import numpy as np
import pytest

from tests.conftest import run_cli
from vidseg.data.check import main


def check(root, capsys, *extra):
    code = main([str(root), "--quiet", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_good_dataset_passes_with_a_summary(tiny_dataset, capsys):
    code, out, err = check(tiny_dataset, capsys)
    assert code == 0, err
    assert "train 4, val 2, unlabeled 2, hidden 2" in out
    assert "240x160" in out and "object classes" in out


def corrupt_truncated_png(root):
    path = root / "train/video_00001/image_5.png"
    path.write_bytes(path.read_bytes()[:200])
    return path


def corrupt_garbage_png(root):
    path = root / "val/video_00004/image_0.png"
    path.write_bytes(b"this is not a png at all")
    return path


def corrupt_missing_png(root):
    path = root / "unlabeled/video_00006/image_13.png"
    path.unlink()
    return path.parent


def corrupt_extra_frame(root):
    src = root / "hidden/video_00008/image_10.png"
    shutil.copy(src, src.with_name("image_11.png"))
    return src.parent


def corrupt_mask_shape(root):
    path = root / "train/video_00002/mask.npy"
    np.save(path, np.load(path)[:, :100])
    return path


def corrupt_mask_float(root):
    path = root / "val/video_00005/mask.npy"
    np.save(path, np.load(path).astype(np.float64))
    return path


def corrupt_class_range(root):
    path = root / "train/video_00003/mask.npy"
    mask = np.load(path).astype(np.int16)
    mask[3, 10, 10] = 60
    np.save(path, mask)
    return path


def corrupt_empty_split(root):
    shutil.rmtree(root / "hidden")
    (root / "hidden").mkdir()
    (root / "hidden_answers.npy").unlink()
    return root / "hidden"


def corrupt_frame_size(root):
    from PIL import Image

    path = root / "train/video_00000/image_3.png"
    Image.new("RGB", (120, 80)).save(path)
    return path


def corrupt_unreadable_mask(root):
    path = root / "train/video_00000/mask.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    return path


def corrupt_padded_frame_name(root):
    src = root / "train/video_00002/image_5.png"
    src.rename(src.with_name("image_05.png"))
    return src.parent


def corrupt_npz_mask(root):
    path = root / "val/video_00004/mask.npy"
    mask = np.load(path)
    with open(path, "wb") as f:
        np.savez(f, mask=mask)
    return path


CORRUPTIONS = [corrupt_padded_frame_name, corrupt_npz_mask, corrupt_truncated_png, corrupt_garbage_png, corrupt_missing_png, corrupt_extra_frame,
               corrupt_mask_shape, corrupt_mask_float, corrupt_class_range, corrupt_empty_split,
               corrupt_frame_size, corrupt_unreadable_mask]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__.removeprefix("corrupt_"))
def test_each_corruption_fails_naming_the_file(dataset_copy, capsys, corrupt):
    bad_path = corrupt(dataset_copy)
    code, out, err = check(dataset_copy, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {bad_path}: ")
    assert "Traceback" not in err


def test_a_stray_file_does_not_hide_the_rest_of_its_split(dataset_copy, capsys):
    stray = dataset_copy / "train" / "README.txt"
    stray.write_text("notes")
    bad_mask = corrupt_mask_float(dataset_copy)
    bad_train = corrupt_mask_shape(dataset_copy)
    code, _, err = check(dataset_copy, capsys)
    assert code == 2
    assert f"error: {stray}: unexpected entry" in err
    assert f"error: {bad_mask}: " in err and f"error: {bad_train}: " in err


def test_missing_root(tmp_path, capsys):
    code, _, err = check(tmp_path / "nowhere", capsys)
    assert code == 2 and err.strip() == f"error: {tmp_path / 'nowhere'}: no such dataset folder"


def test_keeps_checking_after_the_first_problem_up_to_a_cap(dataset_copy, capsys):
    paths = [corrupt_truncated_png(dataset_copy), corrupt_mask_float(dataset_copy), corrupt_class_range(dataset_copy)]
    code, _, err = check(dataset_copy, capsys)
    assert code == 2
    for path in paths:
        assert f"error: {path}: " in err
    code, _, err = check(dataset_copy, capsys, "--max-errors=2")
    assert code == 2 and len(err.strip().splitlines()) == 3 and "more problems after the first 2" in err
    code, _, err = check(dataset_copy, capsys, "--max-errors=3")
    assert code == 2 and len(err.strip().splitlines()) == 3 and "more problems" not in err


def test_cli_process_exit_code_and_no_traceback(dataset_copy):
    path = corrupt_mask_float(dataset_copy)
    result = run_cli("-m", "vidseg.data.check", str(dataset_copy))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {path}: mask dtype is float64, expected an integer dtype"
