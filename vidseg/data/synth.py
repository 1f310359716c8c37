"""A physics-based stand-in for the competition dataset, written in its exact on-disk layout.

Scenes are simulated with pybullet (Bullet, the engine CLEVRER was made with) and rendered with
its CPU TinyRenderer, whose segmentation buffer gives exact masks. Shadows and metal highlights
are added by :mod:`vidseg.data.render`.

    python -m vidseg.data.synth --out data/demo --train 40 --val 20 --unlabeled 20 --hidden 10
    python -m vidseg.data.check data/demo

Each video is generated from its own seed (the run's seed and the video id), so output does not
depend on the number of workers, and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing as mp
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vidseg.atomic import atomic_path
from vidseg.data import classes
from vidseg.data.layout import FRAMES, SPLITS, video_name
from vidseg.data.render import Camera, Solid, shade
from vidseg.errors import InputError
from vidseg.task import LAST_INPUT, TARGET, TOTAL_FRAMES

__all__ = [
    "GENERATOR_VERSION",
    "SynthConfig",
    "ObjectSpec",
    "SceneSpec",
    "Clip",
    "sample_scene",
    "simulate",
    "generate",
    "main",
]

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1.1"  # bump whenever the same seed would give other files
HIDDEN_FRAMES = FRAMES["hidden"]
MAX_OBJECTS = 16  # more do not fit the floor without overlap
ROLES = ("rest", "slide", "enter")
_BASE_HALF_SIZE = {"cube": 0.34, "sphere": 0.4, "cylinder": 0.36}


@dataclass(frozen=True)
class SynthConfig:
    """Everything that shapes the generated videos."""

    seed: int = 0
    width: int = 240  # frame width in pixels (the competition's)
    height: int = 160  # frame height in pixels
    num_frames: int = TOTAL_FRAMES
    min_objects: int = 3
    max_objects: int = 8
    motion: float = 1.0  # scales every initial speed; 0 gives still scenes
    frame_dt: float = 0.1  # seconds of simulated time between frames
    physics_hz: int = 240
    role_weights: tuple[float, float, float] = (0.3, 0.45, 0.25)  # rest, slide, enter
    aim_probability: float = 0.5  # chance that a mover heads for another object
    speed_range: tuple[float, float] = (1.0, 2.6)  # world units per second, before `motion`
    size_jitter: tuple[float, float] = (0.8, 1.25)
    floor_friction: float = 0.05
    restitution: float = 0.6

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects <= MAX_OBJECTS:
            raise InputError(f"need 1 <= min_objects <= max_objects <= {MAX_OBJECTS}, "
                             f"got {self.min_objects}..{self.max_objects}")
        if self.seed < 0:
            raise InputError(f"seed is {self.seed}, but must be >= 0")
        if self.motion < 0:
            raise InputError(f"motion is {self.motion}, but must be >= 0")
        if self.num_frames < 2 or self.width < 8 or self.height < 8:
            raise InputError("num_frames must be >= 2 and the frame at least 8x8")


@dataclass(frozen=True)
class ObjectSpec:
    class_id: int
    half_size: float
    position: tuple[float, float]  # floor (x, y) at frame 0
    yaw: float
    velocity: tuple[float, float]  # initial floor velocity
    role: str  # one of ROLES

    @property
    def attributes(self) -> classes.ObjectClass:
        return classes.attributes(self.class_id)


@dataclass(frozen=True)
class SceneSpec:
    objects: tuple[ObjectSpec, ...]


@dataclass
class Clip:
    """One simulated, rendered video."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    masks: np.ndarray  # (T, H, W) uint8 class ids
    contacts: list[tuple[int, int]] = field(default_factory=list)  # class-id pairs that touched
    scene: SceneSpec | None = None


# --------------------------------------------------------------------------- camera and light

_EYE = (0.0, -5.2, 6.6)
_TARGET = (0.0, 0.6, 0.0)
_FOV_DEG = 37.0
LIGHT_DIR = np.array([-0.45, -0.35, 1.0]) / np.linalg.norm([-0.45, -0.35, 1.0])


def _pybullet():
    import pybullet

    return pybullet


def make_camera(width: int, height: int) -> Camera:
    pb = _pybullet()

    view = pb.computeViewMatrix(_EYE, _TARGET, (0.0, 0.0, 1.0))
    proj = pb.computeProjectionMatrixFOV(_FOV_DEG, width / height, 0.1, 60.0)
    return Camera(tuple(view), tuple(proj), width, height)


def _project(camera: Camera, xy: np.ndarray) -> np.ndarray:
    """Pixel (col, row) of floor points (N, 2)."""
    pts = np.concatenate([xy, np.zeros((len(xy), 1)), np.ones((len(xy), 1))], 1)
    clip = pts @ camera.clip_matrix.T
    ndc = clip[:, :2] / clip[:, 3:4]
    col = (ndc[:, 0] + 1) / 2 * camera.width
    row = (1 - ndc[:, 1]) / 2 * camera.height
    return np.stack([col, row], 1)


def _in_view(camera: Camera, xy: np.ndarray, margin_px: float) -> np.ndarray:
    px = _project(camera, np.atleast_2d(xy))
    return (
        (px[:, 0] >= margin_px)
        & (px[:, 0] <= camera.width - margin_px)
        & (px[:, 1] >= camera.height * 0.12 + margin_px)  # keep clear of the far horizon
        & (px[:, 1] <= camera.height - margin_px)
    )


# --------------------------------------------------------------------------- scene sampling


def _video_rng(seed: int, video_id: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, video_id]))


def sample_scene(rng: np.random.Generator, config: SynthConfig, camera: Camera) -> SceneSpec:
    """Draw objects with unique attribute triples; some at rest, some sliding, some entering."""
    n = int(rng.integers(config.min_objects, config.max_objects + 1))
    class_ids = rng.choice(np.arange(1, classes.NUM_CLASSES), size=n, replace=False)
    roles = list(rng.choice(ROLES, size=n, p=np.asarray(config.role_weights) / sum(config.role_weights)))
    if "rest" not in roles and "slide" not in roles:
        roles[0] = "slide"  # something must be in view at frame 0
    if config.motion > 0 and roles.count("rest") == n:
        roles[int(rng.integers(n))] = "slide"

    sizes = [
        _BASE_HALF_SIZE[classes.attributes(int(c)).shape] * rng.uniform(*config.size_jitter) for c in class_ids
    ]
    placed: list[tuple[np.ndarray, float]] = []

    def free(xy: np.ndarray, r: float) -> bool:
        return all(np.linalg.norm(xy - q) > r + rq + 0.15 for q, rq in placed)

    def interior_point(r: float) -> np.ndarray:
        for _ in range(500):
            xy = rng.uniform((-5.5, -3.5), (5.5, 7.0))
            if _in_view(camera, xy, margin_px=14)[0] and free(xy, r):
                return xy
        raise ValueError(f"could not place {n} objects without overlap; lower max_objects")

    order = sorted(range(n), key=lambda i: roles[i] == "enter")  # in-view objects first
    objects: dict[int, ObjectSpec] = {}
    for i in order:
        cid, r, role = int(class_ids[i]), float(sizes[i]), str(roles[i])
        speed = rng.uniform(*config.speed_range) * config.motion
        if role == "enter":
            target = rng.uniform((-3.0, -1.5), (3.0, 4.5))
            for _ in range(200):
                angle = rng.uniform(0, 2 * math.pi)
                direction = np.array([math.cos(angle), math.sin(angle)])
                xy = target.copy()
                while _in_view(camera, xy, margin_px=-r * 40)[0]:  # walk back until out of sight
                    xy -= direction * 0.1
                xy -= direction * rng.uniform(0.1, 0.8)
                if free(xy, r):
                    break
            speed = max(speed, 0.6 * config.speed_range[1] * config.motion)
            velocity = direction * speed
        else:
            xy = interior_point(r)
            velocity = np.zeros(2)
            if role == "slide":
                others = [q for q, _ in placed]
                if others and rng.random() < config.aim_probability:
                    aim = others[int(rng.integers(len(others)))] - xy
                    angle = math.atan2(aim[1], aim[0]) + rng.normal(0, 0.15)
                else:
                    angle = rng.uniform(0, 2 * math.pi)
                velocity = np.array([math.cos(angle), math.sin(angle)]) * speed
        placed.append((xy, r))
        objects[i] = ObjectSpec(cid, r, (float(xy[0]), float(xy[1])), float(rng.uniform(0, 2 * math.pi)),
                                (float(velocity[0]), float(velocity[1])), role)
    return SceneSpec(tuple(objects[i] for i in range(n)))


# --------------------------------------------------------------------------- simulation

_client: int | None = None


def _connect() -> int:
    """One pybullet DIRECT client per process, reused across videos."""
    global _client
    pb = _pybullet()

    if _client is None or not pb.isConnected(_client):
        _client = pb.connect(pb.DIRECT)
    return _client


def _shape_geometry(pb, shape: str, s: float, rgba: list[float], client: int) -> tuple[int, int]:
    if shape == "cube":
        col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=[s] * 3, physicsClientId=client)
        vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[s] * 3, rgbaColor=rgba, physicsClientId=client)
    elif shape == "sphere":
        col = pb.createCollisionShape(pb.GEOM_SPHERE, radius=s, physicsClientId=client)
        vis = pb.createVisualShape(pb.GEOM_SPHERE, radius=s, rgbaColor=rgba, physicsClientId=client)
    else:
        col = pb.createCollisionShape(pb.GEOM_CYLINDER, radius=s, height=2 * s, physicsClientId=client)
        vis = pb.createVisualShape(pb.GEOM_CYLINDER, radius=s, length=2 * s, rgbaColor=rgba, physicsClientId=client)
    return col, vis


def simulate(scene: SceneSpec, config: SynthConfig, num_frames: int | None = None) -> Clip:
    """Simulate a scene with Bullet and render every frame: RGB, and masks from the seg buffer."""
    pb = _pybullet()

    client = _connect()
    num_frames = config.num_frames if num_frames is None else num_frames
    camera = make_camera(config.width, config.height)
    pb.resetSimulation(physicsClientId=client)
    pb.setGravity(0, 0, -9.81, physicsClientId=client)
    pb.setPhysicsEngineParameter(fixedTimeStep=1.0 / config.physics_hz, numSolverIterations=30,
                                 deterministicOverlappingPairs=1, physicsClientId=client)
    floor_col = pb.createCollisionShape(pb.GEOM_PLANE, physicsClientId=client)
    floor_vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[30, 30, 0.01], rgbaColor=[0.62, 0.62, 0.6, 1],
                                     visualFramePosition=[0, 0, -0.01], physicsClientId=client)
    floor = pb.createMultiBody(0, floor_col, floor_vis, physicsClientId=client)
    pb.changeDynamics(floor, -1, lateralFriction=1.0, restitution=config.restitution, physicsClientId=client)

    lut = np.zeros(len(scene.objects) + 2, dtype=np.uint8)  # body id -> class id; floor and empty -> 0
    bodies: list[tuple[int, ObjectSpec]] = []
    albedo: dict[int, tuple[float, float, float]] = {}
    for spec in scene.objects:
        a = spec.attributes
        rgb = np.asarray(classes.COLOR_RGB[a.color]) / 255.0
        if a.material == "metal":
            rgb = rgb * 0.8  # metal's diffuse is darker; its highlights come from the shader
        col, vis = _shape_geometry(pb, a.shape, spec.half_size, [*rgb, 1.0], client)
        mass = {"cube": 8.0, "sphere": 4.19, "cylinder": 6.28}[a.shape] * spec.half_size**3
        orientation = pb.getQuaternionFromEuler([0, 0, spec.yaw])
        body = pb.createMultiBody(mass, col, vis, basePosition=[*spec.position, spec.half_size],
                                  baseOrientation=orientation, physicsClientId=client)
        # Bullet combines friction by product: this is the object-floor sliding friction.
        pb.changeDynamics(body, -1, lateralFriction=config.floor_friction, rollingFriction=0.002,
                          spinningFriction=0.002, restitution=config.restitution, linearDamping=0.0,
                          angularDamping=0.05, physicsClientId=client)
        pb.resetBaseVelocity(body, linearVelocity=[*spec.velocity, 0.0], physicsClientId=client)
        if body >= len(lut):
            lut = np.pad(lut, (0, body + 1 - len(lut)))
        lut[body] = spec.class_id
        albedo[body] = tuple(float(v) for v in np.asarray(classes.COLOR_RGB[a.color]) / 255.0)
        bodies.append((body, spec))

    substeps = max(1, round(config.frame_dt * config.physics_hz))
    h, w = config.height, config.width
    frames = np.empty((num_frames, h, w, 3), dtype=np.uint8)
    masks = np.empty((num_frames, h, w), dtype=np.uint8)
    contacts: set[tuple[int, int]] = set()
    body_class = {body: spec.class_id for body, spec in bodies}
    for t in range(num_frames):
        if t:
            for _ in range(substeps):
                pb.stepSimulation(physicsClientId=client)
                for c in pb.getContactPoints(physicsClientId=client):
                    a_id, b_id = body_class.get(c[1]), body_class.get(c[2])
                    if a_id is not None and b_id is not None:
                        contacts.add((min(a_id, b_id), max(a_id, b_id)))
        _, _, rgba, depth, seg = pb.getCameraImage(
            w, h, camera.view, camera.projection, renderer=pb.ER_TINY_RENDERER, shadow=0,
            lightDirection=LIGHT_DIR.tolist(), lightAmbientCoeff=0.55, lightDiffuseCoeff=0.5,
            lightSpecularCoeff=0.0, physicsClientId=client,
        )
        seg = np.asarray(seg, dtype=np.int64).reshape(h, w)
        solids = []
        for body, spec in bodies:
            pos, orn = pb.getBasePositionAndOrientation(body, physicsClientId=client)
            rot = np.asarray(pb.getMatrixFromQuaternion(orn)).reshape(3, 3)
            solids.append(Solid(body, spec.attributes.shape, spec.half_size, np.asarray(pos), rot,
                                spec.attributes.material == "metal", albedo[body]))
        frames[t] = shade(np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4), np.asarray(depth).reshape(h, w),
                          seg, camera, LIGHT_DIR, solids)
        masks[t] = lut[np.clip(seg, 0, len(lut) - 1)] * (seg >= 0)
    return Clip(frames, masks, sorted(contacts), scene)


def render_video(video_id: int, config: SynthConfig, num_frames: int | None = None) -> Clip:
    """The deterministic clip of one video id under a config."""
    camera = make_camera(config.width, config.height)
    scene = sample_scene(_video_rng(config.seed, video_id), config, camera)
    return simulate(scene, config, num_frames)


# --------------------------------------------------------------------------- writing


def _split_plan(counts: dict[str, int]) -> list[tuple[str, int]]:
    """(split, video_id) for every video: consecutive ids across train, val, unlabeled, hidden."""
    plan, next_id = [], 0
    for split in SPLITS:
        plan += [(split, next_id + i) for i in range(counts[split])]
        next_id += counts[split]
    return plan


def _save_png(path: Path, image: np.ndarray) -> None:
    Image.fromarray(image).save(path, compress_level=3)


def _write_video(task: tuple[str, int, str, SynthConfig]) -> dict:
    """Generate one video into a temporary folder, then rename it into place (atomic)."""
    split, video_id, out, config = task
    out_dir = Path(out)
    final = out_dir / split / video_name(video_id)
    staging = out_dir / ".synth"
    meta_path = staging / f"{video_name(video_id)}.json"
    if final.is_dir() and meta_path.is_file():
        return json.loads(meta_path.read_text())
    clip = render_video(video_id, config)
    tmp = out_dir / split / f".{video_name(video_id)}.tmp"  # hidden from readers; one per video
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    frames = HIDDEN_FRAMES if split == "hidden" else config.num_frames
    for t in range(frames):
        _save_png(tmp / f"image_{t}.png", clip.frames[t])
    if split == "hidden":
        _atomic_save_npy(staging / f"{video_name(video_id)}.answer.npy", clip.masks[-1])
    elif split != "unlabeled":
        np.save(tmp / "mask.npy", clip.masks)
    meta = {
        "split": split,
        "video_id": video_id,
        "objects": [{**asdict(o), "name": classes.class_name(o.class_id)} for o in clip.scene.objects],
        "contacts": [list(c) for c in clip.contacts],
    }
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _atomic_write_text(meta_path, json.dumps(meta))
    return meta


def _atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def copy_last_frame_iou(out: Path, video_ids: list[int], split: str = "val") -> float | None:
    """Jaccard index (competition metric) of mask[10] taken as mask[21], over a split."""
    import torch

    from vidseg.metrics import JaccardAccumulator

    if not video_ids:
        return None
    acc = JaccardAccumulator()
    for vid in video_ids:
        mask = np.load(out / split / video_name(vid) / "mask.npy")
        acc.update(torch.from_numpy(mask[10].astype(np.int64)), torch.from_numpy(mask[-1].astype(np.int64)))
    return acc.compute()


def _write_videos(tasks: list, workers: int, progress: bool) -> list[dict]:
    """Every task's video written, here or in a pool of ``workers`` processes; their metadata."""
    from tqdm import tqdm

    metas: list[dict] = []
    workers = max(1, min(workers, len(tasks)))
    if workers == 1:
        with tqdm(total=len(tasks), desc="videos", unit="video", disable=not progress, dynamic_ncols=True) as bar:
            for task in tasks:
                metas.append(_write_video(task))
                bar.update()
        return metas
    # Fork the pool before tqdm starts its monitor thread.
    ctx = mp.get_context("spawn" if sys.platform == "darwin" else "fork")
    with ctx.Pool(workers) as pool:
        with tqdm(total=len(tasks), desc="videos", unit="video", disable=not progress, dynamic_ncols=True) as bar:
            for meta in pool.imap_unordered(_write_video, tasks, chunksize=1):
                metas.append(meta)
                bar.update()
        # every video made: the workers end on their own. Leaving the block at once would
        # terminate them (SIGTERM) while idle workers hold the task queue's lock, which hung a
        # CI run once, all videos written, in Pool.terminate
        pool.close()
        pool.join()
    return metas


def generate(out: Path, counts: dict[str, int], config: SynthConfig, workers: int = 1,
             progress: bool = True) -> dict:
    """Generate (or finish generating) a dataset; returns the manifest written to dataset.json."""
    out = Path(out)
    settings = {"generator_version": GENERATOR_VERSION, "config": _config_json(config), "counts": counts}
    settings_path = out / ".synth" / "settings.json"
    manifest_path = out / "dataset.json"
    if settings_path.is_file():
        if _read_json(settings_path) != settings:
            raise SettingsMismatch(f"{out}: holds an unfinished dataset made with other settings; "
                                   "use another --out, or delete it")
    elif manifest_path.is_file():
        manifest = _read_json(manifest_path)
        if {k: manifest.get(k) for k in settings} == settings:
            log.info("%s is already complete", out)
            return manifest
        raise SettingsMismatch(f"{out}: holds a finished dataset made with other settings; "
                               "use another --out, or delete it")
    elif out.exists() and any(out.iterdir()):
        raise SettingsMismatch(f"{out}: exists and is not a dataset made by this generator")
    (out / ".synth").mkdir(parents=True, exist_ok=True)
    _atomic_write_text(settings_path, json.dumps(settings))
    for split in SPLITS:
        if counts[split]:
            (out / split).mkdir(exist_ok=True)

    plan = _split_plan(counts)
    tasks = [(split, vid, str(out), config) for split, vid in plan]
    for stale in out.glob("*/.video_*.tmp"):  # left by a killed run
        shutil.rmtree(stale)
    metas = _write_videos(tasks, workers, progress)
    metas.sort(key=lambda m: m["video_id"])
    hidden_ids = [m["video_id"] for m in metas if m["split"] == "hidden"]
    if hidden_ids:
        answers = np.stack([np.load(out / ".synth" / f"{video_name(v)}.answer.npy") for v in hidden_ids])
        _atomic_save_npy(out / "hidden_answers.npy", answers)
    val_ids = [m["video_id"] for m in metas if m["split"] == "val"]
    manifest = {
        **settings,
        "layout": "NYU video segmentation prediction (DIR/{split}/video_NNNNN/image_T.png, mask.npy)",
        "resolution": {"height": config.height, "width": config.width},
        "frames": {"labeled": config.num_frames, "hidden": HIDDEN_FRAMES},
        "splits": {split: {"count": counts[split],
                           "first_video": next((v for s, v in plan if s == split), None)} for split in SPLITS},
        "hidden_answers": "hidden_answers.npy" if hidden_ids else None,
        "num_classes": classes.NUM_CLASSES,
        "classes": _class_table(),
        "motion": {
            "copy_last_frame_iou_val": copy_last_frame_iou(out, val_ids),
            "videos_with_contact": sum(bool(m["contacts"]) for m in metas) / max(len(metas), 1),
            "mean_objects": float(np.mean([len(m["objects"]) for m in metas])) if metas else 0.0,
        },
        # Hidden videos' scenes would tell which classes the target frame holds: they stay out.
        "videos": [m for m in metas if m["split"] != "hidden"],
    }
    _atomic_write_text(manifest_path, json.dumps(manifest, indent=1))
    shutil.rmtree(out / ".synth")
    return manifest


class SettingsMismatch(InputError):
    """The output folder holds data made with other settings."""


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SettingsMismatch(f"{path}: unreadable ({err})") from None
    if not isinstance(value, dict):
        raise SettingsMismatch(f"{path}: not a JSON object")
    return value


def _class_table() -> list[dict]:
    table = [{"id": 0, "name": "background", "palette": classes.PALETTE[0].tolist()}]
    for cid in range(1, classes.NUM_CLASSES):
        a = classes.attributes(cid)
        table.append({"id": cid, "name": classes.CLASS_NAMES[cid], "shape": a.shape, "material": a.material,
                      "color": a.color, "palette": classes.PALETTE[cid].tolist()})
    return table


def _config_json(config: SynthConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


# --------------------------------------------------------------------------- CLI


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vidseg.data.synth",
        description="Generate a physics-based synthetic dataset in the NYU video-segmentation-prediction "
        "layout: DIR/{train,val,unlabeled,hidden}/video_NNNNN/image_T.png (+ mask.npy), "
        "DIR/hidden_answers.npy and DIR/dataset.json. Reruns resume an interrupted run.",
    )
    parser.add_argument("--out", required=True, type=Path, help="dataset root to write")
    for split, default in (("train", 40), ("val", 20), ("unlabeled", 0), ("hidden", 0)):
        parser.add_argument(f"--{split}", type=_non_negative, default=default, metavar="N",
                            help=f"number of {split} videos (default {default})")
    parser.add_argument("--seed", type=int, default=0, help="base seed; each video derives its own (default 0)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="parallel processes (default: all cores)")
    parser.add_argument("--motion", type=float, default=SynthConfig.motion,
                        help=f"scale of initial speeds; higher makes {TARGET} differ more from {LAST_INPUT} (default 1.0)")
    parser.add_argument("--min-objects", type=int, default=SynthConfig.min_objects)
    parser.add_argument("--max-objects", type=int, default=SynthConfig.max_objects)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = SynthConfig(seed=args.seed, motion=args.motion, min_objects=args.min_objects,
                             max_objects=args.max_objects)
        if args.workers < 1:
            raise InputError(f"--workers is {args.workers}, but must be >= 1")
        if args.out.exists() and not args.out.is_dir():
            raise InputError(f"{args.out}: exists and is not a folder")
        counts = {s: getattr(args, s) for s in SPLITS}
        if not counts["train"] or not counts["val"]:
            raise InputError("--train and --val must each be at least 1: the layout needs both splits")
        manifest = generate(args.out, counts, config, workers=args.workers, progress=not args.quiet)
    except InputError as err:  # SettingsMismatch included
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err.filename or args.out}: {err.strerror or err}", file=sys.stderr)
        return 2
    iou = manifest["motion"]["copy_last_frame_iou_val"]
    print(f"wrote {sum(counts.values())} videos to {args.out}"
          + (f"; copy-last-frame IoU on val: {iou:.3f}" if iou is not None else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
