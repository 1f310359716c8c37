"""Our SimVP translators against OpenSTL's: parameter counts, and every block's output on a fixed
input with OpenSTL's weights copied into ours, and the initialisation (``tests/models/test_simvp.py``'s
``OPENSTL_TRANSLATOR_COUNTS`` are this script's counts).

    python tests/bench/openstl_check.py third_party/OpenSTL

For each translator (gSTA, TAU, ConvNeXt, ConvMixer) and size in ``SIZES``: OpenSTL's ``SimVP_Model``
(``device_suite.build_openstl_simvp``) and ours are built; each fresh tensor of ours is held to
OpenSTL's (``init_differs``: a constant one equal, a drawn one of like spread); then every weight and buffer of OpenSTL's
translator is drawn at random (layer scales and norms' statistics too, so that no part can hide
behind a small scale) and copied into ours by name (``RENAMES``; every tensor of ours must be given one, and a shape may
differ only by unit dimensions, as a layer scale's (C,) against (C, 1, 1)). Then, in
eval mode (OpenSTL's drop-path is on in training even at ``drop_path=0``), on one fixed random input:
each of OpenSTL's blocks (``MetaBlock.block``) against ours at the same place, and the whole
translator. A swapped norm, activation or attention, a missing branch, a wrong order or init fails.
Exit 0 when every count is equal and every output within ``TOLERANCE``; else 1, naming what differs.

OpenSTL is never part of this repository: the path is a checkout of chengtan9907/OpenSTL in the
git-ignored ``third_party/``. Its ConvNeXt block is timm's, so timm must be importable (``pip
install --no-deps --target DIR timm``, then ``PYTHONPATH=DIR``); without it the script says so.
Last run: all 16 equal (docs/trials.md).
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
TOLERANCE = 1e-4  # largest difference, relative to the output's largest magnitude (fp32)
DRAWN_MIN, SIGMAS = 1024, 5  # a drawn initialisation: its values at least, and how many standard errors may part them
FRAME = (16, 24)  # the latent frame the translators run on (its size does not change a weight)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# OpenSTL's names inside a block -> ours, tried in turn where ours has no tensor of OpenSTL's name
RENAMES = [("spatial_gating_unit.fc.0.", "excite.2."), ("spatial_gating_unit.fc.2.", "excite.4."),
           ("spatial_gating_unit.", ""), ("dwconv.dwconv.", "dwconv."), ("mlp.fc1.", "mlp.0."), ("mlp.fc2.", "mlp.2.")]


def ours_name(name: str, places: dict[int, int], ours: set[str]) -> str:
    """Our name for OpenSTL's translator tensor ``name`` (``enc.I.block.X`` or ``enc.I.reduction.X``):
    ``blocks.K.X`` with K our place of block I (``places``), the 1x1 conv after it at K + 1."""
    _, i, part, rest = name.split(".", 3)
    k = places[int(i)] + (1 if part == "reduction" else 0)
    candidate = f"blocks.{k}.{rest}"
    for old, new in RENAMES:
        if candidate in ours:
            break
        candidate = candidate.replace(old, new)
    if candidate not in ours:
        raise AssertionError(f"OpenSTL's {name} has no counterpart in ours")
    return candidate


def paired(theirs: torch.nn.Module, ours: torch.nn.Module) -> list[tuple[str, torch.Tensor, str, torch.Tensor]]:
    """Each tensor of OpenSTL's translator ``theirs`` with ours of the same part (``ours_name``);
    every tensor of ours must have one."""
    places = {i: k for i, k in enumerate(k for k, m in enumerate(ours.blocks) if not isinstance(m, torch.nn.Conv2d))}
    mine = ours.state_dict()
    pairs = []
    for name, ta in theirs.state_dict().items():
        name_b = ours_name(name, places, set(mine))
        tb = mine[name_b]
        if ta.numel() != tb.numel() or [s for s in ta.shape if s != 1] != [s for s in tb.shape if s != 1]:
            raise AssertionError(f"{name} {tuple(ta.shape)} against {name_b} {tuple(tb.shape)}")
        pairs.append((name, ta, name_b, tb))
    missing = set(mine) - {name_b for _, _, name_b, _ in pairs}
    if missing:
        raise AssertionError(f"ours has tensors OpenSTL's has not: {sorted(missing)[:3]}")
    return pairs


def init_differs(pairs: list[tuple[str, torch.Tensor, str, torch.Tensor]]) -> list[str]:
    """Where our fresh initialisation is not OpenSTL's: a constant one (zeros, ones, a layer scale's
    value) must be equal; a drawn one of at least ``DRAWN_MIN`` values must have its standard deviation
    and its mean within ``SIGMAS`` standard errors of OpenSTL's (two draws of one init part by about
    sqrt(2/n) of the deviation in the mean and sqrt(1/n) in the deviation; a wrong init, by a factor)."""
    problems = []
    for name, ta, _, tb in pairs:
        if not ta.is_floating_point():
            continue
        a, b = ta.flatten().double(), tb.flatten().double()
        if bool((a == a[0]).all()):
            if not bool((b == a[0]).all()):
                problems.append(f"init of {name}: OpenSTL's all {a[0].item():g}, ours not")
        elif a.numel() >= DRAWN_MIN:
            sa, sb, spread = a.std().item(), b.std().item(), SIGMAS * (2 / a.numel()) ** 0.5
            if abs(sb - sa) > spread * sa or abs(b.mean().item() - a.mean().item()) > spread * sa:
                problems.append(f"init of {name}: std {sb:.3g} against OpenSTL's {sa:.3g}")
    return problems


def copy_weights(pairs: list[tuple[str, torch.Tensor, str, torch.Tensor]], generator: torch.Generator) -> None:
    """Draw every float tensor of OpenSTL's at random, then copy each into ours."""
    with torch.no_grad():
        for name, ta, _, tb in pairs:
            if ta.is_floating_point():
                drawn = torch.rand(ta.shape, generator=generator) + 0.5 if "running_var" in name \
                    else torch.randn(ta.shape, generator=generator) * (0.5 if ta.dim() <= 1 else ta[0].numel() ** -0.5)
                ta.copy_(drawn)
            tb.copy_(ta.reshape(tb.shape))


def _ours_blocks(translator: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in translator.blocks if not isinstance(m, torch.nn.Conv2d)]  # the 1x1 convs between widths


def compare(theirs_name: str, ours_name: str, size: tuple[int, int, int, int]) -> list[str]:
    """What differs between OpenSTL's translator and ours at ``size``: counts, initialisation, outputs."""
    T, hid_s, hid_t, nt = size
    theirs = build_openstl_simvp(sys.argv[1], (T, 1, 40, 60), hid_s, hid_t, 2, nt, theirs_name, 8).hid.eval()
    ours = SimVP((T, 1, 40, 60), hid_S=hid_s, hid_T=hid_t, N_S=2, N_T=nt, translator=ours_name).hid.eval()
    if count(theirs) != count(ours):
        return [f"parameters: OpenSTL {count(theirs):,}, ours {count(ours):,}"]
    pairs = paired(theirs, ours)
    problems = init_differs(pairs)
    generator = torch.Generator().manual_seed(sum(size))
    copy_weights(pairs, generator)
    pairs = list(zip([block.block for block in theirs.enc], _ours_blocks(ours)))
    with torch.no_grad():
        for i, (a, b) in enumerate(pairs):
            width = a.norm1.num_features if hasattr(a, "norm1") and hasattr(a.norm1, "num_features") else \
                next(p for p in a.parameters()).shape[0]
            x = torch.randn((2, width, *FRAME), generator=generator)
            problems += _differs(f"block {i}", a(x), b(x))
        x = torch.randn((2, T, hid_s, *FRAME), generator=generator)
        problems += _differs("translator", theirs(x).flatten(1, 2), ours(x.flatten(1, 2)))
    return problems


def _differs(what: str, theirs: torch.Tensor, ours: torch.Tensor) -> list[str]:
    if theirs.shape != ours.shape:
        return [f"{what}: output {tuple(theirs.shape)} against {tuple(ours.shape)}"]
    scale = theirs.abs().max().clamp_min(1e-12)
    worst = ((theirs - ours).abs().max() / scale).item()
    return [] if worst <= TOLERANCE else [f"{what}: outputs differ by {worst:.2e} of their largest"]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.exit("usage: python tests/bench/openstl_check.py PATH_TO_OPENSTL")
    try:
        import timm.layers  # noqa: F401
    except ImportError:
        sys.exit("error: timm is not importable: OpenSTL's ConvNeXt block is timm's (see this script's docstring)")
    failed = 0
    for size in SIZES:
        T, hid_s, hid_t, nt = size
        for theirs_name, ours_name in TYPES.items():
            with torch.device("meta"):
                ours = SimVP((T, 1, 40, 60), hid_S=hid_s, hid_T=hid_t, N_S=2, N_T=nt, translator=ours_name)
            problems = compare(theirs_name, ours_name, size)
            failed += bool(problems)
            print(f"T={T} hid_S={hid_s} hid_T={hid_t} N_T={nt} {ours_name:>9}: {count(ours.hid):>11,} parameters, "
                  + ("; ".join(problems) if problems else "initialisation, every block's output and the translator's equal"))
    print(f"{failed} of {len(SIZES) * len(TYPES)} differ" if failed else "all equal")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
