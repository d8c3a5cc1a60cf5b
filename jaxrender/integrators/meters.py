"""Rays of the sensors that measure the scene rather than look through a
film: Mitsuba 3's `irradiancemeter` (rays leave a shape's surface) and
`distant` (parallel rays aimed at a point, a target shape or the scene's
bounding sphere's cross-section)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrender.integrators._math import safe_norm, safe_normalize
from jaxrender.integrators.interaction import SceneArrays
from jaxrender.integrators.lights import pick_reusing, sample_shape_position, shape_area_table
from jaxrender.integrators.warp import (
    make_frame,
    square_to_cosine_hemisphere,
    square_to_uniform_disk_concentric,
    square_to_uniform_triangle,
    to_world,
)
from jaxrender.scene.sensors import RAY_EPSILON, DistantSensor, IrradianceMeter
from jaxrender.scene.transform import transform_vectors


def check_meter(scene, sensor) -> None:
    """ValueError (naming the sensor) when `sensor` does not fit `scene`."""
    if isinstance(sensor, IrradianceMeter):
        if sensor.shape >= len(scene.shapes):
            raise ValueError(f"the irradiance meter's shape index {sensor.shape} is out of range (the scene "
                             f"has {len(scene.shapes)} shapes)")
    elif isinstance(sensor, DistantSensor) and sensor.target is not None:
        shape = jnp.shape(sensor.target)
        if shape != (3,) and not (len(shape) == 3 and shape[1:] == (3, 3) and shape[0] > 0):
            raise ValueError(f"a distant sensor's target must be a point (3,) or triangles (T, 3, 3), got shape "
                             f"{shape}")


def bounding_sphere(arrays: SceneArrays):
    """Mitsuba's scene bounding sphere: centre and radius of the box around
    every shape's vertices, the radius grown by a ray epsilon (held fixed
    under differentiation, as Mitsuba computes it once per scene)."""
    v = jax.lax.stop_gradient(arrays.vertices)
    if v.shape[0] == 0:  # no shapes: rays from about the origin see the environment
        return jnp.zeros(3, jnp.float32), jnp.float32(RAY_EPSILON)
    lo, hi = jnp.min(v, axis=0), jnp.max(v, axis=0)
    center = 0.5 * (lo + hi)
    radius = jnp.linalg.norm(hi - center)
    return center, jnp.maximum(RAY_EPSILON, radius * (1.0 + RAY_EPSILON))


def meter_rays(scene, arrays: SceneArrays, sensor, pos_samples, dir_samples):
    """A meter's rays from uniform samples.

    Args:
      scene, arrays: the scene and its `prepare_scene` arrays.
      sensor: an IrradianceMeter or a DistantSensor.
      pos_samples: float (N, 2) uniform in [0, 1)^2 (the film position, as
        Mitsuba's `sample2`: where on the shape an irradiance meter's ray
        starts).
      dir_samples: float (N, 2) uniform (Mitsuba's aperture sample: the
        irradiance meter's direction, the distant sensor's target point).

    Returns:
      (origins (N, 3), unit directions (N, 3), weights (N,)): the sample's
      radiance times its weight estimates the sensor's value. Differentiable
      in the shape's or target's vertices and the distant sensor's to_world.
    """
    pos_samples = jnp.asarray(pos_samples, jnp.float32)
    dir_samples = jnp.asarray(dir_samples, jnp.float32)
    n = pos_samples.shape[0]
    if isinstance(sensor, IrradianceMeter):
        table = shape_area_table(arrays, sensor.shape)
        sp = sample_shape_position(scene, arrays, sensor.shape, table, pos_samples[:, 0], pos_samples[:, 1])
        d = to_world(make_frame(sp.n), square_to_cosine_hemisphere(dir_samples))
        o = sp.p + d * RAY_EPSILON
        # pi (cosine sampling) times the attached sample's area over the
        # shape's: 1 in value; its derivative is that of the average's
        # normalization and of the sample's face growing.
        weight = jnp.where(sp.ok, jnp.pi * sp.jacobian / jnp.where(sp.ok, table.total, 1.0), 0.0)
        return o, d, weight
    if not isinstance(sensor, DistantSensor):
        raise TypeError(f"meter_rays takes an IrradianceMeter or a DistantSensor, got {type(sensor).__name__}")
    center, radius = bounding_sphere(arrays)
    # Mitsuba's direction is to_world's image of +z, unnormalized: the
    # origin offsets below use it as is.
    axis = transform_vectors(sensor.to_world, jnp.array([0.0, 0.0, 1.0], jnp.float32))
    weight = jnp.ones((n,), jnp.float32)
    target = sensor.target
    if target is None:
        disk = square_to_uniform_disk_concentric(dir_samples)
        perp = transform_vectors(sensor.to_world, jnp.concatenate([disk, jnp.zeros((n, 1), jnp.float32)], -1))
        o = center + perp * radius - axis * radius
    elif jnp.ndim(target) == 1:
        o = jnp.broadcast_to(target - 2.0 * axis * radius, (n, 3))
    else:
        tris = jnp.asarray(target, jnp.float32)
        cross = jnp.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
        areas = 0.5 * safe_norm(cross)
        total = jnp.sum(areas)
        k, w = pick_reusing(jax.lax.stop_gradient(jnp.cumsum(areas) / total), dir_samples[:, 0])
        b = square_to_uniform_triangle(jnp.stack([w, dir_samples[:, 1]], -1))
        b1, b2 = b[:, 0], b[:, 1]
        t = tris[k]
        q = (1.0 - b1 - b2)[:, None] * t[:, 0] + b1[:, None] * t[:, 1] + b2[:, None] * t[:, 2]
        o = q - 2.0 * axis * radius
        # 1 in value (uniform by area: Mitsuba's 1 / (pdf area)); as for the
        # irradiance meter, derivatives of the attached sample's face area
        # over the target's.
        area_k = jnp.maximum(areas[k], 1e-30)
        weight = jnp.where(total > 0, (area_k / total) / jax.lax.stop_gradient(area_k / total), 0.0)
    d = safe_normalize(jnp.broadcast_to(axis, (n, 3)))
    return o, d, weight
