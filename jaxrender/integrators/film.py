"""The film: reconstruction filters, splatting samples into pixels, and the
camera rays' far clip."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxrender.integrators._math import dot
from jaxrender.scene import Camera, Radiancemeter


def filter_weight(rfilter, x):
    """Mitsuba's 1D reconstruction filters at offsets x from a pixel centre."""
    if rfilter.type == "tent":
        return jnp.maximum(0.0, 1.0 - jnp.abs(x) / rfilter.radius)
    if rfilter.type == "gaussian":
        alpha = -1.0 / (2.0 * rfilter.stddev**2)
        cut = jnp.exp(alpha * rfilter.radius**2)
        return jnp.maximum(0.0, jnp.exp(alpha * x * x) - cut)
    if rfilter.type == "mitchell":
        b, c = rfilter.b, rfilter.c
        x = jnp.abs(x)
        x2 = x * x
        x3 = x2 * x
        near = (12 - 9 * b - 6 * c) * x3 + (-18 + 12 * b + 6 * c) * x2 + (6 - 2 * b)
        far = (-b - 6 * c) * x3 + (6 * b + 30 * c) * x2 + (-12 * b - 48 * c) * x + (8 * b + 24 * c)
        return jnp.where(x < 1, near, jnp.where(x < 2, far, 0.0)) / 6
    if rfilter.type == "lanczos":
        # sinc(x) sinc(x / lobes) inside the lobes (jnp.sinc is sin(pi x) / (pi x)).
        return jnp.where(jnp.abs(x) < rfilter.radius, jnp.sinc(x) * jnp.sinc(x / rfilter.radius), 0.0)
    return (jnp.abs(x) <= rfilter.radius).astype(jnp.float32)  # box


def filter_reach(rfilter) -> int:
    """How many pixels beyond its own a sample's filter reaches (static)."""
    return math.ceil(rfilter.radius - 0.5) if rfilter.radius > 0.5 else 0


def splat(rfilter, values, offsets, height, width):
    """Weighted splat of samples (S, H, W, C) taken at `offsets` (S, H, W, 2)
    inside their pixels into every pixel within the filter's radius.
    Returns (weighted sums (H, W, C), weight sums (H, W, 1)). Samples stay in
    their own pixel's cell, so each neighbour is one shift of the image."""
    r = filter_reach(rfilter)
    c = values.shape[-1]
    acc = jnp.zeros((height + 2 * r, width + 2 * r, c + 1), jnp.float32)
    # The weight sum rides along as one more channel.
    values = jnp.concatenate([values, jnp.ones(values.shape[:-1] + (1,), values.dtype)], axis=-1)

    def add(acc, dy, dx):
        w = filter_weight(rfilter, dy + 0.5 - offsets[..., 1]) * filter_weight(rfilter, dx + 0.5 - offsets[..., 0])
        shifted = jnp.sum(w[..., None] * values, axis=0)
        start = (r + dy, r + dx, 0)
        return jax.lax.dynamic_update_slice(acc, jax.lax.dynamic_slice(acc, start, shifted.shape) + shifted, start)

    side = 2 * r + 1
    if side * side <= _UNROLLED_OFFSETS:
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                acc = add(acc, dy, dx)
    else:
        # Wide filters in a loop: unrolled, compile time grows with the
        # footprint's area (minutes at radius 12).
        acc = jax.lax.fori_loop(0, side * side, lambda k, acc: add(acc, k // side - r, k % side - r), acc)
    acc = acc[r:r + height, r:r + width]
    return acc[..., :c], acc[..., c:]


# Footprints of up to this many pixels are splatted by unrolled code (the
# box and tent filters' 1 and 9, the default gaussian's 25).
_UNROLLED_OFFSETS = 25


def clip_t_max(camera: Camera, d):
    """Camera rays start on the near plane and end on the far plane (Mitsuba 3:
    maxt = (far_clip - near_clip) / cos, cos to the view axis: 1 for the
    orthographic camera's rays)."""
    if isinstance(camera, Radiancemeter):  # no clip planes: the whole ray
        return jnp.full(d.shape[:-1], jnp.inf, jnp.float32)
    forward = camera.to_world[:3, 2]
    forward = forward / jnp.linalg.norm(forward)
    cos = jnp.maximum(dot(d, forward), 1e-6)
    return (camera.far_clip - camera.near_clip) / cos
