"""The search's Optuna study: what ``search.run.study.StudySearch`` tells it, the sampler's settings,
and optuna-dashboard serving a stored study. The smoke search's stored study is checked against
Ray's results in ``test_run_search.py``."""

import json
import math
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.space import PROFILES, SearchSpace
from search.results.journal import journal_storage, load_study, parameter_importances
from search.run.study import TPE_SETTINGS, StudySearch, make_sampler
from search.run.trainable import DIVERGED, OUTCOME
from tests.loopback import free_port


def test_the_sampler_settings_are_explicit():
    tpe = make_sampler("tpe", seed=3, num_samples=10)
    assert isinstance(tpe, optuna.samplers.TPESampler)
    assert (tpe._multivariate, tpe._group, tpe._constant_liar) == (True, True, False) == tuple(TPE_SETTINGS.values())
    assert tpe._n_startup_trials == 5  # half of a small budget
    assert make_sampler("tpe", 0, 64)._n_startup_trials == 10
    # less the random proposals made while others run, and at least 3: the demo's 16 at 2, full's 64 at 8
    assert [make_sampler("tpe", 0, n, c)._n_startup_trials for n, c in ((16, 2), (64, 8), (64, 2), (6, 4))] == [7, 3, 9, 3]
    plain = make_sampler("tpe", 0, 10, tpe_settings={"multivariate": False, "group": False, "constant_liar": False})
    assert (plain._multivariate, plain._group, plain._constant_liar) == (False, False, False)
    assert isinstance(make_sampler("random", 0, 10), optuna.samplers.RandomSampler)


def _searcher(tmp_path: Path, max_epochs: int = 4) -> StudySearch:
    profile = PROFILES["smoke"]
    return StudySearch(space=SearchSpace(profile, max_epochs, 0), max_epochs=max_epochs,
                       sampler=make_sampler("random", 0, 8), storage=journal_storage(tmp_path / "optuna.journal"),
                       study_name="unit")


def _run(searcher: StudySearch, trial_id: str, values: list[float], stopped: bool = False, **last) -> None:
    """Drive the searcher as Tune does: every result but the one the scheduler stops on goes to
    on_trial_result; on_trial_complete gets the last."""
    searcher.suggest(trial_id)
    results = [{"epoch": e, "val_iou": v} for e, v in enumerate(values, 1)]
    results[-1].update(last)
    for result in results[:-1] if stopped else results:
        searcher.on_trial_result(trial_id, result)
    searcher.on_trial_complete(trial_id, result=results[-1])


def test_stopped_trials_are_pruned_and_completed_ones_valued_at_their_best(tmp_path):
    searcher = _searcher(tmp_path)
    _run(searcher, "full", [0.10, 0.30, 0.25, 0.20], stopped=True)  # ASHA stops at max_t: it ran every epoch
    _run(searcher, "early", [0.05, 0.04], stopped=True)  # ASHA stopped it at epoch 2 of 4
    _run(searcher, "natural", [0.1, 0.2, 0.3, 0.15])  # FIFO: the trainable returned
    _run(searcher, "diverged", [0.1, math.nan], **{OUTCOME: DIVERGED, "reason": "loss is nan at epoch 2"})
    searcher.suggest("broken")
    searcher.on_trial_complete("broken", error=True)

    study = load_study(tmp_path / "optuna.journal", "unit")  # read back from the file
    trials = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert trials["full"].state == TrialState.COMPLETE and trials["full"].value == 0.30  # best, not last
    assert trials["full"].intermediate_values == {1: 0.10, 2: 0.30, 3: 0.25, 4: 0.20}
    assert trials["early"].state == TrialState.PRUNED and trials["early"].intermediate_values == {1: 0.05, 2: 0.04}
    assert trials["natural"].state == TrialState.COMPLETE and trials["natural"].value == 0.3
    assert trials["diverged"].state == TrialState.FAIL and trials["diverged"].user_attrs["outcome"] == DIVERGED
    assert trials["diverged"].intermediate_values == {1: 0.1}
    assert trials["broken"].state == TrialState.FAIL and trials["broken"].user_attrs["outcome"] == "ERROR"


def test_importances_come_from_the_stored_study(tmp_path):
    searcher = _searcher(tmp_path)
    for i in range(2):
        _run(searcher, f"t{i}", [0.1 * i, 0.1 * i + 0.05, 0.2, 0.2])
    assert parameter_importances(tmp_path / "optuna.journal", "unit") == \
        "needs at least 3 finished trials in the study (2 finished)"
    for i in range(2, 8):
        _run(searcher, f"t{i}", [0.01 * i, 0.02 * i, 0.03 * i, 0.04 * i])
    importances = parameter_importances(tmp_path / "optuna.journal", "unit")
    assert isinstance(importances, dict) and importances
    searched = set().union(*(t.params for t in load_study(tmp_path / "optuna.journal", "unit").trials))
    assert set(importances) <= searched and all(0 <= v <= 1 for v in importances.values())
    assert parameter_importances(tmp_path / "none.journal", "unit").startswith("no stored study")
    assert not (tmp_path / "none.journal").exists()  # reading never makes one


def test_optuna_dashboard_serves_the_stored_study(tmp_path):
    searcher = _searcher(tmp_path)
    _run(searcher, "a", [0.1, 0.2, 0.3, 0.4])
    _run(searcher, "b", [0.05, 0.01], stopped=True)
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("optuna-dashboard")), str(tmp_path / "optuna.journal"),
                               "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, studies = time.monotonic() + 60, None
        while time.monotonic() < deadline and studies is None:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as answer:
                    studies = json.load(answer)["study_summaries"]
            except OSError:
                time.sleep(0.3)
        assert studies is not None, "optuna-dashboard did not answer within 60 s"
        assert [s["study_name"] for s in studies] == ["unit"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}", timeout=10) as answer:
            study = json.load(answer)
        assert sorted(t["state"] for t in study["trials"]) == ["Complete", "Pruned"]
    finally:
        server.terminate()  # by its pid
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_a_restored_searcher_reopens_its_moved_study_and_fails_trials_it_never_saved(tmp_path, monkeypatch):
    searcher = _searcher(tmp_path)
    _run(searcher, "done", [0.1, 0.2, 0.3, 0.4])
    searcher.suggest("running")
    searcher.on_trial_result("running", {"epoch": 1, "val_iou": 0.05})
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's snapshot
    searcher.suggest("after-snapshot")  # asked after the snapshot, then the driver died
    moved = tmp_path / "moved"
    moved.mkdir()
    (tmp_path / "optuna.journal").rename(moved / "optuna.journal")  # the results folder moved
    monkeypatch.setenv("VIDSEG_STUDY_FILE", str(moved / "optuna.journal"))
    restored = _searcher(tmp_path / "fresh")
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_result("running", {"epoch": 2, "val_iou": 0.5})
    restored.on_trial_complete("running", result={"epoch": 4, "val_iou": 0.45})
    study = load_study(moved / "optuna.journal", "unit")
    trials = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert trials["running"].state == TrialState.COMPLETE and trials["running"].value == 0.5
    assert trials["running"].intermediate_values == {1: 0.05, 2: 0.5, 4: 0.45}
    assert trials["after-snapshot"].state == TrialState.FAIL  # not left running for the constant liar
    assert trials["done"].state == TrialState.COMPLETE
    assert not (tmp_path / "optuna.journal").exists()  # nothing written at the old place


@pytest.mark.parametrize("limited", [False, True], ids=["searcher", "behind the search's limiter"])
def test_an_errored_trial_retried_by_ray_becomes_a_new_study_trial(tmp_path, limited):
    """Behind Ray's plain ConcurrencyLimiter the retry's end never reached the study (it dropped the
    trial when it errored), leaving the retry RUNNING; the search's RetryingLimiter passes it on."""
    from search.run.study import RetryingLimiter

    searcher = RetryingLimiter(_searcher(tmp_path), max_concurrent=1) if limited else _searcher(tmp_path)
    searcher.suggest("flaky")
    searcher.on_trial_result("flaky", {"epoch": 1, "val_iou": 0.1})
    searcher.on_trial_complete("flaky", error=True)  # out of retries: the search ended it
    searcher.on_trial_result("flaky", {"epoch": 2, "val_iou": 0.3})  # --retry-errored: it goes on
    searcher.on_trial_complete("flaky", result={"epoch": 4, "val_iou": 0.2}, error=False)
    study = load_study(tmp_path / "optuna.journal", "unit")
    first, retry = study.trials
    assert first.state == TrialState.FAIL and first.user_attrs["outcome"] == "ERROR"
    assert retry.state == TrialState.COMPLETE and retry.value == 0.3 and retry.params == first.params
    assert retry.user_attrs == {"ray_trial_id": "flaky", "retry_of": first.number,
                                "enqueued_params": first.params}  # search.space.enqueue: its values kept
    assert retry.intermediate_values == {1: 0.1, 2: 0.3, 4: 0.2}


def test_a_trial_with_no_score_is_a_failure(tmp_path):
    searcher = _searcher(tmp_path)
    _run(searcher, "nan", [math.nan])
    assert load_study(tmp_path / "optuna.journal", "unit").trials[0].state == TrialState.FAIL


def test_the_references_are_proposed_after_the_first_trials(tmp_path):
    """Run first, the reference configurations would meet ASHA's rungs empty, and be promoted
    whatever their score: they come after ``references_after`` proposals, as they are."""
    from search.space import points_to_evaluate

    profile = PROFILES["smoke"]
    references = list(points_to_evaluate(profile).values())
    assert references
    searcher = StudySearch(space=SearchSpace(profile, 3, 0), max_epochs=3, sampler=make_sampler("random", 0, 8),
                           storage=journal_storage(tmp_path / "optuna.journal"), study_name="refs",
                           references=references, references_after=2)
    configs = [searcher.suggest(f"t{i}") for i in range(2 + len(references) + 1)]

    def is_reference(config, point):
        return all(config[k] == v for k, v in point.items())
    assert not any(is_reference(c, p) for c in configs[:2] for p in references)
    for config, point in zip(configs[2:], references):
        assert is_reference(config, point)
    assert not any(is_reference(configs[-1], p) for p in references)
