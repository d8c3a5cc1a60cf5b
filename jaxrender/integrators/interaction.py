"""Scene arrays for rendering and the differentiable surface interaction.

`prepare_scene` flattens a Scene (inside jit) into world-space arrays plus
static per-shape tables; `surface_interaction` turns closest hits into
positions, normals, uvs and material/emitter indices. Positions and normals
are interpolated from the hit's barycentrics, so they differentiate with
respect to vertex positions and transforms through `intersect`'s rule.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrender.geometry import build_bvh, intersect
from jaxrender.geometry.accel import Accel, Hit
from jaxrender.geometry.world import flatten_scene
from jaxrender.integrators._math import dot, safe_div, safe_normalize
from jaxrender.integrators.bsdfs import SceneBSDFs, local_geometry, needs_tangents
from jaxrender.integrators.warp import make_frame, shading_frame
from jaxrender.scene import Scene, attribute_layout, transform_normals

# Mitsuba's ray offsets (math::RayEpsilon = 2^-24 * 1500, ShadowEpsilon = 10x).
RAY_EPSILON = 2.0**-24 * 1500
SHADOW_EPSILON = RAY_EPSILON * 10


class SceneArrays(NamedTuple):
    """A scene's geometry, ready for tracing and shading.

    vertices: (V, 3) world positions; normals: (V, 3) world shading normals
    (zeros for meshes without them); uvs: (V, 2) (zeros where absent).
    faces (F, 3), shape_of_face (F,) and the per-shape tables bsdf_of_shape,
    emitter_of_shape (-1: none), smooth_shape (shade with vertex normals),
    flip_shape (flip_normals), uv_shape (the mesh has texture coordinates)
    and tangents (0-d: interactions carry dp_du, see `needs_tangents`) are
    static numpy. accel is the BVH. vertex_attributes (V, Kv) and
    face_attributes (F, Kf): the mesh attributes the scene's textures read
    (`attribute_layout`: the "vertex_" ones, then the "face_" ones; zeros
    on shapes without them), or None; their values follow the uv in the
    interactions' texture coordinates.
    """

    vertices: jax.Array
    normals: jax.Array
    uvs: jax.Array
    faces: np.ndarray
    shape_of_face: np.ndarray
    bsdf_of_shape: np.ndarray
    emitter_of_shape: np.ndarray
    smooth_shape: np.ndarray
    flip_shape: np.ndarray
    accel: Accel
    uv_shape: np.ndarray | None = None
    tangents: np.ndarray = np.array(False)
    vertex_attributes: jax.Array | None = None
    face_attributes: jax.Array | None = None


def _attribute_tables(scene: Scene):
    """(vertex table (V, Kv), face table (F, Kf)) of `attribute_layout`,
    each None when empty."""
    layout = attribute_layout(scene)
    tables = []
    for kind, rows in (("vertex_", "num_vertices"), ("face_", "num_faces")):
        slots = [(n, c) for n, c in layout if n.startswith(kind)]
        if not slots or not scene.shapes:
            tables.append(None)
            continue
        per_mesh = []
        for mesh in scene.shapes:
            k = getattr(mesh, rows)
            cols = []
            for name, c in slots:
                a = (mesh.attributes or {}).get(name)
                if a is None or a.size != k * c:  # a shape whose BSDF does not read it (checked by the layout)
                    a = jnp.zeros((k, c), jnp.float32)
                cols.append(jnp.asarray(a, jnp.float32).reshape(k, c))
            per_mesh.append(jnp.concatenate(cols, axis=1))
        tables.append(jnp.concatenate(per_mesh))
    return tuple(tables)


def texture_coords(arrays: SceneArrays, corners, face_rows, b1, b2, has_uv=None):
    """Texture coordinates at points with barycentrics (b1, b2) (..., 1):
    the uv interpolated from `corners(table)` (a vertex table's rows at the
    triangle's three corners), Mitsuba's (b1, b2) where `has_uv` is False,
    then the mesh attributes (`SceneArrays.vertex_attributes` interpolated,
    `face_attributes` from `face_rows(table)`). (..., 2 + Kv + Kf)."""
    b0 = 1.0 - b1 - b2

    def interpolate(table):
        a, b, c = corners(table)
        return b0 * a + b1 * b + b2 * c

    uv = interpolate(arrays.uvs)
    if has_uv is not None:
        uv = jnp.where(has_uv[..., None], uv, jnp.concatenate([b1, b2], -1))
    parts = [uv]
    if arrays.vertex_attributes is not None:
        parts.append(interpolate(arrays.vertex_attributes))
    if arrays.face_attributes is not None:
        parts.append(face_rows(arrays.face_attributes))
    return jnp.concatenate(parts, -1) if len(parts) > 1 else uv


def prepare_scene(scene: Scene, accel: Accel | None = None) -> SceneArrays:
    """Flattens `scene` to world space and builds (or reuses) its BVH."""
    world = flatten_scene(scene)
    normals, uvs = [], []
    for mesh in scene.shapes:
        n = mesh.num_vertices
        if mesh.vertex_normals is not None and not mesh.face_normals:
            normals.append(transform_normals(mesh.to_world, mesh.vertex_normals))
        else:
            normals.append(jnp.zeros((n, 3), jnp.float32))
        uv = mesh.vertex_texcoords
        uvs.append(jnp.zeros((n, 2), jnp.float32) if uv is None else jnp.asarray(uv, jnp.float32))
    cat = (lambda xs, w: jnp.concatenate(xs) if xs else jnp.zeros((0, w), jnp.float32))
    shapes = scene.shapes
    if accel is None:
        accel = build_bvh(world.vertices, world.faces)
    vertex_attributes, face_attributes = _attribute_tables(scene)
    return SceneArrays(
        vertices=world.vertices,
        normals=cat(normals, 3),
        uvs=cat(uvs, 2),
        faces=world.faces,
        shape_of_face=world.shape_index,
        bsdf_of_shape=np.array([m.bsdf for m in shapes], np.int32),
        emitter_of_shape=np.array([m.emitter for m in shapes], np.int32),
        smooth_shape=np.array([m.vertex_normals is not None and not m.face_normals for m in shapes], bool),
        flip_shape=np.array([m.flip_normals for m in shapes], bool),
        accel=accel,
        uv_shape=np.array([m.vertex_texcoords is not None for m in shapes], bool),
        tangents=np.array(needs_tangents(scene)),
        vertex_attributes=vertex_attributes,
        face_attributes=face_attributes,
    )


class Interaction(NamedTuple):
    """Surface interactions of a batch of rays (world space).

    valid: (N,) bool, the ray hit something. p: (N, 3) hit point. n: (N, 3)
    geometric normal (front side as the mesh's winding, flipped for
    flip_normals). sh_n: (N, 3) shading normal. uv: (N, 2) texture
    coordinates, then the scene's mesh attributes (N, 2 + K; see
    `texture_coords`). t: (N,) distance.
    shape, bsdf, emitter: (N,) int32 indices (-1 where invalid / none).
    dp_du: (N, 3) position derivative along u (Mitsuba's `dp_du`), whose
    part in the tangent plane orients the shading frame (`shading_frame`);
    None where no BSDF of the scene depends on that orientation.
    dp_dv: (N, 3) the derivative along v (for `bumpmap`), None likewise.
    """

    valid: jax.Array
    p: jax.Array
    n: jax.Array
    sh_n: jax.Array
    uv: jax.Array
    t: jax.Array
    shape: jax.Array
    bsdf: jax.Array
    emitter: jax.Array
    dp_du: jax.Array | None = None
    dp_dv: jax.Array | None = None


def trace(arrays: SceneArrays, origins, directions, t_max=None) -> Hit:
    """Closest hits against the prepared scene (native kernel)."""
    return intersect(arrays.accel, arrays.vertices, arrays.faces, origins, directions, t_max)


def _nonempty(table, fill=0):
    """The table, or one stand-in row of `fill` when the scene has no
    geometry: every ray then misses, and what a gather reads is masked out."""
    t = jnp.asarray(table)
    return t if t.shape[0] else jnp.full((1,) + t.shape[1:], fill, t.dtype)


def surface_interaction(arrays: SceneArrays, hit: Hit, origins, directions) -> Interaction:
    """Interpolates the hit data; misses get zeros and index -1."""
    valid = hit.prim >= 0
    prim = jnp.where(valid, hit.prim, 0)
    f = _nonempty(arrays.faces)[prim]
    b1, b2 = hit.b1[..., None], hit.b2[..., None]
    b0 = 1.0 - b1 - b2

    def corners(table):
        t = _nonempty(table)
        return t[f[..., 0]], t[f[..., 1]], t[f[..., 2]]

    def interpolate(table):
        a, b, c = corners(table)
        return b0 * a + b1 * b + b2 * c

    v0, v1, v2 = corners(arrays.vertices)
    p = b0 * v0 + b1 * v1 + b2 * v2
    shape = _nonempty(arrays.shape_of_face)[prim]
    sign = jnp.where(_nonempty(arrays.flip_shape)[shape], -1.0, 1.0)[..., None]
    n = safe_normalize(jnp.cross(v1 - v0, v2 - v0)) * sign
    smooth = _nonempty(arrays.smooth_shape)[shape]
    sh_n = jnp.where(smooth[..., None], safe_normalize(interpolate(arrays.normals)) * sign, n)
    has_uv = None
    if arrays.uv_shape is not None and not arrays.uv_shape.all():
        # Meshes without texture coordinates get Mitsuba's uv = (b1, b2).
        has_uv = _nonempty(arrays.uv_shape)[shape]
    uv = texture_coords(arrays, corners, lambda table: _nonempty(table)[prim], b1, b2, has_uv)
    dp_du = dp_dv = None
    if bool(arrays.tangents):
        # Mitsuba's mesh: dp/du of the triangle's uv parametrization; the
        # edge v1 - v0 (uv = (b1, b2)) without texture coordinates, and
        # coordinate_system(n) where the uvs are degenerate.
        t0, t1, t2 = corners(arrays.uvs)
        duv0, duv1 = t1 - t0, t2 - t0
        dp0, dp1 = v1 - v0, v2 - v0
        det = duv0[..., 0] * duv1[..., 1] - duv0[..., 1] * duv1[..., 0]
        inv = safe_div(1.0, det)[..., None]
        fallback = make_frame(n)
        dp_du = jnp.where((det != 0)[..., None], (duv1[..., 1:2] * dp0 - duv0[..., 1:2] * dp1) * inv, fallback[0])
        dp_dv = jnp.where((det != 0)[..., None], (duv0[..., 0:1] * dp1 - duv1[..., 0:1] * dp0) * inv, fallback[1])
        if has_uv is not None:
            dp_du = jnp.where(has_uv[..., None], dp_du, dp0)
            dp_dv = jnp.where(has_uv[..., None], dp_dv, dp1)
        dp_du = jnp.where(valid[..., None], dp_du, 0.0)
        dp_dv = jnp.where(valid[..., None], dp_dv, 0.0)
    bsdf = _nonempty(arrays.bsdf_of_shape)[shape]
    emitter = _nonempty(arrays.emitter_of_shape, fill=-1)[shape]
    v3 = valid[..., None]
    return Interaction(
        valid=valid,
        p=jnp.where(v3, p, 0.0),
        n=jnp.where(v3, n, 0.0),
        sh_n=jnp.where(v3, sh_n, 0.0),
        uv=jnp.where(v3, uv, 0.0),
        t=jnp.where(valid, hit.t, jnp.inf),
        shape=jnp.where(valid, shape, -1),
        bsdf=jnp.where(valid, bsdf, -1),
        emitter=jnp.where(valid, emitter, -1),
        dp_du=dp_du,
        dp_dv=dp_dv,
    )


def frame_at(si: Interaction):
    """The shading frame (s, t, n) at surface interactions, as Mitsuba's
    `sh_frame`: n the shading normal, s along dp_du where the interaction
    carries it (`shading_frame`), else `make_frame(n)`."""
    return shading_frame(si.sh_n, si.dp_du)


def geometry_of(si: Interaction):
    """(dp_du, dp_dv, n) of the interactions, or None where they carry no
    tangents: what `sampled_direction` and `bsdfs_at` take."""
    return None if si.dp_du is None else (si.dp_du, si.dp_dv, si.n)


def bsdfs_at(scene: Scene, si: Interaction, frame) -> SceneBSDFs:
    """The scene's BSDFs at the interactions, in their shading `frame`."""
    return SceneBSDFs(scene, si.uv, si.bsdf, local_geometry(frame, geometry_of(si)))


def offset_origin(p, n, d):
    """Mitsuba's spawn_ray origin: p pushed off the surface to d's side of n."""
    # The offset's size is a numerical guard, not geometry: detached. (Its
    # derivative through jnp.max divides by the count of maxima, which XLA
    # can make 0/0 when it recomputes p in two fusions that round apart.)
    mag = jax.lax.stop_gradient((1.0 + jnp.max(jnp.abs(p), axis=-1, keepdims=True)) * RAY_EPSILON)
    side = jnp.where(dot(n, d)[..., None] >= 0, 1.0, -1.0)
    return p + n * mag * side
