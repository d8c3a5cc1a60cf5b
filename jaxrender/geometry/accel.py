"""Ray tracing against triangle meshes: `build_bvh`, `intersect`, `occluded`.

The queries run native kernels (C++ on the CPU, CUDA on the GPU) through XLA's
FFI. Their outputs are piecewise constant in the geometry (which triangle is
hit), so the derivative rule recomputes the hit in JAX on the triangle that
was found: `t`, `b1`, `b2` then differentiate with respect to vertex
positions, ray origins and ray directions in forward and reverse mode.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap
from jax.custom_derivatives import SymbolicZero

from jaxrender.geometry import _ffi


@dataclasses.dataclass(frozen=True)
class Accel:
    """A bounding volume hierarchy over a triangle mesh, as flat arrays.

    Attributes:
      nodes: int32 (M, 32). 4-wide BVH nodes holding their children's boxes
        (float bit patterns) and links; see cuda/include/jaxrender/bvh.h.
      tris: float32 (F, 9). The triangles' vertices, reordered into leaf order.
      prim_ids: int32 (F,). For each row of `tris`, the index of its face.

    An Accel is a pytree whose leaves are never differentiated. It is only
    valid for the vertex positions it was built from.
    """

    nodes: jax.Array
    tris: jax.Array
    prim_ids: jax.Array

    @property
    def num_faces(self) -> int:
        return self.prim_ids.shape[-1]


jax.tree_util.register_dataclass(
    Accel, data_fields=["nodes", "tris", "prim_ids"], meta_fields=[]
)


class Hit(NamedTuple):
    """Closest hits of a batch of rays.

    t: float32, distance along the ray in units of the direction's length
      (+inf on a miss). prim: int32 face index (-1 on a miss). b1, b2: float32
      barycentric weights of the face's second and third vertex (0 on a miss);
      the hit point is (1 - b1 - b2) v0 + b1 v1 + b2 v2.
    """

    t: jax.Array
    prim: jax.Array
    b1: jax.Array
    b2: jax.Array


# --------------------------------------------------------------------------
# Input checking: every error names the parameter, before any kernel runs.


def _as_float_array(x, name: str, last_dim: int | None) -> jax.Array:
    if isinstance(x, (list, tuple, int, float)) and not isinstance(x, bool):
        try:
            x = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name} must be a floating-point array: {e}") from None
    dtype = getattr(x, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {dtype}")
    if last_dim is not None and (np.ndim(x) < 1 or np.shape(x)[-1] != last_dim):
        raise ValueError(f"{name} must have shape (..., {last_dim}), got {np.shape(x)}")
    return jnp.asarray(x, dtype=jnp.float32)


def _check_mesh(vertices, faces):
    vertices = _as_float_array(vertices, "vertices", 3)
    if vertices.ndim != 2:
        raise ValueError(f"vertices must have shape (V, 3), got {vertices.shape}")
    if isinstance(faces, (list, tuple)):
        faces = np.asarray(faces, dtype=np.int32).reshape(-1, 3)
    fdtype = getattr(faces, "dtype", None)
    if fdtype is None or not jnp.issubdtype(fdtype, jnp.integer):
        raise TypeError(f"faces must be an integer array, got dtype {fdtype}")
    if np.ndim(faces) != 2 or np.shape(faces)[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {np.shape(faces)}")
    if not isinstance(faces, jax.core.Tracer):
        f = np.asarray(faces)
        bad = np.nonzero(((f < 0) | (f >= vertices.shape[0])).any(axis=1))[0]
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"faces[{i}] = {f[i].tolist()} indexes a vertex outside "
                f"[0, {vertices.shape[0]}) ({bad.size} faces out of range)"
            )
    return vertices, jnp.asarray(faces, dtype=jnp.int32)


def _check_rays(origins, directions, t_max):
    origins = _as_float_array(origins, "origins", 3)
    directions = _as_float_array(directions, "directions", 3)
    if origins.shape != directions.shape:
        raise ValueError(
            f"origins and directions must have the same shape, got {origins.shape} "
            f"and {directions.shape}"
        )
    batch = origins.shape[:-1]
    if t_max is None:
        t_max = jnp.full(batch, jnp.inf, jnp.float32)
    else:
        t_max = _as_float_array(t_max, "t_max", None)
        if t_max.shape != batch:
            t_max = jnp.broadcast_to(t_max, batch) if t_max.ndim == 0 else t_max
        if t_max.shape != batch:
            raise ValueError(f"t_max must have shape {batch} (one per ray), got {t_max.shape}")
    return origins, directions, t_max


def _check_accel(accel, faces=None):
    if not isinstance(accel, Accel):
        raise TypeError(f"accel must be an Accel from build_bvh, got {type(accel).__name__}")
    if faces is not None and np.ndim(faces) == 2 and accel.num_faces != np.shape(faces)[0]:
        # A BVH of another mesh would report face indices of that mesh.
        raise ValueError(f"accel was built for {accel.num_faces} faces, but faces has {np.shape(faces)[0]}: "
                         "build it from these vertices and faces (build_bvh)")
    if accel.nodes.dtype != jnp.int32 or accel.nodes.shape[-1:] != (_ffi.NODE_WORDS,):
        raise ValueError(f"accel.nodes must be int32 (M, {_ffi.NODE_WORDS}), got {accel.nodes.dtype} {accel.nodes.shape}")
    if accel.tris.dtype != jnp.float32 or accel.tris.shape[-1:] != (9,):
        raise ValueError(f"accel.tris must be float32 (F, 9), got {accel.tris.dtype} {accel.tris.shape}")


# --------------------------------------------------------------------------
# BVH construction.


_BVH_METHODS = {"sah": 0, "lbvh": 1}


def build_bvh(vertices, faces, *, method: str = "sah") -> Accel:
    """Builds a BVH over a triangle mesh.

    Args:
      vertices: float (V, 3) world-space positions (cast to float32).
      faces: integer (F, 3) vertex indices per triangle. F may be 0.
      method: "sah" (binned surface-area heuristic; best trees) or "lbvh"
        (Morton-code linear BVH; faster to build, slower to trace). Applies
        on the CPU; on the GPU the builder is always LBVH.

    Returns:
      An `Accel`. CPU: parallel over XLA's thread pool. GPU: LBVH.
      Works inside `jit` (rebuild every step while optimizing geometry) and is
      not differentiated (its output holds no derivative information).
      Triangles with non-finite vertices are left out and never hit; face
      indices outside [0, V) raise, here when `faces` is concrete, else when
      the kernel runs.
    """
    if method not in _BVH_METHODS:
        raise ValueError(f"method must be one of {sorted(_BVH_METHODS)}, got {method!r}")
    vertices, faces = _check_mesh(vertices, faces)
    vertices = jax.lax.stop_gradient(vertices)
    num_faces = faces.shape[0]
    out_types = (
        jax.ShapeDtypeStruct((_ffi.max_bvh_nodes(num_faces), _ffi.NODE_WORDS), jnp.int32),
        jax.ShapeDtypeStruct((num_faces, 9), jnp.float32),
        jax.ShapeDtypeStruct((num_faces,), jnp.int32),
    )
    nodes, tris, prim_ids = jax.ffi.ffi_call(
        _ffi.BUILD_BVH, out_types, vmap_method="sequential"
    )(vertices, faces, method=np.int32(_BVH_METHODS[method]))
    return Accel(nodes, tris, prim_ids)


# --------------------------------------------------------------------------
# Raw queries on flat ray batches, with a batching rule that keeps one shared
# Accel: a batch of ray sets is flattened into one larger ray batch.


def _query_types(name, n):
    if name == _ffi.INTERSECT:
        f, i = jnp.float32, jnp.int32
        return tuple(jax.ShapeDtypeStruct((n,), dt) for dt in (f, i, f, f))
    return (jax.ShapeDtypeStruct((n,), jnp.bool_),)


def _make_raw_query(name):
    @custom_vmap
    def raw(nodes, tris, prim_ids, origins, directions, t_max):
        n = t_max.shape[0]
        return jax.ffi.ffi_call(name, _query_types(name, n), vmap_method="sequential")(
            nodes, tris, prim_ids, origins, directions, t_max
        )

    @raw.def_vmap
    def raw_vmap(axis_size, in_batched, nodes, tris, prim_ids, origins, directions, t_max):
        accel_batched = any(in_batched[:3])
        rays = []
        for x, b in zip((origins, directions, t_max), in_batched[3:]):
            rays.append(x if b else jnp.broadcast_to(x, (axis_size,) + x.shape))
        if not accel_batched:
            n = rays[2].shape[1]
            out = raw(nodes, tris, prim_ids, rays[0].reshape(-1, 3),
                      rays[1].reshape(-1, 3), rays[2].reshape(-1))
            out = tuple(y.reshape(axis_size, n) for y in out)
        else:
            accel = [x if b else jnp.broadcast_to(x, (axis_size,) + x.shape)
                     for x, b in zip((nodes, tris, prim_ids), in_batched[:3])]
            out = jax.lax.map(lambda args: raw(*args), (*accel, *rays))
        return out, tuple(True for _ in out)

    return raw


_intersect_raw = _make_raw_query(_ffi.INTERSECT)
_occluded_raw = _make_raw_query(_ffi.OCCLUDED)


# --------------------------------------------------------------------------
# Differentiable closest hit.

_SAFE_TRI = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
_SAFE_ORIGIN = np.array([0.25, 0.25, 1.0], np.float32)
_SAFE_DIRECTION = np.array([0.0, 0.0, -1.0], np.float32)


def _reintersect(vertices, faces, prim, hit, origins, directions):
    """Moeller-Trumbore on the fixed triangles `prim` -> (t, b1, b2).

    Rays that missed are swapped for a canonical ray/triangle pair before any
    arithmetic (the double-`where` trick), so their derivatives are exactly
    zero rather than NaN, whatever their inputs held.
    """
    tri = vertices[faces[jnp.where(hit, prim, 0)]]  # (N, 3, 3)
    h = hit[:, None]
    tri = jnp.where(h[..., None], tri, _SAFE_TRI)
    o = jnp.where(h, origins, _SAFE_ORIGIN)
    d = jnp.where(h, directions, _SAFE_DIRECTION)
    v0, v1, v2 = tri[:, 0], tri[:, 1], tri[:, 2]
    e1 = v1 - v0
    e2 = v2 - v0
    p = jnp.cross(d, e2)
    det = jnp.sum(e1 * p, axis=-1)
    # The kernel found a hit, so det != 0 up to rounding; keep 1/det finite.
    det = jnp.where(jnp.abs(det) > 1e-30, det, 1e-30)
    inv = 1.0 / det
    s = o - v0
    q = jnp.cross(s, e1)
    b1 = jnp.sum(s * p, axis=-1) * inv
    b2 = jnp.sum(d * q, axis=-1) * inv
    t = jnp.sum(e2 * q, axis=-1) * inv
    return t, b1, b2


@jax.custom_jvp
def _intersect_flat(accel, vertices, faces, origins, directions, t_max):
    return Hit(*_intersect_raw(accel.nodes, accel.tris, accel.prim_ids, origins, directions, t_max))


@_intersect_flat.defjvp
def _intersect_flat_jvp(primals, tangents):
    accel, vertices, faces, origins, directions, t_max = primals
    _, dv, _, do, dd, _ = tangents
    hit = _intersect_flat(accel, vertices, faces, origins, directions, t_max)
    found = hit.prim >= 0
    # Differentiate only with respect to inputs that carry a tangent.
    names = ("vertices", "origins", "directions")
    values = dict(zip(names, (vertices, origins, directions)))
    active = {k: t for k, t in zip(names, (dv, do, dd)) if not isinstance(t, SymbolicZero)}
    # With no faces nothing can be hit, and there is no triangle to gather.
    if active and faces.shape[0] > 0:
        def f(*xs):
            kw = {**values, **dict(zip(active, xs))}
            return _reintersect(kw["vertices"], faces, hit.prim, found, kw["origins"], kw["directions"])

        _, (dt, db1, db2) = jax.jvp(f, tuple(values[k] for k in active), tuple(active.values()))
        zero = jnp.zeros_like(hit.t)
        dt, db1, db2 = (jnp.where(found, x, zero) for x in (dt, db1, db2))
    else:
        dt = db1 = db2 = jnp.zeros_like(hit.t)
    dprim = np.zeros(hit.prim.shape, dtype=jax.dtypes.float0)
    return hit, Hit(dt, dprim, db1, db2)


_intersect_flat.defjvp(_intersect_flat_jvp, symbolic_zeros=True)


def intersect(accel: Accel, vertices, faces, origins, directions, t_max=None) -> Hit:
    """Closest hit of each ray o + t d with 0 < t < t_max.

    Args:
      accel: `Accel` built by `build_bvh(vertices, faces)`.
      vertices: float (V, 3), the positions `accel` was built from.
        Differentiable.
      faces: integer (F, 3). Not differentiable.
      origins, directions: float (..., 3), any batch shape, including empty.
        Differentiable. Directions need not be unit length; NaN or infinite
        rays and zero directions miss.
      t_max: float (...), optional upper bound per ray (default +inf).

    Returns:
      `Hit(t, prim, b1, b2)` with the rays' batch shape. Derivatives of `t`,
      `b1`, `b2` with respect to vertices, origins and directions hold the hit
      triangle fixed (visibility changes are the boundary terms' job); misses
      have zero derivatives. Works under `jit`, `grad`, `jvp` and `vmap`
      (a shared `accel` is never copied per batch element).
    """
    _check_accel(accel, faces)
    vertices, faces = _check_mesh(vertices, faces)
    origins, directions, t_max = _check_rays(origins, directions, t_max)
    batch = origins.shape[:-1]
    hit = _intersect_flat(
        accel, vertices, faces, origins.reshape(-1, 3), directions.reshape(-1, 3), t_max.reshape(-1)
    )
    return Hit(*(x.reshape(batch) for x in hit))


def occluded(accel: Accel, vertices, faces, origins, directions, t_max=None) -> jax.Array:
    """Whether anything is hit along o + t d with 0 < t < t_max (any hit).

    Same arguments as `intersect`; returns a bool array of the rays' batch
    shape. Stops at the first hit found. Not differentiable (boolean output;
    inputs pass through `stop_gradient`).
    """
    _check_accel(accel, faces)
    vertices, faces = _check_mesh(vertices, faces)
    origins, directions, t_max = _check_rays(origins, directions, t_max)
    batch = origins.shape[:-1]
    args = jax.lax.stop_gradient((origins.reshape(-1, 3), directions.reshape(-1, 3), t_max.reshape(-1)))
    (out,) = _occluded_raw(accel.nodes, accel.tris, accel.prim_ids, *args)
    return out.reshape(batch)
