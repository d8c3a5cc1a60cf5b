"""Textures: spatially varying BSDF and area-emitter parameters.

Every texture-valued parameter of a BSDF or emitter holds one of these; a
plain float or rgb in the scene becomes a `ConstantTexture`. Parameter names
(`traverse`) append `.value` (constant), `.data` and `.to_uv` (bitmap),
`.color0.value`, `.color1.value` and `.to_uv` (checkerboard) to the name of the
parameter the texture fills, as Mitsuba does: `"red.reflectance.value"`.

Lookups follow Mitsuba 3 (the integrators implement them): a surface point's
uv is mapped by `to_uv` as a 2D homogeneous point, `uv' = (to_uv @ [u, v, 1])[:2]`.
"""

from __future__ import annotations

import jax

from jaxrender.scene._pytree import pytree, static


class Texture:
    """Base class of the texture types (abstract; never instantiated)."""

    __slots__ = ()


@pytree
class ConstantTexture(Texture):
    """A value that is the same everywhere.

    Attributes:
      value: float32, shape () for a float or spectrum (Mitsuba's uniform
        spectrum: the same in r, g and b) or (3,) for an rgb. Differentiable.
      id: the prefix of its parameter names (static): its id if defined at
        the root of the scene, "<parent name>.<parameter>" when nested in
        a named object, else None (named after the parameter it fills).
    """

    value: jax.Array
    id: str | None = static(default=None)


@pytree
class BitmapTexture(Texture):
    """An image texture (Mitsuba's `bitmap`).

    Attributes:
      data: float32 (H, W, C), C = 1 or 3, linear values: images read from
        files are sRGB-decoded unless `raw` (EXR/HDR are already linear);
        arrays given as `data` are used as they are. Row 0 is v = 0: texel
        (i, j) is centred at uv = ((j + 0.5) / W, (i + 0.5) / H).
        Differentiable.
      to_uv: float32 (3, 3), the uv transform (from Mitsuba's 4x4 `to_uv`,
        rows/columns 0, 1 and 3). Differentiable.
      filter_type: "bilinear" (Mitsuba's default) or "nearest" (static).
      wrap_mode: "repeat" (default), "mirror" or "clamp" (static).
      raw: whether the file was read without sRGB decoding (static; kept
        for reference, `data` is already decoded).
      id: the prefix of its parameter names (static): its id if defined at
        the root of the scene, "<parent name>.<parameter>" when nested in
        a named object, else None (named after the parameter it fills).
    """

    data: jax.Array
    to_uv: jax.Array
    filter_type: str = static(default="bilinear")
    wrap_mode: str = static(default="repeat")
    raw: bool = static(default=False)
    id: str | None = static(default=None)


@pytree
class CheckerboardTexture(Texture):
    """Mitsuba's `checkerboard`: `color1` where (u' mod 1 < 0.5) == (v' mod 1 < 0.5),
    else `color0`, with (u', v') the uv after `to_uv`.

    Attributes:
      color0, color1: float32 () or (3,). Mitsuba's defaults 0.4 and 0.2.
        Differentiable (named `.color0.value`, `.color1.value`).
      to_uv: float32 (3, 3). Differentiable.
      id: the prefix of its parameter names (static): its id if defined at
        the root of the scene, "<parent name>.<parameter>" when nested in
        a named object, else None (named after the parameter it fills).
    """

    color0: jax.Array
    color1: jax.Array
    to_uv: jax.Array
    id: str | None = static(default=None)
