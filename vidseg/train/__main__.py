"""Train one SimVP configuration on a shard set and print an epoch table.

    python -m vidseg.train --shards data/shards --epochs 10 --loss ce
    python -m vidseg.train --shards data/shards --config trial.json --out runs/one

Every TrainConfig field is a flag (``--hid-S 16``, ``--last-frame-weight 3``, ``--pseudo-labels
true``). ``--config`` reads a JSON object of fields first; flags override it. With ``--out`` each
epoch is checkpointed there, and a rerun resumes from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from vidseg.baselines import copy_last_frame
from vidseg.data.shards import ShardSet
from vidseg.errors import InputError
from vidseg.task import LAST_INPUT
from vidseg.train.config import TrainConfig
from vidseg.train.loop import CHECKPOINT, TrialDiverged, fit

_COLUMNS = ("epoch", "train_loss", "val_loss", "val_iou", "val_iou_true_inputs", "val_iou_plain", "val_iou_known",
            "lr", "epoch_seconds")  # val_iou: the trial's own decoding; plain and known beside it


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true/false)")


def _flag_type(annotation: str):
    base = _parse_bool if "bool" in annotation else int if "int" in annotation else \
        float if "float" in annotation else str
    if "None" not in annotation:
        return base

    def optional(text: str):  # "none" is the field's None
        return None if text.lower() == "none" else base(text)
    return optional


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vidseg.train", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=Path, required=True, help="shard folder (with manifest.json)")
    parser.add_argument("--config", type=Path, help="JSON file of TrainConfig fields")
    parser.add_argument("--out", type=Path, help="checkpoint folder; a rerun resumes from it")
    parser.add_argument("--no-verify", action="store_true", help="skip shard checksums")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        annotation = str(hints[f.name]).replace("typing.", "").replace("<class '", "").replace("'>", "")
        choices = f.metadata.get("choices") or None
        default = "none" if f.default is None else str(f.default).lower() if isinstance(f.default, bool) else f.default
        if "bool" in annotation:
            choices = ("true", "false", "none") if "None" in annotation else ("true", "false")
        # the choices are shown, not enforced here: TrainConfig refuses a bad value in one line, naming it
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=_flag_type(annotation),
                            default=argparse.SUPPRESS,
                            metavar="{" + ",".join(map(str, choices)) + "}" if choices else f.name.upper(),
                            help=f"{f.metadata.get('help', '')} (default {default})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    try:
        values = {}
        if args.config:
            try:
                values = json.loads(args.config.read_text())
            except (OSError, ValueError) as err:
                raise InputError(f"{args.config}: unreadable config ({str(err).splitlines()[0][:160]})") from None
            if not isinstance(values, dict):
                raise InputError(f"{args.config}: not a JSON object")
        config = TrainConfig.from_dict({**values, **overrides})
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
        shards = ShardSet.open(args.shards, verify=not args.no_verify)
        baseline = copy_last_frame(shards)
        print(f"copy-last-frame val IoU: {baseline['unet']:.4f} (UNet {LAST_INPUT}), {baseline['true']:.4f} (true {LAST_INPUT})")
        print("  ".join(f"{c:>10}" for c in _COLUMNS))
        resume = args.out / CHECKPOINT if args.out and (args.out / CHECKPOINT).is_file() else None

        def show(metrics: dict) -> None:
            print("  ".join(f"{metrics[c]:>10.4g}" if isinstance(metrics[c], float) else f"{metrics[c]:>10}"
                            for c in _COLUMNS), flush=True)

        result = fit(config, shards, show, checkpoint=resume, checkpoint_dir=args.out)
    except InputError as err:  # ShardError and CheckpointError included
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err.filename or args.out}: {err.strerror or err}", file=sys.stderr)
        return 2
    except TrialDiverged as err:
        print(f"error: the trial diverged: {err}", file=sys.stderr)
        return 1
    if result.history:
        print(f"final val IoU: {result.val_iou:.4f} (best {result.best_val_iou:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
