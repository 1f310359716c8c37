"""The competition's metric: multiclass Jaccard index from an aggregated confusion matrix.

It equals ``torchmetrics.JaccardIndex(task="multiclass", num_classes=NUM_CLASSES)`` (macro average): the
mean, over classes whose union is non-empty, of ``TP / (TP + FP + FN)``, computed from one
confusion matrix accumulated over every pixel of every frame. Per-batch IoUs are never averaged.
"""

from __future__ import annotations

import torch

from vidseg.task import NUM_CLASSES

__all__ = ["confusion_matrix", "jaccard_from_confusion", "jaccard_index", "JaccardAccumulator", "SoftJaccardAccumulator"]


def confusion_matrix(preds: torch.Tensor, target: torch.Tensor, num_classes: int = NUM_CLASSES,
                     check_range: bool = True) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts, rows = target class, columns = predicted class.

    Computed with one ``index_add_`` on the tensors' device. Values outside ``0..num_classes-1``
    raise ``ValueError``; that check reads the range back to the host, so a training loop that
    knows its ids are valid passes ``check_range=False`` and stays free of host syncs.
    """
    preds = torch.as_tensor(preds)
    target = torch.as_tensor(target, device=preds.device)
    if preds.shape != target.shape:
        raise ValueError(f"preds shape {tuple(preds.shape)} differs from target shape {tuple(target.shape)}")
    if preds.is_floating_point() or target.is_floating_point():
        raise ValueError(f"masks must hold integer class ids, got {preds.dtype} and {target.dtype}")
    preds = preds.reshape(-1).long()
    target = target.reshape(-1).long()
    if check_range and preds.numel():
        lo = torch.minimum(preds.min(), target.min()).item()
        hi = torch.maximum(preds.max(), target.max()).item()
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"class ids must lie in 0..{num_classes - 1}, found {lo}..{hi}")
    index = target * num_classes + preds
    # index_add_ into a fixed size, not bincount: on CUDA bincount reads the maximum back to the host
    counts = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=preds.device)
    return counts.index_add_(0, index, torch.ones_like(index)).reshape(num_classes, num_classes)


def jaccard_from_confusion(confmat: torch.Tensor) -> torch.Tensor:
    """Macro Jaccard index over the classes present in target or prediction (0-dim float tensor)."""
    confmat = confmat.double()
    intersection = confmat.diagonal()
    union = confmat.sum(0) + confmat.sum(1) - intersection
    present = union > 0
    if not bool(present.any()):
        return torch.zeros((), dtype=torch.float32, device=confmat.device)
    return (intersection[present] / union[present]).mean().float()


def jaccard_index(preds: torch.Tensor, target: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Jaccard index of integer masks ``preds`` against ``target`` of any equal shape."""
    return jaccard_from_confusion(confusion_matrix(preds, target, num_classes))


class JaccardAccumulator:
    """Accumulates one confusion matrix over a whole split; ``compute()`` gives its Jaccard index."""

    def __init__(self, num_classes: int = NUM_CLASSES, device: torch.device | str | None = None) -> None:
        self.num_classes = num_classes
        self.confmat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, preds: torch.Tensor, target: torch.Tensor, check_range: bool = True) -> None:
        cm = confusion_matrix(preds, target, self.num_classes, check_range)
        self.confmat += cm.to(self.confmat.device)

    def compute(self) -> float:
        return float(jaccard_from_confusion(self.confmat))

    def reset(self) -> None:
        self.confmat.zero_()


class SoftJaccardAccumulator:
    """The metric with class probabilities in place of the predicted mask: a continuous score that
    separates predictions whose masks, and so whose Jaccard index, are the same.

    Over a whole split, per class c: ``I_c = sum p_c`` over the pixels of class c, ``U_c = sum p_c +
    |class c| - I_c``; the score is the mean of ``I_c / U_c`` over the classes present in the target
    or in the predicted masks (``present``, from the hard metric's confusion matrix), the hard
    metric's classes. With one-hot probabilities it equals the Jaccard index; a model that puts more
    of its probability on the right classes scores higher, whatever its loss."""

    def __init__(self, num_classes: int = NUM_CLASSES, device: torch.device | str | None = None) -> None:
        self.num_classes = num_classes
        self.sums = torch.zeros(3, num_classes, dtype=torch.float64, device=device)  # I, sum p, |class|

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        """``probs`` (B, C, H, W) summing to 1 over C; ``target`` (B, H, W) integer ids."""
        probs = probs.float()
        target = target.long().to(probs.device)
        one_hot = torch.zeros_like(probs).scatter_(1, target.unsqueeze(1), 1.0)
        self.sums += torch.stack([(probs * one_hot).sum((0, 2, 3)), probs.sum((0, 2, 3)),
                                  one_hot.sum((0, 2, 3))]).double().to(self.sums.device)

    def compute(self, confmat: torch.Tensor | None = None) -> float:
        """The score, over the classes present in ``confmat`` (the hard metric's confusion matrix of
        the same predictions), or in the target where none is given."""
        inter, prob_sum, count = self.sums
        union = prob_sum + count - inter
        if confmat is None:
            present = count > 0
        else:
            confmat = confmat.to(self.sums.device)
            present = (confmat.sum(0) + confmat.sum(1)) > 0
        present &= union > 0
        if not bool(present.any()):
            return 0.0
        return float((inter[present] / union[present]).mean())
