import itertools

import numpy as np
import pytest

from vidseg.data import classes


def test_class_id_formula_covers_all_48_object_classes():
    ids = []
    for s, m, c in itertools.product(range(3), range(2), range(8)):
        cid = classes.class_id(classes.SHAPES[s], classes.MATERIALS[m], classes.COLORS[c])
        assert cid == 1 + 16 * s + 8 * m + c
        ids.append(cid)
    assert sorted(ids) == list(range(1, 49))
    assert classes.NUM_CLASSES == 49


def test_attributes_inverts_class_id():
    for cid in range(1, 49):
        a = classes.attributes(cid)
        assert classes.class_id(a.shape, a.material, a.color) == cid == a.class_id


def test_known_names():
    assert classes.class_name(0) == "background"
    assert classes.class_name(1) == "gray metal cube"
    assert classes.class_name(26) == "red rubber sphere"
    assert classes.class_name(48) == "yellow rubber cylinder"
    assert len(set(classes.CLASS_NAMES)) == 49


def test_palette_is_distinct_and_colorize_maps_ids():
    assert classes.PALETTE.shape == (49, 3) and classes.PALETTE.dtype == np.uint8
    assert len({tuple(c) for c in classes.PALETTE}) == 49
    mask = np.array([[0, 26], [48, 1]])
    rgb = classes.colorize(mask)
    assert rgb.shape == (2, 2, 3)
    assert (rgb[0, 1] == classes.PALETTE[26]).all() and (rgb[0, 0] == 0).all()


@pytest.mark.parametrize("bad", [0, 49, -1])
def test_attributes_rejects_non_object_ids(bad):
    with pytest.raises(ValueError, match=str(bad)):
        classes.attributes(bad)


def test_class_id_rejects_unknown_attribute():
    with pytest.raises(ValueError, match="'pyramid'"):
        classes.class_id("pyramid", "metal", "red")
