import pytest
import torch
from torchmetrics import JaccardIndex

from vidseg.metrics import JaccardAccumulator, confusion_matrix, jaccard_index


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
