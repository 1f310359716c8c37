import numpy as np

from vidseg.data import synth
from vidseg.data.classes import class_id
from vidseg.data.render import Solid, shadow_mask, surface_normals

UP = np.array([0.0, 0.0, 1.0])


def solid(shape, position=(0.0, 0.0, 0.5), rotation=np.eye(3), body=1):
    return Solid(body, shape, 0.5, np.asarray(position, dtype=float), rotation, metal=False)


def test_shadow_rays_against_each_shape():
    light = np.array([1.0, 0.0, 1.0]) / np.sqrt(2)
    floor = np.array([[-1.0, 0.0, 0.0],   # on the far side of the object from the light: in shadow
                      [3.0, 0.0, 0.0],    # between object and light: lit
                      [-1.0, 3.0, 0.0]])  # off to the side: lit
    for shape in ("sphere", "cube", "cylinder"):
        assert shadow_mask(floor, light, [solid(shape)]).tolist() == [True, False, False], shape


def test_an_object_does_not_shadow_its_own_points():
    light = np.array([0.0, 0.0, 1.0])
    bottom = np.array([[0.0, 0.0, 0.001]])  # inside the cube's footprint, facing down
    cube = solid("cube")
    assert shadow_mask(bottom, light, [cube]).tolist() == [True]
    assert shadow_mask(bottom, light, [cube], owners=np.array([cube.body])).tolist() == [False]


def test_normals_of_each_shape():
    yaw = np.pi / 4
    rot = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    cube = solid("cube", rotation=rot)
    top, side = np.array([0.1, 0.0, 1.0]), np.array([0.0, 0.0, 0.5]) + rot @ np.array([0.5, 0.1, 0.0])
    normals = surface_normals(np.stack([top, side]), cube)
    assert np.allclose(normals[0], UP) and np.allclose(normals[1], rot @ np.array([1.0, 0, 0]))
    cylinder = solid("cylinder")
    normals = surface_normals(np.array([[0.0, 0.5, 0.6], [0.1, 0.1, 1.0]]), cylinder)
    assert np.allclose(normals, [[0, 1, 0], [0, 0, 1]])
    sphere = solid("sphere")
    assert np.allclose(surface_normals(np.array([[0.3, 0.0, 0.9]]), sphere), [[0.6, 0, 0.8]])


def test_metal_and_rubber_look_different_and_shadows_fall_on_the_floor():
    def render(material):
        obj = synth.ObjectSpec(class_id("sphere", material, "blue"), 0.5, (0.0, 1.0), 0.0, (0.0, 0.0), "rest")
        return synth.simulate(synth.SceneSpec((obj,)), synth.SynthConfig(), num_frames=1)

    metal, rubber = render("metal"), render("rubber")
    assert np.array_equal(metal.masks > 0, rubber.masks > 0)  # same place, different class
    on_object = metal.masks[0] > 0
    metal_px = metal.frames[0][on_object].astype(int)
    rubber_px = rubber.frames[0][on_object].astype(int)
    assert metal_px.min(axis=1).max() > rubber_px.min(axis=1).max() + 100  # a white highlight
    assert np.abs(metal_px - rubber_px).mean() > 20  # the whole surface reads differently
    floor = rubber.frames[0][~on_object].mean(axis=1)
    assert floor.min() < 0.7 * np.median(floor)  # a cast shadow darker than the lit floor
