"""The TensorBoard pieces of ``search.results.board``, without a search: names, statuses, pictures."""

import numpy as np
import pytest

from search.results.board import ERROR_COLORS, error_map, legend_image, prediction_image, run_name, trial_status
from vidseg.data.classes import PALETTE


@pytest.mark.parametrize("config, reference, expected", [
    ({"translator": "gsta", "N_S": 2, "N_T": 8, "hid_S": 16, "hid_T": 128, "groups": 1, "loss": "ce",
      "last_frame_skip": True}, "", "gsta-2.8.16.128-ce-skip-c7a607ca"),
    ({"translator": "incep", "N_S": 4, "N_T": 8, "hid_S": 64, "hid_T": 256, "groups": 1, "loss": "ce",
      "last_frame_skip": False}, "paper-ce-4_8_64_256_1", "paper-incep-4.8.64.256-g1-ce-c7a607ca"),
    ({"translator": "incep", "N_S": 2, "N_T": 4, "hid_S": 8, "hid_T": 64, "groups": 4, "loss": "weighted_ce",
      "last_frame_weight": 3.1734, "last_frame_skip": True}, "", "incep-2.4.8.64-g4-wce3.17-skip-c7a607ca"),
    ({"translator": "gsta", "N_S": 4, "N_T": 8, "hid_S": 16, "hid_T": 128, "groups": 1, "loss": "ce",
      "last_frame_skip": False}, "top-team-maskpredformer", "top-gsta-4.8.16.128-ce-c7a607ca"),
])
def test_run_names(config, reference, expected):
    assert run_name(config, "c7a607ca", reference) == expected


@pytest.mark.parametrize("last, failed, expected", [
    ({"epoch": 12}, False, "completed"), ({"epoch": 3}, False, "stopped early"),
    ({"epoch": 2, "outcome": "DIVERGED"}, False, "diverged"), ({"epoch": 0, "outcome": "INFEASIBLE"}, False, "infeasible"),
    ({"epoch": 5}, True, "error"), (None, True, "error"),
])
def test_trial_status(last, failed, expected):
    assert trial_status(last, 12, failed) == expected


def test_the_error_column_tells_missed_extra_and_wrong_class_apart():
    truth = np.array([[0, 0, 5, 5, 7]], np.uint8)
    pred = np.array([[0, 3, 5, 0, 8]], np.uint8)
    colors = list(ERROR_COLORS.values())
    got = [tuple(c) for c in error_map(pred, truth)[0]]
    assert got == [colors[1], colors[3], colors[0], colors[2], colors[4]]  # bg ok, extra, ok, missed, wrong class


def test_prediction_image_enlarges_by_nearest_and_keeps_the_palette():
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 49, (3, 3, 10, 15)).astype(np.uint8)
    image = prediction_image(masks[0], masks[1], masks[2], scale=8, row_labels=["a", "b", "c"])
    assert image.shape == (28 + 3 * (80 + 4), 120 + 4 * 120 + 3 * 4, 3) and image.dtype == np.uint8
    second = image[28 + 84:28 + 84 + 80, 120 + 124:120 + 124 + 120]  # row 2, predicted
    assert (second == PALETTE[masks[1][1]].repeat(8, 0).repeat(8, 1)).all()


def test_legend_lists_the_classes_and_the_error_colours():
    image = legend_image([1, 17, 0])
    colors = {tuple(c) for c in image.reshape(-1, 3)}
    assert tuple(PALETTE[1]) in colors and tuple(PALETTE[17]) in colors
    assert all(tuple(c) in colors for c in ERROR_COLORS.values())


def test_one_outcome_names_every_ending_for_the_leaderboard_tensorboard_and_the_study():
    from search.results.board import STATUS
    from search.results.outcome import Outcome, classify

    assert STATUS == {"running": 0, "completed": 1, "stopped early": 2, "diverged": 3, "infeasible": 4, "error": 5}
    assert [o.leaderboard for o in Outcome] == ["TERMINATED", "TERMINATED", "DIVERGED", "INFEASIBLE", "ERROR"]
    assert [o.failed for o in Outcome] == [False, False, True, True, True]  # Optuna's FAIL, TensorBoard's failure
    assert classify({"epoch": 3, "outcome": "INFEASIBLE"}, 3, False) is Outcome.INFEASIBLE  # ran no epoch, whatever it says
    assert classify({"epoch": 3}, 3, True) is Outcome.ERROR
