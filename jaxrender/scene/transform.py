"""Homogeneous 4x4 transforms in JAX, with Mitsuba 3's conventions.

Each builder returns a float32 (4, 4) `jax.Array` equal to the matrix of the
corresponding `mi.ScalarTransform4f` builder, and is differentiable in all of
its arguments (they may be traced). Compose them with `@`, as in Mitsuba:
`translate(t) @ rotate(axis, a) @ scale(s)` scales first.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _vec3(v, name: str) -> jax.Array:
    v = jnp.asarray(v, dtype=jnp.float32)
    if v.ndim == 0:
        v = jnp.broadcast_to(v, (3,))
    if v.shape != (3,):
        raise ValueError(f"{name} must be a scalar or have shape (3,), got {v.shape}")
    return v


def translate(v) -> jax.Array:
    """A translation by v (3,). Differentiable in v."""
    v = _vec3(v, "v")
    return jnp.eye(4, dtype=jnp.float32).at[:3, 3].set(v)


def scale(v) -> jax.Array:
    """A scaling by v: a scalar (uniform) or (3,) per axis. Differentiable in v."""
    v = _vec3(v, "v")
    return jnp.diag(jnp.concatenate([v, jnp.ones((1,), jnp.float32)]))


def rotate(axis, angle) -> jax.Array:
    """A rotation by `angle` degrees about `axis` (3,, normalized here),
    counter-clockwise looking down the axis (right-handed), as Mitsuba's
    `Transform4f.rotate`. Differentiable in axis and angle."""
    a = _vec3(axis, "axis")
    a = a / jnp.linalg.norm(a)
    angle = jnp.asarray(angle, jnp.float32)
    if angle.shape != ():
        raise ValueError(f"angle must be a scalar, got shape {angle.shape}")
    t = jnp.deg2rad(angle)
    s, c = jnp.sin(t), jnp.cos(t)
    cm = 1.0 - c
    x, y, z = a[0], a[1], a[2]
    r = jnp.stack([
        jnp.stack([x * x * cm + c, x * y * cm - z * s, x * z * cm + y * s]),
        jnp.stack([x * y * cm + z * s, y * y * cm + c, y * z * cm - x * s]),
        jnp.stack([x * z * cm - y * s, y * z * cm + x * s, z * z * cm + c]),
    ])
    return jnp.eye(4, dtype=jnp.float32).at[:3, :3].set(r)


def look_at(origin, target, up) -> jax.Array:
    """A camera-to-world transform at `origin` looking at `target`, Mitsuba's
    `Transform4f.look_at`: local +z maps to the viewing direction, local +y to
    `up` made orthogonal to it, local +x to normalize(cross(up, dir)) (image
    left, so Mitsuba's images are not mirrored). Differentiable in all three.
    """
    origin = _vec3(origin, "origin")
    target = _vec3(target, "target")
    up = _vec3(up, "up")
    d = target - origin
    d = d / jnp.linalg.norm(d)
    left = jnp.cross(up, d)
    left = left / jnp.linalg.norm(left)
    new_up = jnp.cross(d, left)
    m = jnp.stack([left, new_up, d, origin], axis=1)
    return jnp.concatenate([m, jnp.array([[0.0, 0.0, 0.0, 1.0]], jnp.float32)], axis=0)


def transform_points(matrix, points) -> jax.Array:
    """Applies a (4, 4) affine transform to points (..., 3). Differentiable."""
    m = jnp.asarray(matrix, jnp.float32)
    return jnp.asarray(points, jnp.float32) @ m[:3, :3].T + m[:3, 3]


def transform_vectors(matrix, vectors) -> jax.Array:
    """Applies the linear part of a (4, 4) transform to vectors (..., 3)."""
    m = jnp.asarray(matrix, jnp.float32)
    return jnp.asarray(vectors, jnp.float32) @ m[:3, :3].T


def transform_normals(matrix, normals) -> jax.Array:
    """Transforms normals (..., 3) by the inverse transpose of the linear part
    of a (4, 4) transform (not renormalized), as Mitsuba does for meshes."""
    m = jnp.asarray(matrix, jnp.float32)
    return jnp.asarray(normals, jnp.float32) @ jnp.linalg.inv(m[:3, :3])
