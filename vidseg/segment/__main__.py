"""Train the UNet on a dataset root, then pre-segment every split into Arrow shards.

    python -m vidseg.segment --data data/demo/seed0 --out data/shards --size 40x60 --unet-size 80x120 --width 16
    python -m vidseg.segment --data /datasets/nyu --out shards/full --width 64 --epochs 30 --address auto

The UNet lives in SHARDS_DIR/unet/ (unet_best.pt, unet_last.pt). Reruns reuse a finished UNet and
finished shards, and resume an interrupted UNet training or pre-segmentation.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from vidseg.errors import InputError
from vidseg.segment.presegment import presegment
from vidseg.segment.train import UNetConfig, train_unet
from vidseg.task import FRAME_SIZE

log = logging.getLogger("vidseg.segment")


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HxW, e.g. {FRAME_SIZE[0]}x{FRAME_SIZE[1]}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return h, w


def build_parser() -> argparse.ArgumentParser:
    defaults = UNetConfig()
    parser = argparse.ArgumentParser(prog="python -m vidseg.segment", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="dataset root in the competition layout")
    parser.add_argument("--out", type=Path, required=True, help="shard folder to write (SHARDS_DIR)")
    parser.add_argument("--size", type=_size, default=FRAME_SIZE, metavar="HxW",
                        help=f"resolution of the shards' masks (default {FRAME_SIZE[0]}x{FRAME_SIZE[1]}; masks are "
                             "downscaled by nearest)")
    parser.add_argument("--unet-size", type=_size, default=None, metavar="HxW",
                        help="resolution the UNet trains and segments at (default: --size; frames are "
                             "downscaled by area)")
    parser.add_argument("--crop", type=_size, default=None, metavar="HxW",
                        help="train on random HxW crops at --unet-size, without rescaling (default: the paper's "
                             "scale-changing crops of whole frames); 96x128 of a full frame trains 3x faster a frame")
    parser.add_argument("--foreground-crops", type=float, default=defaults.foreground_crops, metavar="P",
                        help="with --crop: the share of crops centred on an object pixel rather than placed at "
                             "random (default 0; nnU-Net uses 0.33)")
    parser.add_argument("--width", type=int, default=defaults.width, help=f"UNet width; 64 is the paper's (default {defaults.width})")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help=f"UNet epochs (default {defaults.epochs})")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr, help=f"Adam learning rate (default {defaults.lr})")
    parser.add_argument("--background-weight", type=float, default=defaults.background_weight,
                        help=f"cross-entropy weight of class 0 (default {defaults.background_weight})")
    parser.add_argument("--train-frame-stride", type=int, default=defaults.train_frame_stride,
                        help="train on every k-th frame per epoch, a different offset each epoch (default 1: all)")
    parser.add_argument("--val-frame-stride", type=int, default=defaults.val_frame_stride,
                        help="validate the UNet on every k-th frame (default 1: all)")
    parser.add_argument("--max-train-videos", type=int, default=None, help="train the UNet on at most N videos")
    parser.add_argument("--num-workers", type=int, default=defaults.num_workers, help="DataLoader processes")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--videos-per-shard", type=int, default=64)
    parser.add_argument("--address", default=None, help="Ray cluster to pre-segment on (default: a local Ray)")
    parser.add_argument("--no-ray", action="store_true", help="pre-segment in this process, without Ray")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.videos_per_shard < 1:
            raise InputError(f"--videos-per-shard is {args.videos_per_shard}, but must be >= 1")
        config = UNetConfig(width=args.width, size=args.unet_size or args.size, epochs=args.epochs,
                            batch_size=args.batch_size, lr=args.lr, background_weight=args.background_weight,
                            train_frame_stride=args.train_frame_stride, val_frame_stride=args.val_frame_stride,
                            max_train_videos=args.max_train_videos, crop=args.crop,
                            foreground_crops=args.foreground_crops,
                            num_workers=args.num_workers, seed=args.seed)
        result = train_unet(args.data, args.out / "unet", config, device=args.device, progress=not args.quiet)
        log.info("UNet: %s, val IoU %.4f", result.checkpoint, result.val_iou)
        manifest = presegment(args.data, args.out, result.checkpoint, out_size=args.size,
                              videos_per_shard=args.videos_per_shard, address=args.address,
                              use_ray=not args.no_ray, device=args.device, progress=not args.quiet)
    except InputError as err:  # LayoutError, ShardError and CheckpointError included
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err.filename or args.out}: {err.strerror or err}", file=sys.stderr)
        return 2
    print(f"shards ready: {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
