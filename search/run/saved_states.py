"""What the driver's callbacks carry across ``--resume``, saved by name.

Ray Tune saves its callbacks' states with every experiment checkpoint (``callback-states-*.pkl``)
as a dict keyed by each callback's place in the list it was given, and on restore hands entry ``i``
to the callback now at place ``i``. So this search gives Ray one stateful callback, ``SavedStates``,
always first in its list, which saves the parts it is given by name: the scheduler's decision state
(``search.run.schedulers.SchedulerState``, "scheduler") and the progress table's counts
(``search.results.progress.ProgressTable``, "progress"). Each part has ``saved_state()`` (plain
data, or None for nothing to save) and ``restore_state(state)``. The other callbacks may come and go
in any order.

**Older folders.** A search saved before this (search format 2, without a ``"by_name"`` entry)
kept the scheduler's state at place 1 and the progress table's at place 2.
``name_callback_states`` rewrites such a file by name, in place and atomically, before
``Tuner.restore`` reads it.
"""

from __future__ import annotations

import logging
import pickle
from typing import Any, Protocol

from ray.tune import Callback

__all__ = ["SavedStates", "Stateful", "BY_NAME", "OLDER_PLACES", "name_callback_states"]

log = logging.getLogger("vidseg.search")

BY_NAME = "by_name"
OLDER_PLACES = {1: "scheduler", 2: "progress"}  # where a folder saved before this kept each state
PLACE = 0  # SavedStates' place in the driver's callbacks (search.run.tuner._callbacks)


class Stateful(Protocol):
    def saved_state(self) -> Any: ...

    def restore_state(self, state: Any) -> Any: ...


class SavedStates(Callback):
    """The one callback whose state Ray Tune saves for this search: its ``parts``' states by name.
    It must be first in the callbacks given to Ray (``PLACE``)."""

    def __init__(self, **parts: Stateful) -> None:
        self.parts = parts

    def get_state(self) -> dict[str, Any] | None:
        states = {name: part.saved_state() for name, part in self.parts.items()}
        states = {name: state for name, state in states.items() if state is not None}
        return {BY_NAME: states} if states else None

    def set_state(self, state: dict[str, Any]) -> None:
        if BY_NAME not in state:
            raise ValueError(f"the callbacks' saved state has no {BY_NAME!r} entry: saved by place, "
                             "which name_callback_states rewrites before the restore")
        for name, value in state[BY_NAME].items():
            part = self.parts.get(name)
            if part is None:
                log.warning("the saved state of %r has no part in this search to go to: left", name)
                continue
            part.restore_state(value)


def name_callback_states(experiment: str) -> bool:
    """Rewrite the newest ``callback-states-*.pkl`` of ``experiment`` (a local folder or a URI) by
    name where it was saved by place (``OLDER_PLACES``); True where it did. The file is replaced
    whole: through a temporary file and a rename on a local disk, in one write in a bucket."""
    from search.run.state import filesystem
    from vidseg.data.remote import is_uri

    import pyarrow.fs as pafs

    fs, root = filesystem(experiment)
    found = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    names = sorted(info.base_name for info in found
                   if info.base_name.startswith("callback-states-") and info.base_name.endswith(".pkl"))
    if not names:
        return False
    path = f"{root}/{names[-1]}"  # the newest, as Ray's own _load_newest_checkpoint picks it
    with fs.open_input_stream(path) as stream:
        saved = pickle.loads(stream.read())
    if not isinstance(saved, dict) or any(isinstance(state, dict) and BY_NAME in state for state in saved.values()):
        return False
    named = {name: saved[place] for place, name in OLDER_PLACES.items() if saved.get(place)}
    if not named:  # nothing that any callback restores
        return False
    data = pickle.dumps({PLACE: {BY_NAME: named}})
    if is_uri(experiment):
        with fs.open_output_stream(path) as stream:
            stream.write(data)
    else:
        from pathlib import Path

        from vidseg.atomic import atomic_path

        with atomic_path(Path(path)) as tmp:
            tmp.write_bytes(data)
    log.info("%s: the callbacks' saved state rewritten by name (%s), as this version restores it",
             names[-1], ", ".join(named))
    return True
