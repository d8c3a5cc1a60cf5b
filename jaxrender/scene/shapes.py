"""Shapes: every shape is a triangle `Mesh` in object space with a `to_world`.

Mitsuba's analytic shapes are made into meshes here (numpy, at load time):

* `rectangle`: [-1, 1]^2 at z = 0, normal +z, uv = ((x + 1) / 2, (y + 1) / 2);
  2 triangles.
* `disk`: the unit disk at z = 0, normal +z, uv = (r, phi / 2 pi) as in
  Mitsuba; a fan of `DISK_SEGMENTS` triangles (area 0.9999 pi).
* `cube`: [-1, 1]^3, Mitsuba's own 24 vertices / 12 faces with per-face
  normals and uvs.
* `sphere`: the unit sphere, a UV sphere of `SPHERE_RINGS` x `SPHERE_SEGMENTS`
  cells (16128 triangles) whose vertices lie on the sphere, with exact
  normals and Mitsuba's uv = (phi / 2 pi, theta / pi) (phi about +z from +x,
  theta from +z). The seam and the poles have their own vertices so uvs
  interpolate without wrapping. The silhouette is within 3e-4 radii of the
  true sphere. Mitsuba's `center` and `radius` are folded into `to_world`
  (`to_world @ translate(center) @ scale(radius)`, Mitsuba's order), so they
  are differentiated through `to_world`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxrender.scene._pytree import StaticArray, pytree, static

SPHERE_RINGS = 64  # steps in theta, pole to pole
SPHERE_SEGMENTS = 128  # steps in phi, around +z
DISK_SEGMENTS = 256
CYLINDER_SEGMENTS = 128  # steps in phi, around +z


@pytree
class Mesh:
    """A triangle mesh in object space, placed in the world by `to_world`.

    Attributes:
      vertex_positions: float32 (V, 3), object space. Differentiable.
      to_world: float32 (4, 4), object to world. Differentiable.
      vertex_normals: float32 (V, 3) unit normals, object space, or None when
        `face_normals`. Read from the file, or computed as Mitsuba does
        (`vertex_normals`: angle-weighted face normals) when the file has
        none. Differentiable; `replace` recomputes them from new
        `vertex_positions` unless they are replaced too (Mitsuba's update).
      vertex_texcoords: float32 (V, 2) or None. Differentiable.
      faces: StaticArray int32 (F, 3), counter-clockwise seen from the front
        (static).
      face_normals: shade with the geometric normal (static).
      flip_normals: the front side is the back of the faces (static); applies
        to geometric and shading normals, as Mitsuba's `flip_normals`.
      bsdf: index into `Scene.bsdfs` (static).
      emitter: index into `Scene.emitters` of this shape's area light, or -1
        (static).
      id: the shape's id (static), or None.
      attributes: {name: float32 array}, Mitsuba's mesh attributes, read by
        `MeshAttributeTexture`: "vertex_<name>" (V, C) per vertex,
        interpolated over each triangle; "face_<name>" (F, C) per face;
        C = 1 or 3 for a texture to read them. From PLY properties
        (`jaxrender.io.read_ply`) or set by hand.
        The names are static structure, the values differentiable.
    """

    vertex_positions: jax.Array
    to_world: jax.Array
    vertex_normals: jax.Array | None
    vertex_texcoords: jax.Array | None
    faces: StaticArray = static()
    face_normals: bool = static(default=False)
    flip_normals: bool = static(default=False)
    bsdf: int = static(default=0)
    emitter: int = static(default=-1)
    id: str | None = static(default=None)
    attributes: dict = dataclasses.field(default_factory=dict)

    @property
    def num_vertices(self) -> int:
        return self.vertex_positions.shape[0]

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]


# --------------------------------------------------------------------------
# Vertex normals, differentiable.


def _safe_normalize(xp, v):
    n2 = xp.sum(v * v, axis=-1, keepdims=True)
    ok = n2 > 0
    # Double where: a zero vector gets a zero gradient, not NaN.
    return xp.where(ok, v / xp.sqrt(xp.where(ok, n2, 1.0)), 0.0)


def _unit_angle(xp, a, b):
    # Mitsuba's unit_angle: accurate near 0 and pi, unlike acos(dot). The
    # branch taken has an asin argument <= sqrt(2) / 2; clamping both at 0.9
    # keeps the other branch's derivative finite, so `where` gives no NaN.
    dot = xp.sum(a * b, axis=-1)

    def half_len(x):
        n2 = xp.sum(x * x, axis=-1)
        return xp.minimum(xp.sqrt(xp.maximum(n2, 1e-30)) * 0.5, 0.9)

    return xp.where(dot < 0, np.pi - 2.0 * xp.arcsin(half_len(a + b)),
                    2.0 * xp.arcsin(half_len(a - b)))


def _vertex_normals(xp, p, f):
    # One implementation for numpy (at load time: no per-op dispatch, no
    # compilation per mesh size) and jax.numpy (differentiable, in `replace`).
    v = p[f]  # (F, 3, 3)
    v0, v1, v2 = v[:, 0], v[:, 1], v[:, 2]
    n = xp.cross(v1 - v0, v2 - v0)
    valid = xp.sum(n * n, axis=-1, keepdims=True) > 0
    n = _safe_normalize(xp, n)
    angles = xp.stack([
        _unit_angle(xp, _safe_normalize(xp, v1 - v0), _safe_normalize(xp, v2 - v0)),
        _unit_angle(xp, _safe_normalize(xp, v2 - v1), _safe_normalize(xp, v0 - v1)),
        _unit_angle(xp, _safe_normalize(xp, v0 - v2), _safe_normalize(xp, v1 - v2)),
    ], axis=1)  # (F, 3)
    contrib = xp.where(valid[:, None], n[:, None, :] * angles[..., None], 0.0).reshape(-1, 3)
    if xp is np:
        acc = np.zeros_like(p)
        np.add.at(acc, f.reshape(-1), contrib)
    else:
        acc = jnp.zeros_like(p).at[f.reshape(-1)].add(contrib)
    length2 = xp.sum(acc * acc, axis=-1, keepdims=True)
    return xp.where(length2 > 0, _safe_normalize(xp, acc), xp.asarray([1.0, 0.0, 0.0], p.dtype))


def vertex_normals(vertex_positions, faces) -> jax.Array:
    """Smooth vertex normals as Mitsuba's `Mesh::recompute_vertex_normals`.

    Each face adds its unit normal weighted by its angle at the vertex
    (Thuermer and Wuethrich 1998); zero-area faces add nothing; the sums are
    normalized, and a vertex with a zero sum gets (1, 0, 0) as in Mitsuba.

    Args:
      vertex_positions: float (V, 3). Differentiable (may be traced).
      faces: integer (F, 3), concrete or traced.

    Returns:
      float32 (V, 3) `jax.Array` (a numpy array when both inputs are numpy
      arrays, as at load time).
    """
    if isinstance(vertex_positions, np.ndarray) and isinstance(faces, np.ndarray):
        with np.errstate(invalid="ignore", divide="ignore"):
            return _vertex_normals(np, vertex_positions.astype(np.float32), faces.astype(np.int64))
    return _vertex_normals(jnp, jnp.asarray(vertex_positions, jnp.float32), jnp.asarray(faces, jnp.int32))


# --------------------------------------------------------------------------
# Mitsuba's analytic shapes as meshes (numpy; positions, normals, uvs, faces).


def rectangle_mesh():
    p = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32)
    n = np.tile(np.array([0, 0, 1], np.float32), (4, 1))
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    return p, n, uv, f


def cube_mesh():
    # Mitsuba's cube.cpp data (verified against mi.traverse in the tests).
    p = np.array([
        [1, -1, -1], [1, -1, 1], [-1, -1, 1], [-1, -1, -1],
        [1, 1, -1], [-1, 1, -1], [-1, 1, 1], [1, 1, 1],
        [1, -1, -1], [1, 1, -1], [1, 1, 1], [1, -1, 1],
        [1, -1, 1], [1, 1, 1], [-1, 1, 1], [-1, -1, 1],
        [-1, -1, 1], [-1, 1, 1], [-1, 1, -1], [-1, -1, -1],
        [1, 1, -1], [1, -1, -1], [-1, -1, -1], [-1, 1, -1],
    ], np.float32)
    n = np.repeat(np.array([[0, -1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1], [-1, 0, 0], [0, 0, -1]],
                           np.float32), 4, axis=0)
    uv = np.tile(np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32), (6, 1))
    quad = np.array([[0, 1, 2], [3, 0, 2]], np.int32)
    f = (quad[None] + 4 * np.arange(6, dtype=np.int32)[:, None, None]).reshape(-1, 3)
    return p, n, uv, f


def disk_mesh(segments: int = DISK_SEGMENTS):
    phi = np.arange(segments + 1) * (2 * np.pi / segments)  # seam vertex at 2 pi
    rim = np.stack([np.cos(phi), np.sin(phi), np.zeros_like(phi)], -1)
    rim_uv = np.stack([np.ones_like(phi), phi / (2 * np.pi)], -1)
    # One centre vertex per segment, with the segment's mid-angle as v, so v
    # interpolates across each triangle without a singular point.
    centre = np.zeros((segments, 3))
    centre_uv = np.stack([np.zeros(segments), (np.arange(segments) + 0.5) / segments], -1)
    p = np.concatenate([rim, centre]).astype(np.float32)
    uv = np.concatenate([rim_uv, centre_uv]).astype(np.float32)
    n = np.tile(np.array([0, 0, 1], np.float32), (len(p), 1))
    j = np.arange(segments)
    f = np.stack([segments + 1 + j, j, j + 1], -1).astype(np.int32)
    return p, n, uv, f


def cylinder_mesh(segments: int = CYLINDER_SEGMENTS):
    """Mitsuba's cylinder in its local frame: the open tube of radius 1 around
    +z from z = 0 to 1 (no caps), normals outwards, uv = (phi / 2 pi, z)."""
    phi = np.arange(segments + 1) * (2 * np.pi / segments)  # seam duplicated
    ring = np.stack([np.cos(phi), np.sin(phi)], -1)
    p = np.concatenate([np.concatenate([ring, np.full((segments + 1, 1), z)], -1) for z in (0.0, 1.0)])
    n = np.concatenate([ring, np.zeros((segments + 1, 1))], -1)
    n = np.concatenate([n, n])
    uv = np.concatenate([np.stack([phi / (2 * np.pi), np.full_like(phi, z)], -1) for z in (0.0, 1.0)])
    j = np.arange(segments)
    top = j + segments + 1
    # Counter-clockwise seen from outside: (v0, v1, v2) with (v1 - v0) x (v2 - v0) outwards.
    f = np.concatenate([np.stack([j, j + 1, top + 1], -1), np.stack([j, top + 1, top], -1)])
    return p.astype(np.float32), n.astype(np.float32), uv.astype(np.float32), f.astype(np.int32)


def sphere_mesh(rings: int = SPHERE_RINGS, segments: int = SPHERE_SEGMENTS):
    theta = np.arange(1, rings) * (np.pi / rings)  # interior rings
    phi = np.arange(segments + 1) * (2 * np.pi / segments)  # seam duplicated
    tt, pp = np.meshgrid(theta, phi, indexing="ij")
    body = np.stack([np.sin(tt) * np.cos(pp), np.sin(tt) * np.sin(pp), np.cos(tt)], -1).reshape(-1, 3)
    body_uv = np.stack([pp / (2 * np.pi), tt / np.pi], -1).reshape(-1, 2)
    # Poles: one vertex per segment, v = 0 (+z) or 1 (-z), u at the segment's middle.
    mid_u = (np.arange(segments) + 0.5) / segments
    north = np.tile([0.0, 0.0, 1.0], (segments, 1))
    south = np.tile([0.0, 0.0, -1.0], (segments, 1))
    p = np.concatenate([body, north, south])
    uv = np.concatenate([body_uv, np.stack([mid_u, np.zeros(segments)], -1),
                         np.stack([mid_u, np.ones(segments)], -1)])
    n_body = body.shape[0]
    ring = lambda i, j: (i - 1) * (segments + 1) + j  # noqa: E731  (i in 1..rings-1)
    j = np.arange(segments)
    faces = [np.stack([n_body + j, ring(1, j), ring(1, j + 1)], -1)]
    for i in range(1, rings - 1):
        a, b, c, d = ring(i, j), ring(i + 1, j), ring(i + 1, j + 1), ring(i, j + 1)
        faces += [np.stack([a, b, c], -1), np.stack([a, c, d], -1)]
    faces.append(np.stack([ring(rings - 1, j), n_body + segments + j, ring(rings - 1, j + 1)], -1))
    p = p.astype(np.float32)
    return p, p.copy(), uv.astype(np.float32), np.concatenate(faces).astype(np.int32)
