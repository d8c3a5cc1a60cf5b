"""Sample warps, local shading frames, a 2D piecewise-constant distribution
and multiple-importance-sampling weights.

Every warp maps uniform samples `u` of shape (..., 2) in [0, 1)^2 to a point of
its domain, exactly as Mitsuba 3's `mi.warp.square_to_*` (same formulas, so
the same `u` gives the same point up to float rounding), and has a `_pdf`
giving the density of its output with respect to solid angle (directions) or
area (disk, triangle). Unlike Mitsuba's default (`TestDomain = false`), the
pdfs here are 0 outside the warp's support (below the horizon for the
hemispheres, outside the cone, disk or triangle); they do not check that a
direction has unit length.

All functions are pure, batch over leading axes, work under jit/vmap/grad, and
have finite derivatives everywhere (sampled points are differentiable with
respect to `u` and to `cos_cutoff`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxrender.integrators._math import (
    INV_FOUR_PI,
    INV_PI,
    INV_TWO_PI,
    as_float,
    dot,
    materialize,
    mulsign,
    mulsign_neg,
    safe_div,
    safe_sqrt,
    sincos,
    squared_norm,
    vec2,
    vec3,
)
from jaxrender.scene.textures import luminance  # defined with the textures' eval_1, which reads it

__all__ = [
    "square_to_uniform_disk_concentric",
    "square_to_uniform_disk_concentric_pdf",
    "square_to_uniform_triangle",
    "square_to_uniform_triangle_pdf",
    "square_to_uniform_sphere",
    "square_to_uniform_sphere_pdf",
    "square_to_uniform_hemisphere",
    "square_to_uniform_hemisphere_pdf",
    "square_to_cosine_hemisphere",
    "square_to_cosine_hemisphere_pdf",
    "square_to_uniform_cone",
    "square_to_uniform_cone_pdf",
    "make_frame",
    "to_local",
    "to_world",
    "PiecewiseConstant2D",
    "luminance",
    "power_heuristic",
    "balance_heuristic",
]


# --------------------------------------------------------------------------
# Planar warps.


def square_to_uniform_disk_concentric(u):
    """Shirley-Chiu concentric map of the square onto the unit disk.

    Args:
      u: (..., 2) uniform samples.
    Returns:
      (..., 2) points, uniform by area on the unit disk (Mitsuba's branchless
      variant by Dave Cline, so neighbouring samples stay neighbours).
    """
    u = as_float(u)
    x = 2 * u[..., 0] - 1
    y = 2 * u[..., 1] - 1
    is_zero = (x == 0) & (y == 0)
    quadrant_1_or_3 = jnp.abs(x) < jnp.abs(y)
    r = jnp.where(quadrant_1_or_3, y, x)
    rp = jnp.where(quadrant_1_or_3, x, y)
    # |r| = max(|x|, |y|) is 0 only at the centre, which is_zero handles.
    phi = 0.25 * jnp.pi * safe_div(rp, r)
    phi = jnp.where(quadrant_1_or_3, 0.5 * jnp.pi - phi, phi)
    phi = jnp.where(is_zero, 0, phi)
    sin, cos = sincos(phi)
    return vec2(r * cos, r * sin)


def square_to_uniform_disk_concentric_pdf(p):
    """Density (per unit area) of `square_to_uniform_disk_concentric`: 1/pi
    inside the unit disk, 0 outside."""
    p = as_float(p)
    return jnp.where(squared_norm(p) <= 1, INV_PI, 0).astype(p.dtype)


def square_to_uniform_triangle(u):
    """Uniform barycentric coordinates (b1, b2) on a triangle (Mitsuba's map:
    b1 = 1 - sqrt(1 - u0), b2 = sqrt(1 - u0) u1).

    Args:
      u: (..., 2) uniform samples.
    Returns:
      (..., 2) barycentrics of the second and third vertex.
    """
    u = as_float(u)
    t = safe_sqrt(1 - u[..., 0])
    return vec2(1 - t, t * u[..., 1])


def square_to_uniform_triangle_pdf(p):
    """Density (per unit area of the (b1, b2) triangle) of
    `square_to_uniform_triangle`: 2 inside, 0 outside."""
    p = as_float(p)
    inside = (p[..., 0] >= 0) & (p[..., 1] >= 0) & (p[..., 0] + p[..., 1] <= 1)
    return jnp.where(inside, 2.0, 0.0).astype(p.dtype)


# --------------------------------------------------------------------------
# Spherical warps.


def square_to_uniform_sphere(u):
    """Uniform directions on the unit sphere: z = 1 - 2 u1, phi = 2 pi u0.

    Args:
      u: (..., 2) uniform samples.
    Returns:
      (..., 3) unit vectors.
    """
    u = as_float(u)
    z = 1 - 2 * u[..., 1]
    r = safe_sqrt(1 - z * z)
    phi = 2 * jnp.pi * u[..., 0]
    sin, cos = sincos(phi)
    return vec3(r * cos, r * sin, z)


def square_to_uniform_sphere_pdf(v):
    """Density (per steradian) of `square_to_uniform_sphere`: 1 / (4 pi)."""
    v = as_float(v)
    return jnp.full(v.shape[:-1], INV_FOUR_PI, v.dtype)


def square_to_uniform_hemisphere(u):
    """Uniform directions on the upper (z >= 0) hemisphere, through the
    concentric disk (Mitsuba's low-distortion variant).

    Args:
      u: (..., 2) uniform samples.
    Returns:
      (..., 3) unit vectors with z >= 0.
    """
    p = square_to_uniform_disk_concentric(u)
    z = 1 - squared_norm(p)
    p = p * jnp.sqrt(z + 1)[..., None]
    return vec3(p[..., 0], p[..., 1], z)


def square_to_uniform_hemisphere_pdf(v):
    """Density (per steradian) of `square_to_uniform_hemisphere`: 1 / (2 pi)
    for z >= 0, else 0."""
    v = as_float(v)
    return jnp.where(v[..., 2] >= 0, INV_TWO_PI, 0).astype(v.dtype)


def square_to_cosine_hemisphere(u):
    """Cosine-weighted directions on the upper hemisphere (concentric disk
    lifted to the hemisphere, Malley's method).

    Args:
      u: (..., 2) uniform samples.
    Returns:
      (..., 3) unit vectors with z >= 0.
    """
    p = square_to_uniform_disk_concentric(u)
    # Computed once into buffers: XLA would otherwise recompute the disk
    # sample (hash, sincos) for each of the vector's three components.
    x, y = materialize(p[..., 0]), materialize(p[..., 1])
    z = safe_sqrt(1 - x * x - y * y)
    return vec3(x, y, z)


def square_to_cosine_hemisphere_pdf(v):
    """Density (per steradian) of `square_to_cosine_hemisphere`: max(z, 0) / pi.
    Differentiable in v."""
    v = as_float(v)
    return jnp.maximum(v[..., 2], 0) * INV_PI


def square_to_uniform_cone(u, cos_cutoff):
    """Uniform directions in the cone of half-angle acos(cos_cutoff) around +z
    (Mitsuba's concentric variant).

    Args:
      u: (..., 2) uniform samples.
      cos_cutoff: (...) cosine of the half-angle, in [-1, 1). Differentiable.
    Returns:
      (..., 3) unit vectors with z >= cos_cutoff.
    """
    cos_cutoff = as_float(cos_cutoff)
    one_minus = 1 - cos_cutoff
    p = square_to_uniform_disk_concentric(u)
    pn = squared_norm(p)
    z = cos_cutoff + one_minus * (1 - pn)
    p = p * safe_sqrt(one_minus * (2 - one_minus * pn))[..., None]
    return vec3(p[..., 0], p[..., 1], z)


def square_to_uniform_cone_pdf(v, cos_cutoff):
    """Density (per steradian) of `square_to_uniform_cone`:
    1 / (2 pi (1 - cos_cutoff)) inside the cone, 0 outside."""
    v = as_float(v)
    cos_cutoff = as_float(cos_cutoff)
    pdf = INV_TWO_PI * safe_div(1.0, 1 - cos_cutoff)
    return jnp.where(v[..., 2] >= cos_cutoff, pdf, 0).astype(v.dtype)


# --------------------------------------------------------------------------
# Local shading frames.


def make_frame(n):
    """An orthonormal basis (s, t, n) around the unit normal n.

    Branchless construction of Duff et al., "Building an Orthonormal Basis,
    Revisited" (JCGT 2017), bit for bit Mitsuba's `coordinate_system` (so a
    shading frame, and hence every local direction, matches Mitsuba's).
    (s, t, n) is right-handed: s x t = n.

    Args:
      n: (..., 3) unit normals. Differentiable (the frame is smooth in n away
        from nothing: the construction has no singularity on the sphere).
    Returns:
      A tuple (s, t, n) of (..., 3) arrays.
    """
    n = as_float(n)
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    # The sign of z by its sign bit, as Mitsuba's coordinate_system takes it
    # (measured: its frame of (0.6, -0.8, -0.0) is that of z < 0): with
    # mulsign's sign-bit tests below the basis stays orthonormal at z = -0.0
    # (flipped normals of walls parallel to z). The denominator is never 0.
    sign = jnp.where(jnp.signbit(z), -1.0, 1.0).astype(n.dtype)
    a = -1 / (sign + z)
    b = x * y * a
    s = vec3(mulsign(x * x * a, z) + 1, mulsign(b, z), mulsign_neg(x, z))
    t = vec3(b, y * (y * a) + sign, -y)
    return s, t, n


def shading_frame(n, dp_du=None):
    """Mitsuba's shading frame (`initialize_sh_frame`): the unit normal n
    (..., 3), s = the part of dp_du (..., 3) orthogonal to n, normalized,
    t = n x s. Where dp_du has no such part, or is None (scenes whose BSDFs
    do not care about the tangent), `make_frame(n)`. The orientation of s
    matters to anisotropic BSDFs and normal maps only. Differentiable in n
    and dp_du."""
    if dp_du is None:
        return make_frame(n)
    n = as_float(n)
    s = dp_du - n * dot(n, dp_du)[..., None]
    s2 = jnp.sum(s * s, axis=-1)
    ok = s2 > 1e-20 * jnp.maximum(jnp.sum(dp_du * dp_du, axis=-1), 1e-30)
    fallback = make_frame(n)[0]
    s = jnp.where(ok[..., None], s * jax.lax.rsqrt(jnp.where(ok, s2, 1.0))[..., None], fallback)
    return s, jnp.cross(n, s), n


def to_local(frame, v):
    """World-space vectors v (..., 3) in the frame (s, t, n) from `make_frame`."""
    s, t, n = frame
    return vec3(dot(v, s), dot(v, t), dot(v, n))


def to_world(frame, v):
    """Local vectors v (..., 3) of the frame (s, t, n) back in world space."""
    s, t, n = frame
    return s * v[..., 0:1] + t * v[..., 1:2] + n * v[..., 2:3]


# --------------------------------------------------------------------------
# Piecewise-constant 2D distribution (environment-map importance sampling).


def _search(cdf, offset, count, x):
    """For each query, the largest i in [0, count) with cdf[offset + i] <= x.

    `cdf` is a flat array holding, from each `offset`, a nondecreasing run of
    count + 1 values; a fixed number of bisection steps (static) keeps this a
    few gathers per query instead of one row copy per query.
    """
    lo = jnp.zeros_like(offset)
    hi = jnp.full_like(offset, count)  # invariant: cdf[lo] <= x < cdf[hi] (hi virtual)
    for _ in range(max(1, math.ceil(math.log2(count + 1)))):
        mid = (lo + hi) // 2
        go_right = cdf[offset + mid] <= x
        lo = jnp.where(go_right, mid, lo)
        hi = jnp.where(go_right, hi, mid)
    return jnp.clip(lo, 0, count - 1)


@dataclasses.dataclass(frozen=True)
class PiecewiseConstant2D:
    """A piecewise-constant density on the unit square, one constant per texel.

    Built from nonnegative texel weights `data` (H, W), typically an
    environment map's luminance (times sin(theta) of each row for a
    latitude-longitude map, to turn the density per uv area into one that
    samples directions well; that factor is the caller's business).

    Conventions (our own; Mitsuba's `Hierarchical2D`/`DiscreteDistribution2D`
    are not reproduced): uv = (u, v) in [0, 1)^2, u along the width (column
    index floor(u W)), v along the height (row index floor(v H), row 0 at
    v = 0, i.e. the top row of an image). The density is per unit uv area:
    pdf(uv) = data[row, col] / mean(data), so it integrates to 1 over the
    square. Sampling picks a row from the marginal CDF with u[..., 1], then a
    column from that row's conditional CDF with u[..., 0], and places the
    point inside the texel with the rescaled remainders of the two samples
    (so the map from u to uv is monotonic in each coordinate). If all of
    `data` is zero the distribution is uniform.

    Attributes:
      pdf_table: (H, W) the density in each texel (data / mean(data)).
      marginal_cdf: (H + 1,) row CDF, from 0 to exactly 1.
      conditional_cdf: (H, W + 1) per-row CDFs, each from 0 to exactly 1 (a
        row of zeros gets a uniform CDF; it is never chosen).

    A pytree of arrays: build it once inside or outside jit with
    `PiecewiseConstant2D.build(data)` and pass it to jitted functions.
    `pdf` is differentiable with respect to `data` (through `build`). The
    sampled uv is the inverse-CDF map of u: differentiable in u, and in `data`
    only through the position inside the chosen texel (which texel is chosen
    is piecewise constant).
    """

    pdf_table: jax.Array
    marginal_cdf: jax.Array
    conditional_cdf: jax.Array

    @staticmethod
    def build(data) -> "PiecewiseConstant2D":
        """Builds the distribution from texel weights `data` of shape (H, W)."""
        data = as_float(data)
        if data.ndim != 2:
            raise ValueError(f"data must have shape (H, W), got {data.shape}")
        h, w = data.shape
        if h == 0 or w == 0:
            raise ValueError(f"data must be non-empty, got shape {data.shape}")
        # Negative texels (e.g. from EXR filtering) count as empty. A zero
        # texel keeps its derivative (one-sided, from above).
        data = jnp.where(data >= 0, data, 0)
        total = jnp.sum(data)
        has_mass = total > 0
        mean = jnp.where(has_mass, total, 1) / (h * w)
        pdf_table = jnp.where(has_mass, data / mean, 1.0)

        # CDFs of the (normalized) table, cumulated in its dtype and pinned to
        # end at exactly 1, so that u < 1 always falls inside the table.
        row_sums = jnp.sum(pdf_table, axis=1)
        row_cdf = jnp.cumsum(pdf_table, axis=1)
        row_has_mass = row_sums > 0
        row_cdf = jnp.where(
            row_has_mass[:, None],
            row_cdf / jnp.where(row_has_mass, row_sums, 1)[:, None],
            jnp.arange(1, w + 1, dtype=data.dtype)[None, :] / w,
        )
        row_cdf = row_cdf.at[:, -1].set(1)
        conditional_cdf = jnp.concatenate([jnp.zeros((h, 1), data.dtype), row_cdf], axis=1)
        marg = jnp.cumsum(row_sums) / jnp.sum(row_sums)
        marg = marg.at[-1].set(1)
        marginal_cdf = jnp.concatenate([jnp.zeros((1,), data.dtype), marg])
        return PiecewiseConstant2D(pdf_table, marginal_cdf, conditional_cdf)

    @property
    def shape(self) -> tuple[int, int]:
        return self.pdf_table.shape

    def sample(self, u):
        """Samples positions.

        Args:
          u: (..., 2) uniform samples in [0, 1)^2.
        Returns:
          (uv (..., 2) in [0, 1)^2, pdf (...) per unit uv area, > 0).
        """
        u = as_float(u)
        h, w = self.shape
        dt = self.pdf_table.dtype
        u0, u1 = u[..., 0].astype(dt), u[..., 1].astype(dt)
        zero = jnp.zeros(u.shape[:-1], jnp.int32)

        row = _search(self.marginal_cdf, zero, h, u1)
        c0 = self.marginal_cdf[row]
        c1 = self.marginal_cdf[row + 1]
        dv = jnp.clip(safe_div(u1 - c0, c1 - c0), 0, 1)

        cond = self.conditional_cdf.reshape(-1)
        offset = row * (w + 1)
        col = _search(cond, offset, w, u0)
        d0 = cond[offset + col]
        d1 = cond[offset + col + 1]
        du = jnp.clip(safe_div(u0 - d0, d1 - d0), 0, 1)

        # Keep uv inside its texel (hence < 1) despite rounding.
        uv_u = jnp.minimum((col.astype(dt) + du) / w, jnp.nextafter((col + 1).astype(dt) / w, 0))
        uv_v = jnp.minimum((row.astype(dt) + dv) / h, jnp.nextafter((row + 1).astype(dt) / h, 0))
        return vec2(uv_u, uv_v), self.pdf_table[row, col]

    def pdf(self, uv):
        """Density per unit uv area at positions uv (..., 2); 0 outside
        [0, 1]^2 (uv = 1 exactly belongs to the last texel)."""
        uv = as_float(uv)
        h, w = self.shape
        inside = jnp.all((uv >= 0) & (uv <= 1), axis=-1)
        col = jnp.clip(jnp.floor(uv[..., 0] * w).astype(jnp.int32), 0, w - 1)
        row = jnp.clip(jnp.floor(uv[..., 1] * h).astype(jnp.int32), 0, h - 1)
        return jnp.where(inside, self.pdf_table[row, col], 0)


jax.tree_util.register_dataclass(
    PiecewiseConstant2D,
    data_fields=["pdf_table", "marginal_cdf", "conditional_cdf"],
    meta_fields=[],
)


# --------------------------------------------------------------------------
# Multiple importance sampling.


def _normalized_pdfs(pdf_a, pdf_b):
    """(a / m, b / m) with m = max(a, b) held constant: the heuristics are
    scale invariant, and dividing by the larger pdf keeps squares and
    quotients in range (derivatives stay finite for pdfs near 0 or 1e38)."""
    a = as_float(pdf_a)
    b = as_float(pdf_b)
    a_inf = jnp.isinf(a)
    a = jnp.where(a_inf, 1, a)
    b = jnp.where(a_inf, 0, b)
    m = jax.lax.stop_gradient(jnp.maximum(a, b))
    return safe_div(a, m), safe_div(b, m)


def power_heuristic(pdf_a, pdf_b):
    """Veach's power heuristic (beta = 2): pdf_a^2 / (pdf_a^2 + pdf_b^2).

    The MIS weight of a sample drawn with density pdf_a when pdf_b is the
    other strategy's density for the same sample. 0 when both are 0; 1 when
    pdf_a is +inf (a delta lobe) and pdf_b finite. Differentiable, NaN-free.
    """
    a, b = _normalized_pdfs(pdf_a, pdf_b)
    return safe_div(a * a, a * a + b * b)


def balance_heuristic(pdf_a, pdf_b):
    """Veach's balance heuristic pdf_a / (pdf_a + pdf_b); conventions as
    `power_heuristic`."""
    a, b = _normalized_pdfs(pdf_a, pdf_b)
    return safe_div(a, a + b)
