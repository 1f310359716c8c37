"""Parameter counts of OpenSTL's SimVP translators beside ours (``tests/models/test_simvp.py``'s
``OPENSTL_TRANSLATOR_COUNTS`` are this script's output).

    python tests/bench/openstl_counts.py third_party/OpenSTL

OpenSTL is never part of this repository: the path is a checkout of chengtan9907/OpenSTL in the
git-ignored ``third_party/``, loaded by ``device_suite.build_openstl_simvp``. Its ConvNeXt block is
timm's, so timm must be importable (``pip install --no-deps --target DIR timm``, then
``PYTHONPATH=DIR``); without it the script says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench.device_suite import build_openstl_simvp  # noqa: E402
from vidseg.models import SimVP  # noqa: E402

SIZES = [(11, 16, 32, 4), (10, 64, 512, 8), (11, 8, 64, 8), (11, 4, 16, 2)]  # (T, hid_S, hid_T, N_T)
TYPES = {"gSTA": "gsta", "tau": "tau", "convnext": "convnext", "convmixer": "convmixer"}  # OpenSTL's -> ours


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.exit("usage: python tests/bench/openstl_counts.py PATH_TO_OPENSTL")
    try:
        import timm.layers  # noqa: F401
    except ImportError:
        sys.exit("error: timm is not importable: OpenSTL's ConvNeXt block is timm's (see this script's docstring)")
    for T, hid_s, hid_t, nt in SIZES:
        for theirs_name, ours_name in TYPES.items():
            theirs = build_openstl_simvp(argv[0], (T, 1, 40, 60), hid_s, hid_t, 2, nt, theirs_name, 8)
            with torch.device("meta"):
                ours = SimVP((T, 1, 40, 60), hid_S=hid_s, hid_T=hid_t, N_S=2, N_T=nt, translator=ours_name)
            print(f"T={T} hid_S={hid_s} hid_T={hid_t} N_T={nt} {ours_name:>9}: OpenSTL {count(theirs.hid):>11,} "
                  f"ours {count(ours.hid):>11,}{'' if count(theirs.hid) == count(ours.hid) else '  DIFFERENT'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
