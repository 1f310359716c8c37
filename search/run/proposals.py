"""The order in which a search proposes its trials: one rule, which the live searcher
(``search.run.tuner.make_searcher``: ``search.run.study.StudySearch`` with ``make_sampler``) and the
cost estimate (``search.tools.estimate``) both follow.

A search of ``num_samples`` trials, ``max_concurrent`` at once, proposes in this order:

- **reference configurations** (the profile's ``points_to_evaluate``), all together, once
  ``references_after`` trials were proposed: two rounds of concurrent trials, so that ASHA has rungs
  to compare them with (on empty rungs it promotes anything), and never so late that they would not
  run; first under FIFO, which compares nothing;
- **random draws** of the sampler, in its seeded order, for every other proposal of random search,
  and for TPE's while fewer than its start-up trials have ended. Ray Tune asks for a new trial as one
  ends, so the k-th proposal (from 0) comes after ``k - max_concurrent + 1`` trials ended: TPE's
  first ``startup + max_concurrent - 1`` proposals are random;
- **guided** proposals, TPE's own past those, which follow the results.

Nothing here imports Ray or Optuna.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ProposalOrder", "proposal_order", "startup_trials", "REFERENCE", "RANDOM", "GUIDED"]

REFERENCE, RANDOM, GUIDED = "reference", "random", "guided"


def startup_trials(num_samples: int, max_concurrent: int = 1) -> int:
    """TPE's random start-up trials: Optuna's 10 for big searches, half the budget (at least 3) for
    small ones, less the trials proposed while others run (TPE proposes at random until its start-up
    trials have ended, so ``max_concurrent - 1`` more random ones come anyway), and at least 3."""
    return max(3, min(10, max(3, num_samples // 2)) - (max_concurrent - 1))


@dataclass(frozen=True)
class ProposalOrder:
    """What each of a search's proposals is (the module's docstring)."""

    num_samples: int
    references: int  # how many reference configurations the profile enqueues
    references_after: int  # proposals before them
    random_until: int  # proposals before this one are random, references aside (random search: all)
    startup: int | None  # TPE's start-up trials; None for random search

    def kinds(self, n: int | None = None) -> list[tuple[str, int]]:
        """The first ``n`` proposals (all ``num_samples`` by default), each as (kind, its index among
        that kind's): ``(REFERENCE, j)`` the j-th reference configuration, ``(RANDOM, r)`` the
        sampler's r-th random draw, ``(GUIDED, g)``."""
        n = self.num_samples if n is None else n
        out: list[tuple[str, int]] = []
        counts = {REFERENCE: 0, RANDOM: 0, GUIDED: 0}
        for k in range(n):
            if self.references_after <= k < self.references_after + self.references:
                kind = REFERENCE
            else:
                kind = RANDOM if k < self.random_until else GUIDED
            out.append((kind, counts[kind]))
            counts[kind] += 1
        return out

    def random_draws(self, n: int | None = None) -> int:
        """How many of the first ``n`` proposals are the sampler's random draws."""
        return sum(kind == RANDOM for kind, _ in self.kinds(n))


def proposal_order(searcher: str, scheduler: str, num_samples: int, max_concurrent: int,
                   references: int) -> ProposalOrder:
    """The order of a search's proposals (the module's docstring), for its ``searcher`` ("tpe" or
    "random"), ``scheduler`` and size, with ``references`` reference configurations."""
    after = 0 if scheduler == "fifo" else max(0, min(2 * max_concurrent, num_samples - references))
    if searcher == "random":
        return ProposalOrder(num_samples, references, after, num_samples, None)
    startup = startup_trials(num_samples, max_concurrent)
    return ProposalOrder(num_samples, references, after, startup + max_concurrent - 1, startup)
