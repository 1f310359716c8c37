"""The demo's shipped UNet: a small checkpoint trained by this project's own recipe on the
synthetic generator, so that the demo segments well without an hour of CPU training.

    python -m vidseg.segment.pretrained                 # rebuild it from scratch (about an hour on 2 cores)
    python -m vidseg.segment.pretrained --check         # print what the shipped one is, and whether it fits

It is versioned with the generator: the checkpoint records ``GENERATOR_VERSION``, and a generator
of another version is refused with one line (its frames, and so the right masks, may differ).
Rebuilding generates the recipe's dataset (``RECIPE_DATA``, under ``--work``), trains the UNet with
``RECIPE`` (a width-16 UNet at the full frame size on 96x128 windows, half of them centred on an object), and
writes the best epoch's weights in half precision, with the recipe and the val Jaccard, to
``vidseg/segment/weights/unet-demo.pt`` (about 3.9 MB).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch

from vidseg.atomic import atomic_path
from vidseg.checkpoint import load_checkpoint, save_checkpoint
from vidseg.errors import InputError
from vidseg.task import FRAME_SIZE

__all__ = ["SHIPPED", "RECIPE", "RECIPE_DATA", "check_shipped", "export", "build", "val_jaccard"]

log = logging.getLogger("vidseg.segment")

SHIPPED = Path(__file__).parent / "weights" / "unet-demo.pt"
RECIPE_DATA = {"seed": 3, "counts": {"train": 600, "val": 50, "unlabeled": 0, "hidden": 0}}
RECIPE: dict[str, Any] = {"width": 16, "size": FRAME_SIZE, "crop": (96, 128), "foreground_crops": 0.5, "epochs": 28,
                          "batch_size": 16, "background_weight": 0.1,
                          "lr": 3e-3, "train_frame_stride": 4, "val_frame_stride": 2, "seed": 0}
COMMAND = "python -m vidseg.segment.pretrained"


def check_shipped(path: Path | str = SHIPPED) -> dict[str, Any]:
    """The shipped checkpoint's state, after checking that it exists and that it was trained on this
    generator's version. Raises ``InputError`` naming the file and what to do."""
    from vidseg.data.synth import GENERATOR_VERSION

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no shipped UNet checkpoint; build it with `{COMMAND}`, or pass --train-unet")
    state = load_checkpoint(path)
    version = state.get("generator_version")
    if version != GENERATOR_VERSION:
        raise InputError(f"{path}: trained on the synthetic generator version {version}, but this generator is "
                         f"version {GENERATOR_VERSION}, whose frames may differ; rebuild it with `{COMMAND}`, "
                         "or pass --train-unet")
    return state


def val_jaccard(data_root: Path | str, checkpoint: Path | str, split: str = "val", device: str = "auto",
                frames: int | None = None) -> float:
    """The UNet's Jaccard index over the first ``frames`` frames (default: every frame) of a dataset's
    ``split``, at the UNet's own size (frames area-downscaled, masks nearest-downscaled to it, as it
    was validated in training)."""
    import numpy as np

    from vidseg.data.layout import Dataset
    from vidseg.segment.frames import resize_images, resize_masks
    from vidseg.segment.train import evaluate, load_unet, pick_device

    dev = pick_device(device)
    model, state = load_unet(checkpoint, dev)
    model = model.to(memory_format=torch.channels_last)  # evaluate() feeds channels_last images
    size = tuple(state["config"]["size"])

    def batches():
        for video in Dataset.open(data_root).videos(split):
            images = torch.from_numpy(video.frames(size=None, count=frames)).permute(0, 3, 1, 2).float().div_(255.0)
            masks = torch.from_numpy(video.masks(size=None)[:frames].astype(np.uint8))
            yield resize_images(images, size), resize_masks(masks, size)

    return evaluate(model, batches(), dev, background_weight=state["config"].get("background_weight", 1.0))


def export(best: Path | str, out: Path | str = SHIPPED) -> Path:
    """Write the trained checkpoint ``best`` (``unet_best.pt``) as the shipped one: weights in half
    precision, the UNet's config, its val Jaccard and epoch, the recipe and the generator's version."""
    from vidseg.data.synth import GENERATOR_VERSION

    state = load_checkpoint(best)
    trained = {k: tuple(v) if isinstance(v, list) else v for k, v in state["config"].items()}
    differs = {k: trained.get(k) for k, v in RECIPE.items() if trained.get(k) != v}
    if differs:
        raise InputError(f"{best}: not trained by the recipe ({', '.join(f'{k} {v}' for k, v in differs.items())}; "
                         f"the recipe: {', '.join(f'{k} {RECIPE[k]}' for k in differs)})")
    model = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    shipped = {"model": model, "config": state["config"], "epoch": state["epoch"], "val_iou": state["val_iou"],
               "generator_version": GENERATOR_VERSION, "recipe": {k: list(v) if isinstance(v, tuple) else v
                                                                  for k, v in RECIPE.items()},
               "recipe_data": RECIPE_DATA, "command": COMMAND}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        save_checkpoint(shipped, tmp)
    return out


def build(work: Path, out: Path = SHIPPED, workers: int | None = None, progress: bool = True) -> Path:
    """Generate the recipe's dataset in ``work``, train the UNet there (resumable), export it to ``out``."""
    from vidseg.data import synth
    from vidseg.segment.train import UNetConfig, train_unet

    root = work / f"seed{RECIPE_DATA['seed']}"
    synth.generate(root, RECIPE_DATA["counts"], synth.SynthConfig(seed=RECIPE_DATA["seed"]),
                   workers=workers or os.cpu_count() or 1)
    config = UNetConfig(**RECIPE, num_workers=min(8, os.cpu_count() or 1))
    result = train_unet(root, work / "unet", config, progress=progress)
    log.info("UNet val Jaccard %.4f after %d epochs", result.val_iou, result.epochs_done)
    return export(result.checkpoint, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vidseg.segment.pretrained", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("data/pretrained"),
                        help="where the recipe's dataset and the training run go (default data/pretrained; resumable)")
    parser.add_argument("--out", type=Path, default=SHIPPED, help=f"the checkpoint to write (default {SHIPPED})")
    parser.add_argument("--from-run", type=Path, default=None, metavar="UNET_BEST",
                        help="export this unet_best.pt of a finished run of the recipe instead of training")
    parser.add_argument("--check", action="store_true", help="describe the shipped checkpoint and check its version")
    parser.add_argument("--workers", type=int, default=None, help="processes for generating the dataset")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.check:
            state = check_shipped(args.out)
            print(f"{args.out}: UNet width {state['config']['width']} at {tuple(state['config']['size'])}, val Jaccard "
                  f"{state['val_iou']:.4f} (epoch {state['epoch']}), generator {state['generator_version']}, "
                  f"{args.out.stat().st_size / 1e6:.1f} MB")
            return 0
        out = export(args.from_run, args.out) if args.from_run else build(args.work, args.out, args.workers,
                                                                           sys.stderr.isatty())
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
