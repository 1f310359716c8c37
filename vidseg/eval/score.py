"""The competition's score of a submission: its Jaccard index against known answers of the hidden split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vidseg.data.shards import ShardSet, sha256_file
from vidseg.errors import InputError
from vidseg.eval.predict import SUBMISSION_SIZE
from vidseg.metrics import JaccardAccumulator

__all__ = ["read_answers", "hidden_score"]


def read_answers(path: Path | str) -> np.ndarray:
    """Known answers of the hidden split: an .npy of target-frame masks (N, H, W) at the
    competition's size, in the hidden split's video order. Raises ``InputError`` naming the file."""
    try:
        answers = np.load(path, allow_pickle=False)  # an .npy, never a pickle
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not readable as hidden answers ({str(err).splitlines()[0][:120]})") from None
    if answers.ndim != 3 or tuple(answers.shape[1:]) != SUBMISSION_SIZE or answers.dtype.kind not in "iu":
        raise InputError(f"{path}: hidden answers must be integer masks of shape (N, {SUBMISSION_SIZE[0]}, "
                         f"{SUBMISSION_SIZE[1]}), but it holds {answers.dtype} {answers.shape}")
    return answers


def hidden_score(shards: ShardSet, prediction: torch.Tensor, video_ids: np.ndarray,
                 answers_file: str | None = None) -> tuple[float | None, str]:
    """The submission's IoU against known answers, and where they came from; or None and why not.

    The answers are read here, by the driver: from ``answers_file`` (``--hidden-answers``), else
    from the shard set, which carries them when its dataset had them (``hidden_answers`` in its
    manifest, checksummed)."""
    entry = shards.manifest.get("hidden_answers")
    if answers_file is None and not entry:
        return None, ("no answers to score against: the shard set carries none (the competition keeps its own); "
                      "give them with --hidden-answers FILE")
    try:
        if answers_file is not None:
            answers, ids, source = read_answers(answers_file), video_ids, str(answers_file)
        else:
            path = shards.root / entry["file"]
            if not path.is_file() or sha256_file(path) != entry["sha256"]:
                return None, f"{path}: missing or damaged (its checksum differs from the manifest's)"
            answers, ids, source = read_answers(path), np.asarray(entry["video_ids"]), "the shard set's answers"
    except InputError as err:  # after a search: the report says why, and everything else is still written
        return None, str(err)
    if not np.array_equal(ids, video_ids):
        return None, f"{source}: its videos are not the hidden split's ({len(ids)} against {len(video_ids)})"
    if answers.shape != tuple(prediction.shape):
        return None, f"{source}: shape {answers.shape}, but the predictions are {tuple(prediction.shape)}"
    acc = JaccardAccumulator()
    acc.update(prediction.long(), torch.from_numpy(answers.astype(np.int64)))
    return acc.compute(), source
