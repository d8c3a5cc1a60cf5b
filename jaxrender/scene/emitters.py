"""Emitter types: the parameters of Mitsuba 3's emitter plugins, as pytrees.

All float arrays are differentiable. Parameter names (`traverse`) are the
field names as in Mitsuba: `"Emitter[0].radiance.value"`, `"sun.irradiance.value"`,
`"my_envmap.data"`, and `"light.emitter.radiance.value"` for an area light
attached to a shape with id "light".
"""

from __future__ import annotations

import jax

from jaxrender.scene._pytree import pytree, static
from jaxrender.scene.textures import Texture


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
    """

    intensity: Texture
    cutoff_angle: jax.Array
    beam_width: jax.Array
    to_world: jax.Array
    id: str | None = static(default=None)


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
    at -y).
    """

    data: jax.Array
    scale: jax.Array
    to_world: jax.Array
    id: str | None = static(default=None)
