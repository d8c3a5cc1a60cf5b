"""Emitter types: the parameters of Mitsuba 3's emitter plugins, as pytrees.

All float arrays are differentiable. Parameter names (`traverse`) are the
field names as in Mitsuba: `"Emitter[0].radiance.value"`, `"sun.irradiance.value"`,
`"my_envmap.data"`, and `"light.emitter.radiance.value"` for an area light
attached to a shape with id "light".

Lookups (pure JAX, jit / vmap / grad friendly, batched over leading axes),
each checked against Mitsuba 3.9.1: `eval_environment`, `environment_uv`
and its inverse `environment_direction` (with the uv-to-solid-angle density
factor), `eval_constant`, `eval_infinite`, `eval_area_light`; for the delta
lights `emitter_position`, `emitter_direction`, `spot_light_falloff` and
`point_light_incident` / `spot_light_incident` / `directional_light_incident`
(`delta_light_incident` picks by type).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrender.scene._pytree import pytree, static
from jaxrender.scene.transform import _apply_linear, transform_vectors
from jaxrender.scene.textures import ConstantTexture, Texture, _bilinear, eval_texture


class Emitter:
    """Base class of the emitter types (abstract; never instantiated)."""

    __slots__ = ()


@pytree
class AreaLight(Emitter):
    """Mitsuba's `area`: the surface of a shape emits `radiance` (front side only).

    Attributes:
      radiance: Texture (default 1), evaluated at the surface's uv.
      shape: index into `Scene.shapes` of the shape that emits (static).
      id: the prefix of its parameter names: "<shape id>.emitter" when
        the shape has an id (as Mitsuba names it, whatever id the emitter
        has), else the emitter's own id or None ("Emitter[i]").
    """

    radiance: Texture
    shape: int = static(default=-1)
    id: str | None = static(default=None)


@pytree
class PointLight(Emitter):
    """Mitsuba's `point`: an isotropic point source.

    Attributes:
      intensity: ConstantTexture, radiant intensity (W/sr; default 1).
      position: float32 (3,), world space (from `position`, or the
        translation of `to_world`; default the origin).
      id: the emitter's id.
    """

    intensity: Texture
    position: jax.Array
    id: str | None = static(default=None)


@pytree
class SpotLight(Emitter):
    """Mitsuba's `spot`: a point source emitting in a cone along local +z.

    Attributes:
      intensity: ConstantTexture (default 1).
      cutoff_angle: float32 scalar, degrees, half-angle of the cone (default 20).
      beam_width: float32 scalar, degrees, half-angle of the full-intensity
        core; the falloff in between is Mitsuba's smooth step (default
        3/4 of cutoff_angle).
      to_world: float32 (4, 4), placement of the light (position and axis).
      id: the emitter's id.
      texture: None, or a Texture projected through the cone (Mitsuba's
        `texture`): a direction with local (x, y, z) gets the value at
        uv = 0.5 + 0.5 (x, y) / (z tan cutoff_angle), times the intensity.
        Its texels are differentiable.
    """

    intensity: Texture
    cutoff_angle: jax.Array
    beam_width: jax.Array
    to_world: jax.Array
    id: str | None = static(default=None)
    texture: Texture | None = None


@pytree
class DirectionalLight(Emitter):
    """Mitsuba's `directional`: light from infinitely far away along local +z.

    Attributes:
      irradiance: ConstantTexture, power per unit area perpendicular to the
        direction (default 1).
      to_world: float32 (4, 4); the light travels along `to_world @ [0,0,1,0]`.
        A `direction` in the scene becomes Mitsuba's
        `look_at(0, direction, coordinate_system(direction)[0])`.
      id: the emitter's id.
    """

    irradiance: Texture
    to_world: jax.Array
    id: str | None = static(default=None)


@pytree
class ConstantEmitter(Emitter):
    """Mitsuba's `constant`: uniform radiance from every direction at infinity.

    Attributes:
      radiance: ConstantTexture (default 1).
      id: the emitter's id.
    """

    radiance: Texture
    id: str | None = static(default=None)


@pytree
class EnvironmentMap(Emitter):
    """Mitsuba's `envmap`: radiance at infinity from a latitude-longitude image.

    Attributes:
      data: float32 (H, W, 3), linear radiance. Unlike Mitsuba's own `data`
        parameter (which is padded to (H, W + 2, 3) with wrapped columns),
        this is the image as read. Differentiable.
      scale: float32 scalar multiplier (default 1).
      to_world: float32 (4, 4).
      id: the emitter's id.

    Lookup (Mitsuba 3's, verified against its `eval`): a world direction d
    that light arrives *from* maps to v = to_world^-1 d (as a vector), then
    u = atan2(v.x, -v.z) / (2 pi) (mod 1) and t = acos(v.y) / pi. The image is
    interpolated bilinearly with columns centred at u = (j + 0.5) / W
    (wrapping around) and rows at t = i / (H - 1) (row 0 at +y, the last row
    at -y); at the poles u = 0. See `eval_environment`.
    """

    data: jax.Array
    scale: jax.Array
    to_world: jax.Array
    id: str | None = static(default=None)


# --------------------------------------------------------------------------
# Lookups (pure JAX; broadcast over leading axes; float32)
#
# Delta lights (point, spot, directional) are described by what they deliver
# to reference points: `(wi, dist, value)`, with wi the unit world direction
# from each point towards the light, dist the distance to it (inf for a
# directional light) and value the radiance-like factor that multiplies the
# BSDF * cosine in a direct-lighting estimate: Mitsuba's `sample_direction`
# weight (intensity * falloff / dist^2, or the irradiance), its pdf being 1.


_EPS_F32 = 2.0**-24  # Dr.Jit's Epsilon<float>, used by Mitsuba's envmap pdf


def _rgb(texture) -> jax.Array:
    """A ConstantTexture's value as rgb (3,) (a float is gray)."""
    if not isinstance(texture, ConstantTexture):
        raise TypeError(f"expected a ConstantTexture, got {type(texture).__name__}")
    return jnp.broadcast_to(jnp.asarray(texture.value, jnp.float32), (3,))


def _points(x, name: str) -> jax.Array:
    x = jnp.asarray(x, jnp.float32)
    if x.shape[-1:] != (3,):
        raise ValueError(f"{name} must have shape (..., 3), got {x.shape}")
    return x


def _dot(a, b):
    return jnp.sum(a * b, axis=-1)


def _safe_norm(v):
    """|v| along the last axis, with a zero (not NaN) derivative at v = 0."""
    n2 = _dot(v, v)
    ok = n2 > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, n2, 1.0)), 0.0)


def _normalize(v):
    n = _safe_norm(v)
    return v / jnp.where(n > 0, n, 1.0)[..., None]


def _delta_towards(position, points):
    """(wi, dist) from points (..., 3) to a position (3,)."""
    d = position - points
    dist = _safe_norm(d)
    wi = d / jnp.where(dist > 0, dist, 1.0)[..., None]
    return wi, dist


def _inverse_linear(m) -> jax.Array:
    """The inverse (3, 3) of the linear part of a (4, 4) affine transform, in
    closed form (adjugate / determinant): what Mitsuba applies to vectors
    through `to_world.inverse()`. Cheaper to compile than `jnp.linalg.inv`
    (an LU), and differentiable."""
    m = jnp.asarray(m, jnp.float32)
    a, b, c = m[:3, 0], m[:3, 1], m[:3, 2]
    rows = jnp.stack([jnp.cross(b, c), jnp.cross(c, a), jnp.cross(a, b)])
    return rows / jnp.sum(a * rows[0])


def _inv_square(dist):
    return 1.0 / jnp.where(dist > 0, dist * dist, jnp.inf)


def emitter_position(light) -> jax.Array:
    """World position (3,) of a PointLight or SpotLight (a spot light's
    `to_world` translation, as Mitsuba's `to_world * (0, 0, 0)`)."""
    if isinstance(light, PointLight):
        return jnp.asarray(light.position, jnp.float32)
    if isinstance(light, SpotLight):
        return jnp.asarray(light.to_world, jnp.float32)[:3, 3]
    raise TypeError(f"emitter_position: {type(light).__name__} has no position")


def emitter_direction(light) -> jax.Array:
    """Unit world direction (3,) that a SpotLight's axis points to, or that a
    DirectionalLight's light travels along: `to_world @ (0, 0, 1, 0)`,
    normalized (Mitsuba's; its directional light then arrives *from*
    the opposite direction)."""
    if isinstance(light, (SpotLight, DirectionalLight)):
        return _normalize(jnp.asarray(light.to_world, jnp.float32)[:3, 2])
    raise TypeError(f"emitter_direction: {type(light).__name__} has no direction")


def point_light_incident(light: PointLight, points):
    """What a point light delivers to points (..., 3): (wi, dist, value), with
    value = intensity / dist^2 (..., 3), Mitsuba's `sample_direction` weight.
    Differentiable in the intensity, the position and the points."""
    p = _points(points, "points")
    wi, dist = _delta_towards(jnp.asarray(light.position, jnp.float32), p)
    value = _rgb(light.intensity) * _inv_square(dist)[..., None]
    return wi, dist, value


def spot_light_falloff(light: SpotLight, local_directions) -> jax.Array:
    """Mitsuba's spot falloff (..., ) for directions (..., 3) in the light's
    local frame (+z is the axis; they need not be unit).

    With theta the angle to +z: 1 for theta <= beam_width, 0 for theta >=
    cutoff_angle, and in between (cutoff - theta) / (cutoff - beam_width),
    linear in the angle (Mitsuba 3's `falloff_curve`; verified against its
    `eval_direction`). Mitsuba's tests, in cosines: full where cos theta >=
    cos beam_width, zero unless cos theta > cos cutoff. A beam_width >=
    cutoff_angle gives a hard-edged cone. Differentiable in the angles and
    the directions, NaN-free.
    """
    d = _normalize(_points(local_directions, "local_directions"))
    cos_theta = d[..., 2]
    cutoff = jnp.deg2rad(jnp.asarray(light.cutoff_angle, jnp.float32))
    beam = jnp.deg2rad(jnp.asarray(light.beam_width, jnp.float32))
    cos_cutoff = jnp.cos(cutoff)
    cos_beam = jnp.cos(beam)
    full = cos_theta >= cos_beam
    lit = cos_theta > cos_cutoff
    transition = lit & ~full
    # Double where: acos and the division only see inputs where they are used.
    c = jnp.where(transition, cos_theta, 0.0)
    width = cutoff - beam
    ramp = (cutoff - jnp.arccos(jnp.clip(c, -1.0, 1.0))) / jnp.where(transition & (width != 0), width, 1.0)
    return jnp.where(full, 1.0, jnp.where(transition, ramp, 0.0)) * lit


def spot_light_incident(light: SpotLight, points):
    """What a spot light delivers to points (..., 3): (wi, dist, value), with
    value = intensity * falloff / dist^2 (..., 3), as Mitsuba's
    `sample_direction` weight. The falloff takes the point's direction in the
    light's frame (`to_world^-1 p`); the distance is measured in world space.
    Differentiable in the intensity, the angles, `to_world` and the points."""
    p = _points(points, "points")
    m = jnp.asarray(light.to_world, jnp.float32)
    local = _apply_linear(_inverse_linear(m), p - m[:3, 3])
    wi, dist = _delta_towards(m[:3, 3], p)
    falloff = spot_light_falloff(light, local)
    value = _rgb(light.intensity) * (falloff * _inv_square(dist))[..., None]
    if light.texture is not None:
        value = value * _spot_texture(light, local)
    return wi, dist, value


def _spot_texture(light: SpotLight, local) -> jax.Array:
    """A spot light's texture (..., 3) for local directions (..., 3) (not
    unit), projected as Mitsuba's: uv = 0.5 + 0.5 (x, y) / (z tan cutoff).
    Directions outside the cone (falloff 0) get finite values."""
    tan_cutoff = jnp.tan(jnp.deg2rad(jnp.asarray(light.cutoff_angle, jnp.float32)))
    z = local[..., 2:3]
    scale = 0.5 / (jnp.where(z > 0, z, 1.0) * tan_cutoff)
    uv = 0.5 + local[..., :2] * scale
    return eval_texture(light.texture, uv)


def directional_light_incident(light: DirectionalLight, points):
    """What a directional light delivers to points (..., 3): (wi, dist,
    value): wi = -emitter_direction (towards the light), dist = inf, value =
    irradiance (..., 3), as Mitsuba's `sample_direction` (which places the
    light beyond the scene's bounding sphere instead of at infinity)."""
    p = _points(points, "points")
    wi = jnp.broadcast_to(-emitter_direction(light), p.shape)
    dist = jnp.full(p.shape[:-1], jnp.inf, jnp.float32)
    value = jnp.broadcast_to(_rgb(light.irradiance), p.shape)
    return wi, dist, value


def delta_light_incident(light, points):
    """`point_light_incident`, `spot_light_incident` or
    `directional_light_incident`, by the light's type (static)."""
    if isinstance(light, PointLight):
        return point_light_incident(light, points)
    if isinstance(light, SpotLight):
        return spot_light_incident(light, points)
    if isinstance(light, DirectionalLight):
        return directional_light_incident(light, points)
    raise TypeError(f"delta_light_incident: {type(light).__name__} is not a delta light")


def eval_area_light(light: AreaLight, uv, cos_theta) -> jax.Array:
    """Radiance (..., 3) an area light emits at surface uv (..., 2) towards a
    direction whose cosine with the shading normal is cos_theta (...):
    the radiance texture where cos_theta > 0, else 0 (front side only, as
    Mitsuba's `area`). Differentiable in the texture."""
    value = eval_texture(light.radiance, uv)
    value = jnp.broadcast_to(value, value.shape[:-1] + (3,))
    return jnp.where((jnp.asarray(cos_theta) > 0)[..., None], value, 0.0)


def eval_constant(emitter: ConstantEmitter, directions) -> jax.Array:
    """Radiance (..., 3) arriving from world directions (..., 3): the same
    everywhere (Mitsuba's `constant`). Differentiable in the radiance."""
    d = _points(directions, "directions")
    return jnp.broadcast_to(_rgb(emitter.radiance), d.shape)


def _world_to_local(envmap: EnvironmentMap, directions):
    return _apply_linear(_inverse_linear(envmap.to_world), directions)


def _lat_long(v):
    """(u, t, sin theta) of local directions v (..., 3) as Mitsuba's envmap:
    u = atan2(v.x, -v.z) / (2 pi) in [-1/2, 1/2], t = acos(v.y) / pi
    (Dr.Jit's safe_acos clamps), sin theta = sqrt(v.x^2 + v.z^2).

    At the poles (v.x = v.z = 0) u = 0: Dr.Jit's atan2 ignores the signs of
    zeros (atan2(+-0, +-0) = 0), unlike IEEE's (pi for atan2(0, -0)), and
    Mitsuba's lookup there blends the first and last columns of the top or
    bottom row. Derivatives are NaN-free: zero in u at (and within 1e-15 of)
    the poles, and in t where |v.y| >= 1.
    """
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    r2 = x * x + z * z
    pole = (x == 0) & (z == 0)
    u_value = jax.lax.stop_gradient(jnp.where(pole, 0.0, jnp.arctan2(x, -z)))
    # atan2's derivative is (x' (-z) - (-z)' x) / r2: only where r2 is safe.
    smooth = r2 > 1e-30
    u_smooth = jnp.arctan2(jnp.where(smooth, x, 0.0), jnp.where(smooth, -z, 1.0))
    u = jnp.where(smooth, u_smooth, u_value) * (0.5 / jnp.pi)
    inside = jnp.abs(y) < 1
    t_inside = jnp.arccos(jnp.where(inside, y, 0.0))
    t_edge = jax.lax.stop_gradient(jnp.arccos(jnp.clip(y, -1.0, 1.0)))
    t = jnp.where(inside, t_inside, t_edge) * (1.0 / jnp.pi)
    sin_theta = jnp.where(smooth, jnp.sqrt(jnp.where(smooth, r2, 1.0)), jnp.sqrt(jax.lax.stop_gradient(r2)))
    return u, t, sin_theta


def _uv_to_solid_angle(sin_theta):
    """Mitsuba's envmap factor from a uv density to a solid-angle density:
    1 / (2 pi^2 max(sin theta, eps))."""
    return (0.5 / (jnp.pi * jnp.pi)) / jnp.maximum(sin_theta, _EPS_F32)


def environment_uv(envmap: EnvironmentMap, directions):
    """Lat-long coordinates of world directions (..., 3), and the uv-to-solid-
    angle density factor.

    Returns:
      uv: float32 (..., 2): u = atan2(v.x, -v.z) / (2 pi) mod 1 in [0, 1) and
        t = acos(v.y) / pi in [0, 1] (0 at local +y, 1 at -y), where
        v = to_world^-1 d. These are the image's continuous coordinates:
        column j is centred at u = (j + 0.5) / W, row i at t = i / (H - 1)
        (see `eval_environment`).
      factor: float32 (...): 1 / (2 pi^2 sin theta) with sin theta clamped
        below at 2^-24, as Mitsuba's envmap `pdf_direction`: a density p(uv)
        over [0, 1]^2 is p(uv) * factor per steradian.

    `directions` should be unit (Mitsuba does not normalize either) and
    `to_world` a rotation. Differentiable (NaN-free; zero at the poles).
    """
    d = _points(directions, "directions")
    u, t, sin_theta = _lat_long(_world_to_local(envmap, d))
    u = u - jnp.floor(u)
    return jnp.stack([u, t], axis=-1), _uv_to_solid_angle(sin_theta)


def environment_direction(envmap: EnvironmentMap, uv):
    """The inverse of `environment_uv`: world directions (..., 3) for lat-long
    coordinates uv (..., 2) in [0, 1]^2, and the uv-to-solid-angle factor.

    As Mitsuba's envmap `sample_direction`: theta = t pi, phi = u 2 pi, local
    direction (sin phi sin theta, cos theta, -cos phi sin theta), mapped by
    `to_world`; factor = 1 / (2 pi^2 max(sin theta, 2^-24)), sin theta from
    the local direction as Mitsuba computes it. Differentiable in uv and
    `to_world`.
    """
    uv = jnp.asarray(uv, jnp.float32)
    if uv.shape[-1:] != (2,):
        raise ValueError(f"uv must have shape (..., 2), got {uv.shape}")
    theta = uv[..., 1] * jnp.pi
    phi = uv[..., 0] * (2.0 * jnp.pi)
    st, ct = jnp.sin(theta), jnp.cos(theta)
    sp, cp = jnp.sin(phi), jnp.cos(phi)
    local = jnp.stack([sp * st, ct, -cp * st], axis=-1)
    r2 = local[..., 0] ** 2 + local[..., 2] ** 2
    ok = r2 > 0
    sin_theta = jnp.where(ok, jnp.sqrt(jnp.where(ok, r2, 1.0)), 0.0)
    m = jnp.asarray(envmap.to_world, jnp.float32)
    return transform_vectors(m, local), _uv_to_solid_angle(sin_theta)


def eval_environment(envmap: EnvironmentMap, directions) -> jax.Array:
    """Radiance (..., 3) arriving from world directions (..., 3) (a ray going
    along d sees this), exactly Mitsuba 3's envmap `eval`:

    v = to_world^-1 d; u = atan2(v.x, -v.z) / (2 pi), t = acos(v.y) / pi;
    bilinear in the image at x = u W - 1/2 (wrapping around: columns
    centred at u = (j + 1/2) / W, the seam u = 0 between the last and the
    first column) and y = t (H - 1) (rows at t = i / (H - 1): row 0 at local
    +y, the last row at -y, not wrapped); times `scale`. At the poles u is
    atan2 of (signed) zeros, as in Mitsuba. Verified against Mitsuba 3.9.1
    (`eval` with si.wi = -d).

    Differentiable in `data`, `scale`, `to_world` and the directions (NaN-
    free; zero derivative in the direction at the poles). H >= 2.
    """
    d = _points(directions, "directions")
    data = jnp.asarray(envmap.data, jnp.float32)
    if data.ndim != 3 or data.shape[0] < 2:
        raise ValueError(f"EnvironmentMap.data must have shape (H >= 2, W, C), got {data.shape}")
    h, w = data.shape[0], data.shape[1]
    u, t, _ = _lat_long(_world_to_local(envmap, d))
    # Mitsuba's arithmetic, on its image padded with a wrapped column on each
    # side: x = frac(u + 1/(2W)) W indexes the padded image, i.e. image
    # columns x - 1 and x.
    x = u + 0.5 / w
    x = (x - jnp.floor(x)) * w
    y = t * (h - 1)
    x0f = jnp.minimum(jnp.floor(x), w)
    y0f = jnp.minimum(jnp.floor(y), h - 2)
    x0 = x0f.astype(jnp.int32)
    y0 = y0f.astype(jnp.int32)
    value = _bilinear(data, y0, y0 + 1, jnp.mod(x0 - 1, w), jnp.mod(x0, w), x - x0f, y - y0f)
    return value * jnp.asarray(envmap.scale, jnp.float32)


def eval_infinite(emitter, directions) -> jax.Array:
    """`eval_environment` or `eval_constant` by the emitter's type (static)."""
    if isinstance(emitter, EnvironmentMap):
        return eval_environment(emitter, directions)
    if isinstance(emitter, ConstantEmitter):
        return eval_constant(emitter, directions)
    raise TypeError(f"eval_infinite: {type(emitter).__name__} is not an infinite emitter")
