"""A search's saved state: ``STORAGE/NAME/search.json``, and the storage it lives in.

``search.json`` is our own record of a search (its ``Settings``, its shards, where they came
from, the hidden answers), written atomically before the first trial, so that ``--resume`` can
continue it. Storage is a local path or a cloud URI (``pyarrow.fs``). The Optuna study's journal
lives beside it (``study_path``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from search.run.settings import Settings, UsageError
from search.space import PROFILES
from vidseg.data.remote import is_uri

__all__ = ["STATE", "SearchState", "storage_root", "local_path", "filesystem", "read_state", "write_state",
           "latest_experiment", "check_storage", "study_path", "new_search", "save_new", "check_format", "FORMAT"]

STATE = "search.json"
STUDY = "optuna.journal"
# The layout of a search folder that this version resumes: search.json's fields, and the classes that
# Ray Tune's pickled state names (the searcher, GrowingSearch, the callbacks with their saved states).
# 1 (no "format" field): a folder whose pickled state names those classes in search.tuner and search.schedulers.
FORMAT = 2


@dataclass(frozen=True)
class SearchState:
    """What ``search.json`` holds."""

    settings: Settings
    shards: str  # what the trials read (a folder, or the bucket's copy)
    shards_source: str | None = None  # the folder the shards were published from
    hidden_answers: str | None = None
    started: str = field(default_factory=lambda: datetime.now().isoformat(timespec="seconds"))
    format: int = FORMAT
    estimate: dict | None = None  # what it was expected to cost (search.tools.estimate.Estimate.to_dict)

    def to_json(self) -> str:
        return json.dumps({"format": self.format, "settings": self.settings.to_dict(), "shards": self.shards,
                           "shards_source": self.shards_source, "hidden_answers": self.hidden_answers,
                           "started": self.started, "estimate": self.estimate}, indent=2) + "\n"


def storage_root(storage: str) -> str:
    """A URI stays as it is; a local path becomes absolute (Ray Tune needs that)."""
    if is_uri(storage):
        return storage
    return str(Path(storage).expanduser().resolve())


def local_path(storage: str) -> Path | None:
    """The folder of a local storage; None for a cloud URI."""
    return None if is_uri(storage) else Path(storage)


def filesystem(storage: str):
    """(pyarrow filesystem, path) of a local path or a cloud URI (s3://, gs://, ...)."""
    import pyarrow as pa

    from vidseg.data.remote import filesystem as location_filesystem

    try:
        return location_filesystem(storage)
    except (pa.ArrowInvalid, OSError) as err:
        raise UsageError(f"--storage {storage}: {err}") from None


def read_state(storage: str, name: str) -> SearchState | None:
    """The saved state of search ``name``; None where there is none. Raises UsageError, naming the
    file, where it is damaged."""
    fs, root = filesystem(storage)
    where = f"{storage}/{name}/{STATE}"
    try:
        with fs.open_input_stream(f"{root}/{name}/{STATE}") as f:
            text = f.read().decode(errors="replace")
    except (FileNotFoundError, OSError):
        return None
    try:
        saved = json.loads(text)
    except ValueError as err:
        raise UsageError(f"{where}: not a search's saved state (invalid JSON: {err})") from None
    if not (isinstance(saved, dict) and isinstance(saved.get("settings"), dict) and "shards" in saved
            and saved["settings"].get("profile") in PROFILES):
        raise UsageError(f"{where}: not a search's saved state (no shards, or no known profile)")
    try:
        settings = Settings.from_dict(saved["settings"])
    except TypeError as err:
        raise UsageError(f"{where}: not a search's saved state ({err})") from None
    version = saved.get("format", 1)
    return SearchState(settings, saved["shards"], saved.get("shards_source"), saved.get("hidden_answers"),
                       saved.get("started", ""), version if isinstance(version, int) else 0,
                       saved.get("estimate") if isinstance(saved.get("estimate"), dict) else None)


def check_format(storage: str, name: str, state: SearchState) -> None:
    """Refuse, in one line, to resume a search folder of another format than this version's."""
    if state.format != FORMAT:
        made = "an earlier" if state.format < FORMAT else "a later"
        raise UsageError(f"{storage}/{name}: saved by {made} vidseg-search (search format {state.format}; this version "
                         f"resumes format {FORMAT}): its Ray Tune state cannot be restored here, so start a new search "
                         "with another --name (the results it has written stay readable)")


def write_state(storage: str, name: str, state: SearchState) -> None:
    """Write ``search.json``: atomically on a local disk (a killed driver leaves the old file or the
    new one); whole, as objects are, in a bucket."""
    text = state.to_json()
    local = local_path(storage)
    if local is not None:
        from vidseg.atomic import atomic_path

        (local / name).mkdir(parents=True, exist_ok=True)
        with atomic_path(local / name / STATE) as tmp:
            tmp.write_text(text)
        return
    fs, root = filesystem(storage)
    fs.create_dir(f"{root}/{name}", recursive=True)
    with fs.open_output_stream(f"{root}/{name}/{STATE}") as f:
        f.write(text.encode())


def latest_experiment(storage: str) -> str:
    """The name of the most recently started search in ``storage``."""
    import pyarrow.fs as pafs

    fs, root = filesystem(storage)
    try:
        entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    except OSError:
        entries = []
    found = [info for info in entries if info.type == pafs.FileType.Directory]
    states = [fs.get_file_info(f"{info.path}/{STATE}") for info in found]
    states = [info for info in states if info.type == pafs.FileType.File]
    if not states:
        raise UsageError(f"{storage_root(storage)}: no search to resume here")
    latest = max(states, key=lambda info: (info.mtime is not None, info.mtime))
    return Path(latest.path).parent.name


def check_storage(storage: str) -> None:
    """Fail before any work when results cannot be written to ``storage`` (a probe file, removed)."""
    import pyarrow as pa

    fs, root = filesystem(storage)
    probe = f"{root}/.vidseg-write-test-{os.getpid()}"
    try:
        fs.create_dir(root, recursive=True)
        with fs.open_output_stream(probe) as f:
            f.write(b"ok")
        fs.delete_file(probe)
    except (OSError, pa.ArrowException) as err:
        reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
        raise UsageError(f"--storage {storage}: not writable ({reason})") from None


def study_path(storage: str, name: str) -> Path:
    """The Optuna journal of search ``name``: in the experiment folder for a local storage; for a
    cloud storage, in a driver-local folder (the report uploads a copy beside the results)."""
    local = local_path(storage)
    if local is not None:
        return Path(storage_root(storage)) / name / STUDY
    key = hashlib.sha256(storage.encode()).hexdigest()[:12]  # two storages' searches of one name stay apart
    path = Path(tempfile.gettempdir()) / "vidseg-studies" / f"{key}-{name}" / STUDY
    if not path.is_file():  # a resume on another driver: the copy uploaded with the last results, if any
        fs, root = filesystem(storage)
        try:
            with fs.open_input_stream(f"{root}/{name}/{STUDY}") as f:
                data = f.read()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except (FileNotFoundError, OSError):
            pass
    return path


def new_search(storage: str, name: str, probe: bool = True) -> str:
    """``name``, after checking that no search of that name exists in ``storage`` and (unless
    ``probe`` is False) that the storage is writable. Raises UsageError. A folder that holds only a
    driver's holder file is no search (``search.run.lock`` decides whether that driver still runs)."""
    from search.run.lock import holds_nothing_else

    local = local_path(storage)
    folder = local / name if local is not None else None
    held_only = folder is not None and folder.is_dir() and any(folder.iterdir()) and holds_nothing_else(folder)
    if read_state(storage, name) is not None or (folder is not None and folder.exists() and not held_only):
        raise UsageError(f"{storage}/{name} already exists: pass --resume to continue it, or another --name")
    if probe:
        check_storage(storage)
    return name


def save_new(storage: str, name: str, settings: Settings, shards: str, hidden_answers: Path | None,
             estimate: dict | None = None) -> SearchState:
    """Save a new search's state before its first trial; for a cloud storage, the shards are
    published to the bucket first, so that trials on every node read them from there."""
    source = shards
    if shards and is_uri(storage) and not is_uri(shards):  # a simulated search has none
        from vidseg.data.remote import publish_shards

        shards = publish_shards(shards, f"{storage}/shards/{Path(shards).name}")
    saved = SearchState(settings, shards, source, str(hidden_answers.resolve()) if hidden_answers else None,
                        estimate=estimate)
    write_state(storage, name, saved)
    return saved
