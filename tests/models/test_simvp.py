import pytest
import torch

from vidseg.models import SimVP

PAPER_SHAPE = (11, 1, 160, 240)
CE_SHAPE = (11, 49, 160, 240)

# Measured by instantiating A4Bio/SimVP's model.py, SimVP(shape_in, hid_S, hid_T, N_S, N_T, groups=...).
# in_shape, N_S, N_T, hid_S, hid_T, groups -> parameter count
REFERENCE_COUNTS = [
    (PAPER_SHAPE, 8, 16, 64, 512, 8, 115_218_305),
    (PAPER_SHAPE, 8, 16, 64, 256, 8, 30_499_713),
    (PAPER_SHAPE, 4, 8, 64, 256, 4, 30_827_905),
    (PAPER_SHAPE, 4, 8, 16, 64, 4, 1_937_761),
    (PAPER_SHAPE, 2, 4, 4, 32, 1, 884_585),
    # The CE model: the reference has no out_channels, so C=49 in and out. Its "groups 7" fell back
    # to one group (7 does not divide hid_T // 2 = 128); the reference gives 119_848_369 for both.
    (CE_SHAPE, 4, 8, 64, 256, 1, 119_848_369),
]

TINY = dict(hid_S=4, hid_T=16, N_T=2, groups=2)

# Measured by instantiating OpenSTL's SimVP_Model (commit c74deb5, timm 1.0.31) and counting its
# translator, ``model.hid`` (tests/bench/openstl_check.py): (T, hid_S, hid_T, N_T) -> count per model_type
OPENSTL_TRANSLATOR_COUNTS = [
    ((11, 16, 32, 4), {"gsta": 740_032, "tau": 712_880, "convnext": 573_104, "convmixer": 80_064}),
    ((10, 64, 512, 8), {"gsta": 46_287_872, "tau": 44_174_208, "convnext": 36_832_128, "convmixer": 3_437_568}),
    ((11, 8, 64, 8), {"gsta": 833_536, "tau": 813_912, "convnext": 627_304, "convmixer": 115_904}),
    ((11, 4, 16, 2), {"gsta": 55_808, "tau": 54_652, "convnext": 40_260, "convmixer": 11_280}),
]


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("in_shape, ns, nt, hid_s, hid_t, groups, expected", REFERENCE_COUNTS)
def test_parameter_count_matches_reference(in_shape, ns, nt, hid_s, hid_t, groups, expected):
    with torch.device("meta"):  # counting needs no memory or init
        model = SimVP(in_shape, hid_S=hid_s, hid_T=hid_t, N_S=ns, N_T=nt, groups=groups)
    assert count(model) == expected


@pytest.mark.parametrize("translator", ["gsta", "tau", "convnext", "convmixer"])
@pytest.mark.parametrize("sizes, expected", OPENSTL_TRANSLATOR_COUNTS)
def test_translator_parameter_count_matches_openstl(translator, sizes, expected):
    T, hid_s, hid_t, nt = sizes
    with torch.device("meta"):
        model = SimVP((T, 1, 40, 60), hid_S=hid_s, hid_T=hid_t, N_S=2, N_T=nt, translator=translator)
    assert count(model.hid) == expected[translator]


def test_out_channels_changes_only_the_readout():
    with torch.device("meta"):
        same = SimVP(PAPER_SHAPE, hid_S=16, hid_T=64, N_S=4, N_T=8, groups=4)
        wider = SimVP(PAPER_SHAPE, hid_S=16, hid_T=64, N_S=4, N_T=8, groups=4, out_channels=49)
    assert count(wider) - count(same) == 48 * (16 + 1)  # 48 more 1x1 filters with bias


@pytest.mark.parametrize("translator", ["incep", "gsta", "tau", "convnext", "convmixer"])
@pytest.mark.parametrize("ns", [3, 4])
@pytest.mark.parametrize("in_shape, out_channels", [((11, 1, 16, 24), None), ((11, 49, 16, 24), 49),
                                                    ((11, 1, 16, 24), 49)])
def test_output_shape(translator, ns, in_shape, out_channels):
    model = SimVP(in_shape, N_S=ns, out_channels=out_channels, translator=translator, **TINY).eval()
    with torch.inference_mode():
        out = model(torch.rand(2, *in_shape))
    T, C, H, W = in_shape
    assert out.shape == (2, T, out_channels or C, H, W)


@pytest.mark.parametrize("translator", ["gsta", "tau", "convnext", "convmixer"])
def test_backward_gives_finite_gradients(translator):
    model = SimVP((11, 1, 16, 24), translator=translator, **TINY)
    model(torch.rand(2, 11, 1, 16, 24)).square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in model.hid.parameters())


def test_groups_that_do_not_divide_are_refused():
    # The reference silently ran the paper's "groups 7" with one group; we refuse it.
    with pytest.raises(ValueError, match=r"groups 7 does not divide the 128 channels"):
        SimVP(CE_SHAPE, hid_S=64, hid_T=256, N_S=4, N_T=8, groups=7, out_channels=49)
    with pytest.raises(ValueError, match=r"groups 4 does not divide the 22 output channels"):
        SimVP((11, 1, 16, 24), hid_S=2, hid_T=16, N_S=2, N_T=2, groups=4)  # T * hid_S = 22
    with torch.device("meta"):
        SimVP(CE_SHAPE, hid_S=64, hid_T=256, N_S=4, N_T=8, groups=8, out_channels=49)
        SimVP(CE_SHAPE, hid_S=64, hid_T=256, N_S=4, N_T=8, groups=7, translator="gsta")  # groups do not apply


def test_unknown_translator_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"'convlstm'.*\['convmixer', 'convnext', 'gsta', 'incep', 'tau'\]"):
        SimVP((11, 1, 16, 24), translator="convlstm")


@pytest.mark.parametrize("bad, message", [
    (dict(N_S=0), "N_S is 0"),
    (dict(N_T=1), "N_T is 1"),
    (dict(hid_S=3), "hid_S is 3"),
    (dict(hid_T=0), "hid_T is 0"),
    (dict(groups=0), "groups is 0"),
    (dict(out_channels=0), "out_channels is 0"),
    (dict(N_S=8), "divisible by 16"),
])
def test_bad_arguments_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        SimVP((11, 1, 16, 24), **{**TINY, **bad})


def test_each_translator_is_one_entry_in_the_registry():
    """A translator is named once (``TRANSLATOR_KINDS``): the trials' configs, the search's space and
    the memory model read it from there, and each entry builds a SimVP that runs."""
    from search.space.dimensions import GROUPED, SPACE
    from vidseg.models.simvp import TRANSLATOR_KINDS, MetaTranslator
    from vidseg.train.config import TRANSLATORS

    assert TRANSLATORS == tuple(TRANSLATOR_KINDS)
    assert next(d for d in SPACE if d.name == "translator").choices == TRANSLATORS
    assert GROUPED == ("incep",)
    for name, kind in TRANSLATOR_KINDS.items():
        model = SimVP((11, 3, 16, 16), hid_S=4, hid_T=8, N_S=2, N_T=2, translator=name, groups=2)
        assert isinstance(model.hid, MetaTranslator) == (kind.block is not None) == (kind.kept is not None)
        assert model(torch.zeros(1, 11, 3, 16, 16)).shape == (1, 11, 3, 16, 16)
