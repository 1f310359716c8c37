"""The terminal's end-of-search summary: ratios only against references that ran past their first rung."""

from search.results.outcome import Outcome
from search.results.report import summary_text
from search.results.rows import TrialRow

SETTINGS = {"max_epochs": 9, "scheduler": "asha", "grace_period": 1}
BASELINES = {"unet": 0.2, "true": 0.25}


def _row(name: str, outcome: Outcome, epochs: int, best: float, reference: str = "") -> TrialRow:
    return TrialRow(name, name, outcome, epochs, best_val_iou=best, best_epoch=epochs, val_iou_true_inputs=best,
                    reference=reference, config={"translator": "gsta", "N_S": 2, "N_T": 4, "hid_S": 8, "hid_T": 32})


def test_a_reference_stopped_at_its_first_rung_gets_no_ratio():
    best = _row("best", Outcome.COMPLETED, 9, 0.3)
    plateau = _row("p1", Outcome.STOPPED_EARLY, 1, 0.0178, reference="paper-mse-2_4_4_32_1")
    learned = _row("p2", Outcome.STOPPED_EARLY, 3, 0.2, reference="paper-ce-4_8_64_256_1")
    text = summary_text([best, plateau, learned], BASELINES, best, SETTINGS)
    line = next(line for line in text.splitlines() if "paper-mse-2_4_4_32_1" in line)
    assert "stopped at the first rung" in line and line.split()[-1] == "-"  # not 16.85x
    line = next(line for line in text.splitlines() if "paper-ce-4_8_64_256_1" in line)
    assert "first rung" not in line and line.split()[-1] == "1.50x"
    # a reference that completed within the first rung's epochs (a short search) keeps its ratio
    short = _row("p3", Outcome.COMPLETED, 1, 0.15, reference="paper-mse-2_4_4_32_1")
    text = summary_text([best, short], BASELINES, best, {**SETTINGS, "max_epochs": 1})
    assert next(line for line in text.splitlines() if "paper-mse" in line).split()[-1] == "2.00x"
