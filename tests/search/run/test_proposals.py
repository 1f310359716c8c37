"""The order of a search's proposals: the live searcher, driven as Ray Tune drives it at a
concurrency, against ``search.run.proposals``, which the cost estimate follows."""

from __future__ import annotations

import random

import pytest

from search.run.proposals import GUIDED, RANDOM, REFERENCE, proposal_order
from search.run.settings import Settings
from search.run.tuner import make_searcher
from search.space import PROFILES, points_to_evaluate
from search.tools.estimate import configurations


def _live(settings: Settings, profile, tmp_path) -> list[dict]:
    """The configurations the search's own searcher proposes, driven as Ray Tune's concurrency
    limiter drives it: ``max_concurrent`` trials proposed at once, then one more as each ends (the
    oldest first, every one run to its last epoch with a made-up val IoU)."""
    searcher = make_searcher(settings, profile, tmp_path / "optuna.journal", "order")
    scores, running, proposed = random.Random(1), [], []
    while len(proposed) < settings.num_samples:
        while len(running) < settings.max_concurrent and len(proposed) < settings.num_samples:
            trial_id = f"t{len(proposed)}"
            proposed.append(searcher.suggest(trial_id))
            running.append(trial_id)
        ended = running.pop(0)
        searcher.on_trial_complete(ended, {"val_iou": scores.random(), "epoch": settings.max_epochs})
    return proposed


def _same(config: dict, point: dict) -> bool:
    return all(config.get(k) == v for k, v in point.items())


@pytest.mark.parametrize(("profile_name", "searcher", "scheduler", "concurrency", "trials"), [
    ("full", "tpe", "asha", 1, 20), ("full", "tpe", "asha", 2, 20), ("full", "tpe", "asha", 8, 24),
    ("full", "tpe", "asha", 64, 76), ("full", "tpe", "asha", 512, 524), ("demo", "tpe", "asha", 2, 16),
    ("demo", "random", "asha", 8, 24), ("demo", "tpe", "fifo", 4, 14),
])
def test_the_live_searcher_proposes_in_the_order_the_estimate_follows(tmp_path, profile_name, searcher, scheduler,
                                                                        concurrency, trials):
    """Every proposal is what ``proposal_order`` says: a reference configuration at its place, the
    sampler's r-th random draw (as ``configurations`` draws them for the estimate, seeded alike), or
    a guided one (TPE's own: not the random draw that would come next)."""
    profile = PROFILES[profile_name]
    settings = Settings(profile_name, trials, 3, 1, 3, concurrency, searcher=searcher, scheduler=scheduler)
    references = list(points_to_evaluate(profile).values())
    order = proposal_order(searcher, scheduler, trials, concurrency, len(references))
    kinds = order.kinds()
    assert {kind for kind, _ in kinds} >= ({REFERENCE, RANDOM} | ({GUIDED} if searcher == "tpe" else set()))
    draws = configurations(profile, settings, draws=trials)[len(references):]
    live = _live(settings, profile, tmp_path)
    random_so_far = 0
    for k, (config, (kind, i)) in enumerate(zip(live, kinds)):
        if kind == REFERENCE:
            assert _same(config, references[i]), (k, kind)
        elif kind == RANDOM:
            assert config == draws[i], (k, kind, i)
            random_so_far += 1
        else:
            assert config != draws[random_so_far], (k, "a guided proposal that is the next random draw")
        assert kind == REFERENCE or not any(_same(config, point) for point in references), k


def test_the_references_come_where_all_of_them_run():
    """However many references a profile enqueues (``full``: 7), they all fit in the search's trials,
    after two rounds of concurrent trials where there is room for that."""
    for name in ("full", "demo", "smoke"):
        count = len(points_to_evaluate(PROFILES[name]))
        for trials, concurrency in ((count, 1), (count + 2, 4), (16, 2), (64, 8), (1024, 512)):
            order = proposal_order("tpe", "asha", trials, concurrency, count)
            assert [k for k, (kind, _) in enumerate(order.kinds()) if kind == REFERENCE] == \
                list(range(order.references_after, order.references_after + count)), (name, trials, concurrency)
            assert order.references_after == min(2 * concurrency, trials - count)
    assert len(points_to_evaluate(PROFILES["full"])) == 7
