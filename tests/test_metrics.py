import pytest
import torch
from torchmetrics import JaccardIndex

from vidseg.task import NUM_CLASSES
from vidseg.metrics import JaccardAccumulator, SoftJaccardAccumulator, confusion_matrix, jaccard_index
from vidseg.train.codec import class_probabilities, predict_masks


def oracle(preds, target, num_classes=49):
    return float(JaccardIndex(task="multiclass", num_classes=num_classes)(preds, target))


@pytest.mark.parametrize("seed", range(5))
def test_matches_torchmetrics_on_random_masks(seed):
    g = torch.Generator().manual_seed(seed)
    high = [49, 5, 2, 49, 12][seed]
    preds = torch.randint(0, high, (3, 16, 24), generator=g)
    target = torch.randint(0, high, (3, 16, 24), generator=g)
    assert float(jaccard_index(preds, target)) == pytest.approx(oracle(preds, target), abs=1e-6)


def test_hand_computed():
    target = torch.tensor([0, 0, 1, 1, 2])
    preds = torch.tensor([0, 1, 1, 1, 0])
    # class 0: tp 1, union 3 -> 1/3; class 1: tp 2, union 3 -> 2/3; class 2: tp 0, union 1 -> 0
    assert float(jaccard_index(preds, target)) == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)


@pytest.mark.parametrize(
    "preds,target",
    [
        (torch.zeros(2, 8, 8, dtype=torch.long), torch.zeros(2, 8, 8, dtype=torch.long)),  # all background
        (torch.zeros(4, 4, dtype=torch.long), torch.full((4, 4), 7)),  # disjoint
        (torch.full((4, 4), 30), torch.full((4, 4), 30)),  # one class, perfect
    ],
)
def test_edge_cases_match_torchmetrics(preds, target):
    assert float(jaccard_index(preds, target)) == pytest.approx(oracle(preds, target), abs=1e-6)


def test_class_missing_from_preds_or_target():
    target = torch.tensor([[0, 3, 3, 5]])
    preds = torch.tensor([[0, 3, 9, 0]])  # 5 missing from preds, 9 missing from target
    assert float(jaccard_index(preds, target)) == pytest.approx(oracle(preds, target), abs=1e-6)


def test_accumulator_aggregates_the_confusion_matrix_not_batch_means():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 6, (2, 10, 10), generator=g), torch.randint(0, 6, (2, 10, 10), generator=g))
               for _ in range(3)]
    batches.append((torch.zeros(1, 10, 10, dtype=torch.long), torch.zeros(1, 10, 10, dtype=torch.long)))
    acc = JaccardAccumulator()
    for p, t in batches:
        acc.update(p, t)
    all_p = torch.cat([p for p, _ in batches])
    all_t = torch.cat([t for _, t in batches])
    assert acc.compute() == pytest.approx(oracle(all_p, all_t), abs=1e-6)
    mean_of_batches = sum(oracle(p, t) for p, t in batches) / len(batches)
    assert acc.compute() != pytest.approx(mean_of_batches, abs=1e-3)


def test_confusion_matrix_rows_are_target():
    cm = confusion_matrix(torch.tensor([1, 1]), torch.tensor([0, 1]), num_classes=3)
    assert cm.tolist() == [[0, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_rejects_out_of_range_and_shape_mismatch():
    with pytest.raises(ValueError, match="0..48"):
        confusion_matrix(torch.tensor([49]), torch.tensor([0]))
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2, 2), torch.zeros(3))


# --- the soft score that breaks ties (val_soft_iou) ----------------------------------------------

def _one_hot(masks: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(masks.long(), NUM_CLASSES).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize("seed", [0, 1])
def test_the_soft_score_of_one_hot_probabilities_is_the_competition_metric(seed):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 6, (3, 16, 24), generator=g)
    preds = torch.where(torch.rand(target.shape, generator=g) < 0.7, target, torch.randint(0, 9, target.shape, generator=g))
    hard = JaccardAccumulator()
    hard.update(preds, target)
    soft = SoftJaccardAccumulator()
    soft.update(_one_hot(preds), target)
    oracle = float(JaccardIndex(task="multiclass", num_classes=NUM_CLASSES)(preds, target))
    assert soft.compute(hard.confmat) == pytest.approx(oracle, abs=1e-6)


def test_the_soft_score_separates_predictions_whose_masks_tie():
    """Two models that predict the same masks (same val IoU) but put different probability on the
    true classes: the surer of the right classes scores higher."""
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (2, 8, 8), generator=g)
    wrong = (target + 1) % 4
    preds = torch.where(torch.rand(target.shape, generator=g) < 0.8, target, wrong)
    scores = []
    for sure in (2.0, 6.0):
        logits = _one_hot(preds) * sure
        hard = JaccardAccumulator()
        hard.update(logits.argmax(1), target)
        soft = SoftJaccardAccumulator()
        soft.update(class_probabilities(logits, "ce"), target)
        scores.append((hard.compute(), soft.compute(hard.confmat)))
    assert scores[0][0] == scores[1][0]  # the same masks
    assert scores[1][1] > scores[0][1] + 0.1  # 80% right: the surer of its masks scores higher


def test_mse_outputs_become_probabilities_whose_most_likely_class_is_the_decoded_one():
    g = torch.Generator().manual_seed(1)
    output = torch.rand(2, 1, 1, 6, 7, generator=g) * 60 - 5  # ids out of range too: clamped as decoding does
    for rounding in ("floor", "round"):
        probs = class_probabilities(output[:, -1], "mse", rounding)
        assert probs.shape == (2, NUM_CLASSES, 6, 7)
        assert torch.allclose(probs.sum(1), torch.ones(2, 6, 7))
        assert (probs >= 0).all() and (probs > 0).sum(1).max() <= 2  # shared between two neighbours at most
        assert torch.equal(probs.argmax(1), predict_masks(output, "mse", rounding)[:, -1])
    at_point = class_probabilities(torch.full((1, 1, 1, 1), 7.5), "mse", "floor")  # class 7's decoding point
    assert at_point[0, 7, 0, 0] == 1.0
    halfway = class_probabilities(torch.full((1, 1, 1, 1), 8.0), "mse", "floor")  # between 7.5 and 8.5
    assert halfway[0, 7, 0, 0] == halfway[0, 8, 0, 0] == 0.5
