"""Shading that TinyRenderer lacks: cast shadows and per-material specular highlights.

pybullet's CPU TinyRenderer rasterises the scene (RGB with ambient and diffuse light, depth and
the segmentation buffer), but its shadow map is unreliable at this scale and its specular term is
global, so metal and rubber would look alike. This module adds both from the rendered depth
buffer and the exact object poses: each visible point is unprojected to the world, a shadow ray
towards the light is tested against every object's true shape, and metal pixels get a Phong
highlight from the analytic surface normal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Solid", "Camera", "unproject", "shadow_mask", "surface_normals", "shade"]


@dataclass(frozen=True)
class Solid:
    """One object's shape and pose, in world units."""

    body: int  # pybullet body id, as found in the segmentation buffer
    shape: str  # "cube" | "sphere" | "cylinder" (cylinder axis = local z)
    half_size: float  # cube half-extent, sphere radius, cylinder radius (and half-height)
    position: np.ndarray  # (3,)
    rotation: np.ndarray  # (3, 3) local -> world
    metal: bool
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)  # albedo, 0..1; tints metal reflections


@dataclass(frozen=True)
class Camera:
    """A pinhole camera as pybullet's view and projection matrices (column-major lists)."""

    view: tuple[float, ...]
    projection: tuple[float, ...]
    width: int
    height: int

    @property
    def clip_matrix(self) -> np.ndarray:
        """(4, 4) world -> clip space: projection @ view."""
        view = np.asarray(self.view, dtype=np.float64).reshape(4, 4).T
        proj = np.asarray(self.projection, dtype=np.float64).reshape(4, 4).T
        return proj @ view

    @property
    def eye(self) -> np.ndarray:
        view = np.asarray(self.view, dtype=np.float64).reshape(4, 4).T
        return np.linalg.inv(view)[:3, 3]


def unproject(depth: np.ndarray, camera: Camera) -> np.ndarray:
    """World positions (H, W, 3) of the pixels of an OpenGL-style depth buffer (H, W) in [0, 1]."""
    h, w = depth.shape
    inv = np.linalg.inv(camera.clip_matrix)
    cols = (np.arange(w) + 0.5) / w * 2.0 - 1.0
    rows = 1.0 - (np.arange(h) + 0.5) / h * 2.0
    ndc = np.empty((h, w, 4))
    ndc[..., 0] = cols[None, :]
    ndc[..., 1] = rows[:, None]
    ndc[..., 2] = 2.0 * depth - 1.0
    ndc[..., 3] = 1.0
    world = ndc @ inv.T
    return world[..., :3] / world[..., 3:4]


def _ray_interval(origins: np.ndarray, direction: np.ndarray, solid: Solid) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit distances of rays ``origins + t * direction`` through a solid (inf if missed)."""
    local_o = (origins - solid.position) @ solid.rotation  # (N, 3): world -> local
    local_d = direction @ solid.rotation  # (3,)
    s = solid.half_size
    n = len(origins)
    t_in = np.full(n, -np.inf)
    t_out = np.full(n, np.inf)
    if solid.shape == "sphere":
        b = local_o @ local_d
        c = (local_o**2).sum(1) - s * s
        disc = b * b - c
        root = np.sqrt(np.maximum(disc, 0.0))
        miss = disc <= 0
        t_in, t_out = -b - root, -b + root
        t_in[miss], t_out[miss] = np.inf, -np.inf
        return t_in, t_out
    safe_d = np.where(np.abs(local_d) < 1e-9, 1e-9, local_d)
    axes = range(3) if solid.shape == "cube" else (2,)
    for k in axes:
        a = (-s - local_o[:, k]) / safe_d[k]
        b = (s - local_o[:, k]) / safe_d[k]
        t_in = np.maximum(t_in, np.minimum(a, b))
        t_out = np.minimum(t_out, np.maximum(a, b))
    if solid.shape == "cylinder":
        a = local_d[0] ** 2 + local_d[1] ** 2
        b = local_o[:, 0] * local_d[0] + local_o[:, 1] * local_d[1]
        c = local_o[:, 0] ** 2 + local_o[:, 1] ** 2 - s * s
        if a < 1e-12:  # ray parallel to the axis
            inside = c <= 0
            t_out = np.where(inside, t_out, -np.inf)
        else:
            disc = b * b - a * c
            root = np.sqrt(np.maximum(disc, 0.0))
            t_in = np.maximum(t_in, (-b - root) / a)
            t_out = np.minimum(t_out, np.where(disc > 0, (-b + root) / a, -np.inf))
    return t_in, t_out


def shadow_mask(points: np.ndarray, light_dir: np.ndarray, solids: list[Solid], owners: np.ndarray | None = None,
                min_travel: float = 0.02) -> np.ndarray:
    """True where the ray from a point towards the light passes through another solid.

    ``owners`` gives the body each point lies on; a solid never shadows its own points (their
    dark side is the renderer's diffuse term, and the rendered mesh is only close to the true
    shape). A ray must travel ``min_travel`` inside a solid to count.
    """
    shadowed = np.zeros(len(points), dtype=bool)
    for solid in solids:
        # Cheap cull first: only rays that pass within the solid's bounding sphere can hit it.
        bound = solid.half_size * (math.sqrt(3.0) if solid.shape != "sphere" else 1.0)
        to_center = solid.position - points
        along = to_center @ light_dir
        near = (along > -bound) & (np.einsum("ij,ij->i", to_center, to_center) - along * along < bound * bound)
        if owners is not None:
            near &= owners != solid.body
        idx = np.flatnonzero(near)
        if idx.size == 0:
            continue
        t_in, t_out = _ray_interval(points[idx], light_dir, solid)
        shadowed[idx[t_out > np.maximum(t_in, 0.0) + min_travel]] = True
    return shadowed


def surface_normals(points: np.ndarray, solid: Solid) -> np.ndarray:
    """Outward unit normals (N, 3) of points on a solid's surface."""
    local = (points - solid.position) @ solid.rotation
    if solid.shape == "sphere":
        normal_local = local
    elif solid.shape == "cube":
        k = np.abs(local).argmax(1)
        normal_local = np.zeros_like(local)
        normal_local[np.arange(len(local)), k] = np.sign(local[np.arange(len(local)), k])
    else:
        radial = np.hypot(local[:, 0], local[:, 1])
        cap = np.abs(local[:, 2]) >= radial
        normal_local = np.where(cap[:, None], np.stack([0 * radial, 0 * radial, np.sign(local[:, 2])], 1),
                                np.stack([local[:, 0], local[:, 1], 0 * radial], 1))
    normal = normal_local @ solid.rotation.T
    return normal / np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)


def shade(
    rgb: np.ndarray,
    depth: np.ndarray,
    segmentation: np.ndarray,
    camera: Camera,
    light_dir: np.ndarray,
    solids: list[Solid],
    shadow_factor: float = 0.55,
    specular: tuple[tuple[float, float], ...] = ((0.85, 60.0), (0.25, 8.0)),
    reflectivity: float = 0.6,
) -> np.ndarray:
    """Add cast shadows and metal highlights to a TinyRenderer frame; returns uint8 (H, W, 3).

    ``specular`` lists (strength, exponent) Phong lobes for metal: a sharp highlight and a
    broad sheen. ``reflectivity`` is the share of a metal pixel that mirrors the environment.
    Rubber gets neither.
    """
    light = np.asarray(light_dir, dtype=np.float64)
    light = light / np.linalg.norm(light)
    out = rgb[..., :3].astype(np.float32).reshape(-1, 3)
    points = unproject(depth, camera).astype(np.float32).reshape(-1, 3)
    owners = segmentation.reshape(-1)
    lit = ~shadow_mask(points, light.astype(np.float32), solids, owners=owners) | (owners < 0)
    out[~lit] *= shadow_factor

    eye = camera.eye
    highlight = np.zeros(len(points), dtype=np.float32)
    for solid in solids:
        if not solid.metal:
            continue
        on = owners == solid.body
        if not on.any():
            continue
        p = points[on]
        normal = surface_normals(p, solid)
        view = eye - p
        view /= np.linalg.norm(view, axis=1, keepdims=True)
        # Metal mirrors its surroundings, tinted by its colour: the bright sky above, the grey
        # floor below. This is what makes a metal cube's faces read as shiny, not just its edges.
        mirror = 2.0 * (normal * view).sum(1, keepdims=True) * normal - view
        sky = np.clip(mirror[:, 2], 0.0, 1.0)
        environment = np.where(mirror[:, 2] > 0, 0.3 + 0.75 * np.sqrt(sky), 0.12)
        tint = 0.25 + 0.75 * np.asarray(solid.color, dtype=np.float32)
        shadow = np.where(lit[on], 1.0, shadow_factor)[:, None]
        out[on] = out[on] * (1.0 - reflectivity) + 255.0 * reflectivity * environment[:, None] * tint * shadow
        n_dot_l = normal @ light
        reflect = 2.0 * n_dot_l[:, None] * normal - light
        r_dot_v = np.clip((reflect * view).sum(1), 0.0, 1.0) * (n_dot_l > 0) * lit[on]
        highlight[on] = sum(strength * r_dot_v**exponent for strength, exponent in specular)
    out += 255.0 * highlight[:, None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8).reshape(rgb.shape[:2] + (3,))
