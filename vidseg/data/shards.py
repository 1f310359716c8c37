"""Pre-segmented masks in Arrow IPC shards, memory-mapped and read zero-copy.

A shard set is a folder:

    SHARDS_DIR/manifest.json          schema version, resolution, splits, shards, UNet provenance
    SHARDS_DIR/train-00000.arrow      one record batch: video_id, unet_masks[, true_masks]
    ...

Each mask column is a ``fixed_size_list<uint8>[T*H*W]``, so one shard's masks are one contiguous
buffer that numpy views as (N, T, H, W) without a copy. Labeled splits carry the true masks
beside the UNet's, which may cover only the first frames (``unet_frames``: a labeled split's input
frames, the only ones the trials read). Every problem raises :class:`ShardError`, whose message names the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vidseg.atomic import atomic_path
from vidseg.errors import InputError

__all__ = [
    "SCHEMA_VERSION",
    "MANIFEST",
    "ShardError",
    "shard_schema",
    "write_shard",
    "read_shard",
    "ShardInfo",
    "ShardedArray",
    "SplitShards",
    "ShardSet",
    "write_manifest",
    "sha256_file",
]

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
_META = "vidseg."


class ShardError(InputError):
    """A shard set's file is missing, damaged, or disagrees with the manifest; ``path`` names it."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shard_schema(split: str, frames: int, height: int, width: int, labeled: bool, unet_sha256: str,
                 unet_frames: int | None = None) -> pa.Schema:
    """The schema of one shard; its metadata says what the flat mask lists mean. ``unet_frames``
    (default ``frames``) is how many of the first frames the UNet's masks cover: the trials read a
    labeled split's UNet masks of the input frames only (``vidseg.segment.presegment.UNET_FRAMES``)."""
    unet_frames = frames if unet_frames is None else unet_frames
    mask_type = pa.list_(pa.uint8(), frames * height * width)
    fields = [pa.field("video_id", pa.int64(), nullable=False),
              pa.field("unet_masks", pa.list_(pa.uint8(), unet_frames * height * width), nullable=False)]
    if labeled:
        fields.append(pa.field("true_masks", mask_type, nullable=False))
    metadata = {"schema_version": SCHEMA_VERSION, "split": split, "frames": frames, "height": height,
                "width": width, "unet_sha256": unet_sha256, "unet_frames": unet_frames}
    return pa.schema(fields, metadata={f"{_META}{k}": str(v) for k, v in metadata.items()})


def _mask_column(masks: np.ndarray, list_size: int) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(masks, dtype=np.uint8).reshape(-1), type=pa.uint8())
    return pa.FixedSizeListArray.from_arrays(flat, list_size)


def write_shard(path: Path, split: str, video_ids: np.ndarray, unet_masks: np.ndarray,
                true_masks: np.ndarray | None, unet_sha256: str) -> None:
    """Write one shard atomically (temporary file, then rename): masks are (N, T, H, W) uint8; the
    UNet's may cover only the first of the true masks' frames."""
    n, unet_frames, height, width = unet_masks.shape
    frames = unet_frames if true_masks is None else true_masks.shape[1]
    if len(video_ids) != n or (true_masks is not None and (
            true_masks.shape[0] != n or true_masks.shape[2:] != (height, width) or unet_frames > frames)):
        raise ValueError(f"{path}: {len(video_ids)} ids, UNet masks {unet_masks.shape}, "
                         f"true masks {None if true_masks is None else true_masks.shape} do not agree")
    schema = shard_schema(split, frames, height, width, true_masks is not None, unet_sha256, unet_frames)
    columns = [pa.array(np.asarray(video_ids, dtype=np.int64)), _mask_column(unet_masks, unet_frames * height * width)]
    if true_masks is not None:
        columns.append(_mask_column(true_masks, frames * height * width))
    batch = pa.record_batch(columns, schema=schema)
    with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        writer.write_batch(batch)


@dataclass(frozen=True)
class ShardInfo:
    """What a shard holds, read from its own schema and ids."""

    split: str
    frames: int
    height: int
    width: int
    labeled: bool
    unet_sha256: str
    video_ids: list[int]
    unet_frames: int = 0  # the first frames the UNet's masks cover


def read_shard(path: Path) -> tuple[ShardInfo, np.ndarray, np.ndarray | None]:
    """Memory-map one shard: ``(info, unet (N, T, H, W), true (N, T, H, W) or None)``, zero-copy views."""
    try:
        source = pa.memory_map(str(path), "r")
        reader = pa.ipc.open_file(source)
    except FileNotFoundError:
        raise ShardError(path, "missing shard") from None
    except (pa.ArrowInvalid, OSError) as err:
        raise ShardError(path, f"not a readable Arrow IPC file, truncated or damaged ({err})") from None
    meta = {k.decode(): v.decode() for k, v in (reader.schema.metadata or {}).items() if k.startswith(_META.encode())}
    try:
        info = ShardInfo(meta[f"{_META}split"], int(meta[f"{_META}frames"]), int(meta[f"{_META}height"]),
                         int(meta[f"{_META}width"]), "true_masks" in reader.schema.names,
                         meta[f"{_META}unet_sha256"], [])
        version = int(meta[f"{_META}schema_version"])
        info = dataclasses.replace(info, unet_frames=int(meta.get(f"{_META}unet_frames", info.frames)))
    except (KeyError, ValueError):
        raise ShardError(path, "wrong schema: missing vidseg metadata") from None
    if version != SCHEMA_VERSION:
        raise ShardError(path, f"wrong schema: version {version}, this reader knows {SCHEMA_VERSION}")
    expected = shard_schema(info.split, info.frames, info.height, info.width, info.labeled, info.unet_sha256,
                            info.unet_frames)
    if not reader.schema.equals(expected, check_metadata=False):
        raise ShardError(path, f"wrong schema: {reader.schema.to_string(show_schema_metadata=False)!r}")
    if reader.num_record_batches != 1:
        raise ShardError(path, f"wrong layout: {reader.num_record_batches} record batches, expected 1")
    try:
        batch = reader.get_batch(0)
    except (pa.ArrowInvalid, OSError) as err:
        raise ShardError(path, f"truncated or damaged record batch ({err})") from None
    def view(name: str, frames: int) -> np.ndarray:
        column = batch.column(name)
        return column.values.to_numpy(zero_copy_only=True).reshape(batch.num_rows, frames, info.height, info.width)

    ids = batch.column("video_id").to_numpy().tolist()
    info = dataclasses.replace(info, video_ids=ids)
    return info, view("unet_masks", info.unet_frames), view("true_masks", info.frames) if info.labeled else None


class ShardedArray:
    """The masks of a split across its shards: (N, T, H, W), each shard a zero-copy view."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        self.parts = parts
        self._starts = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.parts[0].shape[1:]) if self.parts else (0,)

    def __getitem__(self, index: int) -> np.ndarray:
        """One video's masks (T, H, W), a view into its shard."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"video index {index} out of range for {len(self)} videos")
        index %= len(self)
        part = int(np.searchsorted(self._starts, index, side="right")) - 1
        return self.parts[part][index - self._starts[part]]

    def take(self, indices) -> np.ndarray:
        """Several videos stacked into a new array (a batch)."""
        return np.stack([self[int(i)] for i in indices])


@dataclass
class SplitShards:
    name: str
    frames: int
    video_ids: np.ndarray  # (N,)
    unet: ShardedArray  # the UNet's masks, of the first ``unet_frames`` frames
    true: ShardedArray | None  # the true masks (labeled splits only)
    unet_frames: int = 0

    def __len__(self) -> int:
        return len(self.video_ids)


class ShardSet:
    """A shard folder opened by its manifest. ``ShardSet.open(dir).split("val").true[0]`` is a view."""

    def __init__(self, root: Path, manifest: dict[str, Any], splits: dict[str, SplitShards]) -> None:
        self.root = root
        self.manifest = manifest
        self._splits = splits

    @property
    def resolution(self) -> tuple[int, int]:
        return self.manifest["resolution"]["height"], self.manifest["resolution"]["width"]

    @property
    def splits(self) -> list[str]:
        return list(self._splits)

    def split(self, name: str) -> SplitShards:
        if name not in self._splits:
            raise ShardError(self.root / MANIFEST, f"no split {name!r}; it has {', '.join(self._splits) or 'none'}")
        return self._splits[name]

    @classmethod
    def open(cls, root: Path | str, verify: bool = True) -> "ShardSet":
        """Open and validate every shard; ``verify`` also checks each file's SHA-256."""
        root = Path(root)
        manifest = load_manifest(root)
        height, width = manifest["resolution"]["height"], manifest["resolution"]["width"]
        splits = {}
        for name, entry in manifest["splits"].items():
            unet_parts, true_parts, ids = [], [], []
            for shard in entry["shards"]:
                path = root / shard["file"]
                if not path.is_file():
                    raise ShardError(path, "missing shard listed in the manifest")
                size = path.stat().st_size
                if size != shard["bytes"]:
                    raise ShardError(path, f"truncated or changed: {size} bytes, the manifest says {shard['bytes']}")
                if verify and sha256_file(path) != shard["sha256"]:
                    raise ShardError(path, "checksum mismatch: the file differs from the one the manifest lists")
                info, unet, true = read_shard(path)
                expected = (name, entry["frames"], height, width, entry["labeled"], shard["video_ids"],
                            manifest["unet"]["sha256"], entry.get("unet_frames", entry["frames"]))
                found = (info.split, info.frames, info.height, info.width, info.labeled, info.video_ids,
                         info.unet_sha256, info.unet_frames)
                if found != expected:
                    what = [f for f, a, b in zip(("split", "frames", "height", "width", "labeled", "video ids",
                                                  "UNet", "UNet frames"), found, expected) if a != b]
                    raise ShardError(path, f"disagrees with the manifest on {', '.join(what)}")
                unet_parts.append(unet)
                if true is not None:
                    true_parts.append(true)
                ids += info.video_ids
            splits[name] = SplitShards(name, entry["frames"], np.asarray(ids, dtype=np.int64),
                                       ShardedArray(unet_parts), ShardedArray(true_parts) if entry["labeled"] else None,
                                       entry.get("unet_frames", entry["frames"]))
        return cls(root, manifest, splits)


def load_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ShardError(path, "missing manifest: not a finished shard set") from None
    except (OSError, ValueError) as err:
        raise ShardError(path, f"unreadable manifest ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
        found = manifest.get("schema_version") if isinstance(manifest, dict) else None
        raise ShardError(path, f"schema version {found}, this reader knows {SCHEMA_VERSION}")
    try:
        int(manifest["resolution"]["height"]), int(manifest["resolution"]["width"]), manifest["unet"]["sha256"]
        for entry in manifest["splits"].values():
            int(entry["frames"]), bool(entry["labeled"])
            for shard in entry["shards"]:
                str(shard["file"]), int(shard["bytes"]), str(shard["sha256"]), list(shard["video_ids"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ShardError(path, f"malformed manifest ({type(err).__name__}: {err})") from None
    return manifest


def write_manifest(root: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically."""
    path = root / MANIFEST
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"schema_version": SCHEMA_VERSION, **manifest}, indent=1))
    return path
