"""Homogeneous 4x4 transforms in JAX, with Mitsuba 3's conventions.

Each builder returns a float32 (4, 4) `jax.Array` equal to the matrix of the
corresponding `mi.ScalarTransform4f` builder, and is differentiable in all of
its arguments (they may be traced). Compose them with `@`, as in Mitsuba:
`translate(t) @ rotate(axis, a) @ scale(s)` scales first.

Degenerate input (a zero rotation axis; `look_at` with origin == target or
`up` parallel to the viewing direction; NaN or inf anywhere) has no
meaningful matrix. Concrete arguments are checked: ValueError names the
argument. Traced arguments cannot be checked, so the builders stay finite
instead of returning NaN (which would also poison gradients): a zero axis
gives the identity, a zero viewing direction is taken as +z, and an `up`
parallel to it is replaced by Mitsuba's `coordinate_system` tangent (as for
a `<lookat>` without `up`). Gradients there are finite but meaningless.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

# `up` counts as parallel to the viewing direction when the sine of the angle
# between them is below this: float32 cross products of nearer vectors are
# mostly rounding noise.
_PARALLEL_SINE = 1e-6


def _is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _check_finite(fn: str, name: str, x) -> None:
    if not _is_traced(x) and not np.all(np.isfinite(np.asarray(x))):
        raise ValueError(f"{fn}: {name} must be finite, got {np.asarray(x).tolist()}")


def _safe_normalize(v, fallback):
    """(v / |v|, |v| > 0), with `fallback` where v is zero; finite gradients
    everywhere (the double `where` keeps 0/0 out of the backward pass)."""
    n2 = jnp.sum(v * v)
    ok = n2 > 0
    return jnp.where(ok, v / jnp.sqrt(jnp.where(ok, n2, 1.0)), fallback), ok


def _tangent(n) -> jax.Array:
    """First tangent of Mitsuba's `coordinate_system` for a unit vector n."""
    sign = jnp.where(n[2] >= 0, 1.0, -1.0)
    a = -1.0 / (sign + n[2])
    b = n[0] * n[1] * a
    return jnp.stack([1.0 + sign * n[0] * n[0] * a, sign * b, -sign * n[0]])


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
    `Transform4f.rotate`. Differentiable in axis and angle.

    Raises ValueError for a concrete zero or non-finite axis or angle; a
    traced zero axis gives the identity (see the module docstring)."""
    a = _vec3(axis, "axis")
    _check_finite("rotate", "axis", a)
    if not _is_traced(a) and not np.any(np.asarray(a)):
        raise ValueError(f"rotate: axis must be non-zero, got {np.asarray(a).tolist()}")
    a, nonzero = _safe_normalize(a, jnp.zeros(3, jnp.float32))
    angle = jnp.asarray(angle, jnp.float32)
    if angle.shape != ():
        raise ValueError(f"angle must be a scalar, got shape {angle.shape}")
    _check_finite("rotate", "angle", angle)
    t = jnp.deg2rad(angle)
    s, c = jnp.sin(t), jnp.cos(t)
    cm = 1.0 - c
    x, y, z = a[0], a[1], a[2]
    r = jnp.stack([
        jnp.stack([x * x * cm + c, x * y * cm - z * s, x * z * cm + y * s]),
        jnp.stack([x * y * cm + z * s, y * y * cm + c, y * z * cm - x * s]),
        jnp.stack([x * z * cm - y * s, y * z * cm + x * s, z * z * cm + c]),
    ])
    r = jnp.where(nonzero, r, jnp.eye(3, dtype=jnp.float32))
    return jnp.eye(4, dtype=jnp.float32).at[:3, :3].set(r)


def look_at(origin, target, up) -> jax.Array:
    """A camera-to-world transform at `origin` looking at `target`, Mitsuba's
    `Transform4f.look_at`: local +z maps to the viewing direction, local +y to
    `up` made orthogonal to it, local +x to normalize(cross(up, dir)) (image
    left, so Mitsuba's images are not mirrored). Differentiable in all three.

    Raises ValueError for concrete arguments with origin == target, `up`
    zero or (within a sine of 1e-6) parallel to target - origin, or
    non-finite values; traced ones get a finite fallback frame (see the
    module docstring).
    """
    origin = _vec3(origin, "origin")
    target = _vec3(target, "target")
    up = _vec3(up, "up")
    for name, v in (("origin", origin), ("target", target), ("up", up)):
        _check_finite("look_at", name, v)
    d, d_ok = _safe_normalize(target - origin, jnp.array([0.0, 0.0, 1.0], jnp.float32))
    cross = jnp.cross(up, d)
    # Parallel when |up x d| <= sine * |up|, compared squared (no sqrt of 0).
    left_ok = jnp.sum(cross * cross) > (_PARALLEL_SINE**2) * jnp.sum(up * up)
    if not any(_is_traced(v) for v in (origin, target, up)):
        if not bool(d_ok):
            raise ValueError(f"look_at: origin and target are the same point {np.asarray(origin).tolist()}")
        if not np.any(np.asarray(up)):
            raise ValueError("look_at: up must be non-zero")
        if not bool(left_ok):
            angle = math.degrees(math.asin(min(1.0, float(jnp.linalg.norm(cross) / jnp.linalg.norm(up)))))
            raise ValueError(
                f"look_at: up {np.asarray(up).tolist()} is parallel to the viewing direction "
                f"{np.asarray(target - origin).tolist()} ({angle:.2g} degrees apart)"
            )
    safe_cross = jnp.where(left_ok, cross, jnp.array([1.0, 0.0, 0.0], jnp.float32))
    left = jnp.where(left_ok, safe_cross / jnp.linalg.norm(safe_cross), _tangent(d))
    new_up = jnp.cross(d, left)
    m = jnp.stack([left, new_up, d, origin], axis=1)
    return jnp.concatenate([m, jnp.array([[0.0, 0.0, 0.0, 1.0]], jnp.float32)], axis=0)


def _apply_linear(m3, v):
    """v (..., 3) times the transpose of m3 (3, 3), written as broadcasted
    multiply-adds: XLA:CPU hands a matrix product with 3 columns to a
    library call that took 2% of a render on the camera rays alone."""
    v = jnp.asarray(v, jnp.float32)
    return v[..., 0:1] * m3[:, 0] + v[..., 1:2] * m3[:, 1] + v[..., 2:3] * m3[:, 2]


def transform_points(matrix, points) -> jax.Array:
    """Applies a (4, 4) affine transform to points (..., 3). Differentiable."""
    m = jnp.asarray(matrix, jnp.float32)
    return _apply_linear(m[:3, :3], points) + m[:3, 3]


def transform_vectors(matrix, vectors) -> jax.Array:
    """Applies the linear part of a (4, 4) transform to vectors (..., 3)."""
    m = jnp.asarray(matrix, jnp.float32)
    return _apply_linear(m[:3, :3], vectors)


def transform_normals(matrix, normals) -> jax.Array:
    """Transforms normals (..., 3) by the inverse transpose of the linear part
    of a (4, 4) transform (not renormalized), as Mitsuba does for meshes."""
    m = jnp.asarray(matrix, jnp.float32)
    return _apply_linear(jnp.linalg.inv(m[:3, :3]).T, normals)


# A 3x3 matrix counts as singular when |det| <= this times the product of its
# column lengths (Hadamard's bound, reached by orthogonal columns): a measure
# of degeneracy that ignores overall and per-axis scale, so that a tiny but
# well-shaped object is fine and a flattened or sheared-flat one is not.
SINGULAR_RATIO = 1e-6


def is_singular(a) -> bool:
    """Whether the 3x3 part of a transform (numpy, float64) is degenerate by
    SINGULAR_RATIO, whatever its scale: normals and directions need its
    inverse. The loader, the XML parser and `replace` all use this test."""
    a = np.asarray(a, np.float64)
    norms = np.linalg.norm(a, axis=0)
    return not np.all(norms > 0) or abs(np.linalg.det(a)) <= SINGULAR_RATIO * float(np.prod(norms))
