"""vidseg-search: the entry point.

    python search/run_search.py                  # embedded demo: synthetic data, generated and checked
    python search/run_search.py --data DIR       # check a real dataset root in the competition layout

With no arguments it prepares the embedded demo dataset (a small physics-based synthetic set,
cached under data/demo and reused on later runs) and validates it. The UNet, shard and search
stages plug in after this step as they land.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from vidseg.data import synth
from vidseg.data.check import check_dataset, print_errors

log = logging.getLogger("vidseg.search")

DEMO_COUNTS = {"train": 40, "val": 20, "unlabeled": 20, "hidden": 10}
SMOKE_COUNTS = {"train": 4, "val": 2, "unlabeled": 2, "hidden": 2}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python search/run_search.py",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--data", type=Path, default=None,
                        help="a dataset root in the competition layout (default: generate the demo set)")
    parser.add_argument("--data-dir", type=Path, default=Path("data"),
                        help="where generated data is cached (default: data/)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the demo dataset (default 0)")
    parser.add_argument("--workers", type=int, default=None, help="processes for generation (default: all cores)")
    parser.add_argument("--smoke-test", action="store_true", help="a tiny dataset, for tests")
    return parser


def prepare_demo_data(data_dir: Path, seed: int, workers: int, smoke: bool) -> Path:
    counts = SMOKE_COUNTS if smoke else DEMO_COUNTS
    root = data_dir / ("smoke" if smoke else "demo") / f"seed{seed}"
    log.info("demo dataset: %s (%s)", root, ", ".join(f"{k} {v}" for k, v in counts.items()))
    manifest = synth.generate(root, counts, synth.SynthConfig(seed=seed), workers=workers)
    iou = manifest["motion"]["copy_last_frame_iou_val"]
    log.info("copy-last-frame IoU on val: %.3f", iou)
    return root


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    workers = (os.cpu_count() or 1) if args.workers is None else args.workers
    try:
        if workers < 1:
            raise ValueError(f"--workers is {workers}, but must be >= 1")
        root = args.data or prepare_demo_data(args.data_dir, args.seed, workers, args.smoke_test)
    except (ValueError, synth.SettingsMismatch) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err.filename or args.data_dir}: {err.strerror or err}", file=sys.stderr)
        return 2
    report = check_dataset(root, progress=sys.stderr.isatty())
    if not report.ok:
        print_errors(report, max_errors=50)
        return 2
    print(f"dataset ok: {root} (" + ", ".join(f"{k} {v}" for k, v in report.counts.items()) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
