"""The driver's Ray Tune callback: what the search's driver does between Tune's steps, beside the
stop path it serves (``search.run.stops``).

- Every trial, restored ones included, gets the ``--max-failures`` given now (a restored trial
  keeps the count it was created with otherwise).
- It arms the one stop path (``STOP``) while Tune's loop runs, and asks for a stop there on a full
  disk: a trial's error, or the searcher's, or free space below the reserve of a ``SpaceGuard``
  (local storage), as a ``DiskFull`` naming the path.
- It keeps a whole copy of Ray Tune's state aside (``keep_tune_state``), for a resume after a full
  disk cut Tune's last save short, at most a twentieth of the driver's time.
- It stamps each result with when the search decided on it (``decided_at``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ray.tune import Callback

from search.run.ray_internals import driver_staging, keep_tune_state
from search.run.stops import (SAVE_WATCH, STOP, DiskFull, SpaceGuard, disk_full_seen, no_space,
                              quiet_no_space_tracebacks, trial_disk_full)

__all__ = ["DriverCallback", "KEEP_EVERY_S", "KEEP_SHARE"]

log = logging.getLogger("vidseg.search")

KEEP_EVERY_S = 1.0  # how often the driver looks for a newer whole Ray Tune state to copy aside (it saves every 5 s here)
KEEP_SHARE = 20  # ... or, where looking takes longer, that many times what it took (at most a twentieth of its time)


class DriverCallback(Callback):
    """``max_failures`` for every trial; a full disk in ``experiment`` (the path said where an error
    names none) or under ``guard``'s reserve stops the search; Ray Tune's state kept aside."""

    def __init__(self, max_failures: int, experiment: str, guard: SpaceGuard | None = None) -> None:
        self.max_failures, self.experiment, self.guard = max_failures, experiment, guard
        self._kept, self._every = -float("inf"), KEEP_EVERY_S

    def setup(self, **info) -> None:
        quiet_no_space_tracebacks()  # Ray's handlers, as Tune set them up
        STOP.armed = True  # Tune's loop is about to run, its SIGUSR1 handler in place

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        for trial in trials:
            trial.max_failures = self.max_failures
        if STOP.why is not None:
            return
        seen = disk_full_seen()
        if seen is not None:
            path, err = seen
            log.error("no space left on device: %s (%s)", path, err.strerror or err)
            STOP.request(DiskFull(getattr(err, "filename", None) or path, trials_started=True))
            return
        low = self.guard.check() if self.guard is not None else None
        if low is not None:
            log.error("stopping the search: %s", low.message().removeprefix("error: ").split("; free")[0])
            STOP.request(low)
            return
        staging = SAVE_WATCH.staging = driver_staging(trials) or SAVE_WATCH.staging
        if self.guard is not None and staging is not None and time.monotonic() - self._kept > self._every:
            self._keep(staging)

    def _keep(self, staging) -> None:
        """A whole copy of Ray Tune's state, for a resume after a full disk cut it short."""
        self._kept = time.monotonic()
        try:
            keep_tune_state(self.guard.folder, staging)
        except OSError as err:
            if no_space(err) is None:
                log.warning("could not copy Ray Tune's state aside: %s", err)
            else:
                STOP.request(DiskFull(self.guard.folder, trials_started=True))
        # checking a large search's state takes a while (its files grow with the trials: 17 MB at 512
        # trials): at most a twentieth of the driver's time, so that its loop keeps up with the trials
        self._every = max(KEEP_EVERY_S, KEEP_SHARE * (time.monotonic() - self._kept))

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        """Each result gets ``decided_at``, the driver's wall clock once Tune's stopper and scheduler
        have decided on it (Tune lets callbacks add to a result before its loggers write it): the
        order the search decided in, which a trial's own timestamps do not give where two report
        at once (the rehearsal's tests replay the decisions in it)."""
        result["decided_at"] = time.time()

    def on_checkpoint(self, iteration: int, trials: list, trial, checkpoint, **info) -> None:
        if self.guard is not None and getattr(checkpoint, "path", None):
            self.guard.saw_checkpoint(checkpoint.path)

    def _trial_failed(self, trial) -> None:
        full = no_space(trial_disk_full(trial))
        if full is not None and STOP.why is None:
            path = full.filename or f"{self.experiment}/{Path(str(trial.local_path or trial.trial_id)).name}"
            log.error("no space left on device: trial %s could not write to %s", trial.trial_id, path)
            STOP.request(DiskFull(path, trials_started=True))

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self._trial_failed(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._trial_failed(trial)
