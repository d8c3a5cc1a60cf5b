"""`render`: a scene to an image, as a pure function."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxrender.integrators.aov import aov_channels, trace_aovs
from jaxrender.integrators.direct import trace_direct
from jaxrender.integrators.interaction import prepare_scene
from jaxrender.integrators.lights import check_supported
from jaxrender.integrators.path import trace_paths
from jaxrender.scene import IntegratorConfig, PerspectiveCamera, Scene, camera_rays

# Samples traced together in one pass: bounds memory to O(PASS_SAMPLES) per
# bounce (about 1 KiB per sample with the shading temporaries). 2^16 keeps
# XLA:CPU's per-fusion arrays cache-sized (measured ~10% faster than 2^18).
PASS_SAMPLES = 1 << 16


def _integrator(scene: Scene, integrator) -> IntegratorConfig:
    if integrator is None:
        return scene.integrator
    if isinstance(integrator, IntegratorConfig):
        return integrator
    if isinstance(integrator, str):
        if integrator in ("path", "direct"):
            return dataclasses.replace(scene.integrator, type=integrator)
        if integrator.startswith("aov:"):
            # "aov:depth,nn" or Mitsuba's "aov:d:depth,n:sh_normal"
            items = [x for x in integrator[4:].split(",") if x]
            aovs = ",".join(x if ":" in x else f"{x}:{x}" for x in items)
            return IntegratorConfig(type="aov", aovs=aovs)
        raise ValueError(
            f"integrator must be 'path', 'direct', 'aov:<types>' (or an IntegratorConfig), got {integrator!r}")
    raise TypeError(f"integrator must be None, a name or an IntegratorConfig, got {type(integrator).__name__}")


def _camera(scene: Scene, sensor) -> PerspectiveCamera:
    if isinstance(sensor, PerspectiveCamera):
        return sensor
    if not scene.sensors:
        raise ValueError("the scene has no sensor; pass sensor=PerspectiveCamera(...)")
    if not isinstance(sensor, int) or not 0 <= sensor < len(scene.sensors):
        raise ValueError(f"sensor must be an index in [0, {len(scene.sensors)}) or a PerspectiveCamera, got {sensor!r}")
    return scene.sensors[sensor]


def _filter_weight(rfilter, x):
    """Mitsuba's 1D reconstruction filters at offsets x from a pixel centre."""
    if rfilter.type == "tent":
        return jnp.maximum(0.0, 1.0 - jnp.abs(x) / rfilter.radius)
    if rfilter.type == "gaussian":
        alpha = -1.0 / (2.0 * rfilter.stddev**2)
        cut = jnp.exp(alpha * rfilter.radius**2)
        return jnp.maximum(0.0, jnp.exp(alpha * x * x) - cut)
    return (jnp.abs(x) <= rfilter.radius).astype(jnp.float32)  # box


def _splat(rfilter, values, offsets, height, width):
    """Weighted splat of samples (S, H, W, C) taken at `offsets` (S, H, W, 2)
    inside their pixels into every pixel within the filter's radius.
    Returns (weighted sums (H, W, C), weight sums (H, W, 1)). Samples stay in
    their own pixel's cell, so each neighbour is one static shift."""
    r = int(math.ceil(rfilter.radius - 0.5)) if rfilter.radius > 0.5 else 0  # static
    c = values.shape[-1]
    acc = jnp.zeros((height + 2 * r, width + 2 * r, c), jnp.float32)
    wsum = jnp.zeros((height + 2 * r, width + 2 * r, 1), jnp.float32)
    for dy in range(-r, r + 1):
        wy = _filter_weight(rfilter, dy + 0.5 - offsets[..., 1])
        for dx in range(-r, r + 1):
            w = (wy * _filter_weight(rfilter, dx + 0.5 - offsets[..., 0]))[..., None]
            acc = acc.at[r + dy:r + dy + height, r + dx:r + dx + width].add(jnp.sum(w * values, axis=0))
            wsum = wsum.at[r + dy:r + dy + height, r + dx:r + dx + width].add(jnp.sum(w, axis=0))
    return acc[r:r + height, r:r + width], wsum[r:r + height, r:r + width]


def _clip_t_max(camera: PerspectiveCamera, d):
    """Camera rays start on the near plane and end on the far plane (Mitsuba 3:
    maxt = (far_clip - near_clip) / cos, cos to the view axis)."""
    forward = camera.to_world[:3, 2]
    forward = forward / jnp.linalg.norm(forward)
    cos = jnp.maximum(d @ forward, 1e-6)
    return (camera.far_clip - camera.near_clip) / cos


def render(scene: Scene, integrator=None, *, sensor=0, spp: int | None = None, key=None,
           seed: int = 0) -> jax.Array:
    """Renders a scene.

    Args:
      scene: a Scene (from `load_file`, `load_dict`, `replace`).
      integrator: None (the scene's), "path", "direct", or an IntegratorConfig.
      sensor: index into scene.sensors, or a PerspectiveCamera pytree (so
        `jax.vmap` over stacked cameras renders a batch of views).
      spp: samples per pixel (default: the sensor's sampler).
      key: a jax.random key; default `jax.random.key(seed)`. The same key
        gives the same image, bit for bit.
      seed: used when key is None.

    Returns:
      float32 (height, width, 3) linear RGB; for "aov", (height, width, C):
      the nested integrator's RGB first (when it has one), then each AOV's
      channels in order (see `jaxrender.integrators.aov`). Works inside jit;
      the samples are traced in passes of at most PASS_SAMPLES (2^16)
      samples, so memory is bounded by that, not by spp. Film: box filter
      (each sample counts in its own pixel).
    """
    check_supported(scene)
    cfg = _integrator(scene, integrator)
    if cfg.type not in ("path", "direct", "aov"):
        raise NotImplementedError(f"integrator {cfg.type!r} is not implemented (path, direct, aov are)")
    channels = aov_channels(cfg) if cfg.type == "aov" else 3
    camera = _camera(scene, sensor)
    spp = int(camera.sample_count if spp is None else spp)
    if spp <= 0:
        raise ValueError(f"spp must be positive, got {spp}")
    if key is None:
        key = jax.random.key(seed)
    width, height = camera.film.width, camera.film.height
    pixels = width * height
    # The largest divisor of spp that keeps a pass under PASS_SAMPLES samples.
    per_pass = max(1, min(spp, PASS_SAMPLES // max(pixels, 1)))
    while spp % per_pass:
        per_pass -= 1
    passes = spp // per_pass
    arrays = prepare_scene(scene)

    def one_pass(i, total):
        k = jax.random.fold_in(key, i)
        k_pix, k_path = jax.random.split(k)
        offsets = jax.random.uniform(k_pix, (per_pass, height, width, 2), jnp.float32)
        o, d = camera_rays(camera, offsets)
        o, d = o.reshape(-1, 3), d.reshape(-1, 3)
        t_max = _clip_t_max(camera, d)
        if cfg.type == "aov":
            value = trace_aovs(scene, arrays, cfg, o, d, k_path, t_max)
        elif cfg.type == "direct":
            value = trace_direct(scene, arrays, cfg, o, d, k_path, t_max)
        else:
            value = trace_paths(scene, arrays, cfg, o, d, k_path, t_max)
        value = value.reshape(per_pass, height, width, channels)
        if box:
            return total[0] + value.sum(0), total[1]
        acc, wsum = _splat(rfilter, value, offsets, height, width)
        return total[0] + acc, total[1] + wsum

    rfilter = camera.film.rfilter
    box = rfilter.type == "box" and rfilter.radius <= 0.5
    zeros = (jnp.zeros((height, width, channels), jnp.float32), jnp.zeros((height, width, 1), jnp.float32))
    total, wsum = jax.lax.fori_loop(0, passes, one_pass, zeros)
    if box:
        return total / spp
    return total / jnp.maximum(wsum, 1e-20)
