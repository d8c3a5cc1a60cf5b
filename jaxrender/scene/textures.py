"""Textures: spatially varying BSDF and area-emitter parameters.

Every texture-valued parameter of a BSDF or emitter holds one of these; a
plain float or rgb in the scene becomes a `ConstantTexture`. Parameter names
(`traverse`) append `.value` (constant), `.data` and `.to_uv` (bitmap),
`.color0.value`, `.color1.value` and `.to_uv` (checkerboard), `.scale`
(mesh_attribute) to the name of the
parameter the texture fills, as Mitsuba does: `"red.reflectance.value"`.

Lookups follow Mitsuba 3 (`eval_texture`, `eval_texture_mean`): a surface
point's uv is mapped by `to_uv` as a 2D homogeneous point,
`uv' = (to_uv @ [u, v, 1])[:2]`, then wrapped and filtered.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

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
    """Mitsuba's `checkerboard`: `color0` where (u' mod 1 > 0.5) == (v' mod 1 > 0.5),
    else `color1`, with (u', v') the uv after `to_uv` (so `color0` on
    [0, 0.5]^2; see `eval_texture`).

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


@pytree
class MeshAttributeTexture(Texture):
    """Mitsuba's `mesh_attribute`: a mesh attribute of the shape hit, times
    `scale`.

    Attributes:
      name: the attribute's name (static), "vertex_<...>" (interpolated
        over the triangle with the hit's barycentrics) or "face_<...>"
        (constant per triangle); see `Mesh.attributes`. Every shape whose
        BSDF or area light reads the texture must have it, with 1 or 3
        channels (the same count on every such shape).
      scale: float32 (), a factor on the value. Differentiable (named
        `.scale`), as are the meshes' attribute values (named
        "<shape>.<attribute name>").
      slot: (column, channels) of the attribute in the texture coordinates
        that renders pass to lookups (static; None until `render` binds
        the scene's textures with `bind_mesh_attributes`).
      id: the prefix of its parameter names (static), as for other textures.

    As in Mitsuba, a one-channel attribute gives the same value in r, g and
    b where a colour is read, and only one-channel attributes can fill
    scalar parameters (roughness, blend weights, opacity: `eval_1`); the
    plastics, whose sampling weight needs a texture's mean, refuse it.
    """

    name: str = static()
    scale: jax.Array
    slot: tuple[int, int] | None = static(default=None)
    id: str | None = static(default=None)


def _is_attribute_texture(x) -> bool:
    return isinstance(x, MeshAttributeTexture)


def attribute_textures(tree) -> list:
    """The MeshAttributeTextures in a pytree (a BSDF, an emitter, a tuple of
    them), in tree order."""
    return [x for x in jax.tree.leaves(tree, is_leaf=_is_attribute_texture) if _is_attribute_texture(x)]


def _shape_label(scene, i) -> str:
    mesh = scene.shapes[i]
    return f'shape "{mesh.id}"' if mesh.id else f"shape {i}"


def attribute_channels(name: str, attributes, num_vertices: int, num_faces: int, shape: str) -> int:
    """The channel count (1 or 3) of the mesh attribute `name` that a
    mesh_attribute texture reads on a shape (`attributes`: its dict, or
    None; `shape` names it in messages).

    Raises:
      ValueError: the shape has no such attribute, or not one row per
        vertex / face, or other than 1 or 3 channels.
    """
    value = (attributes or {}).get(name)
    if value is None:
        have = ", ".join(sorted(attributes or {})) or "none"
        raise ValueError(f'{shape} has no mesh attribute "{name}", which its mesh_attribute texture reads '
                         f"(its attributes: {have})")
    rows = num_vertices if name.startswith("vertex_") else num_faces
    dims = tuple(getattr(value, "shape", ()))
    c = 1 if len(dims) == 1 else (dims[1] if len(dims) == 2 else 0)
    if not dims or dims[0] != rows or c == 0:
        what = "vertex" if name.startswith("vertex_") else "face"
        raise ValueError(f'mesh attribute "{name}" of {shape} has shape {dims}; it needs one row per {what}: '
                         f"({rows}, C)")
    if c not in (1, 3):
        raise ValueError(f'mesh attribute "{name}" of {shape} has {c} channels; a mesh_attribute texture reads '
                         f"1 or 3, as Mitsuba's (a PLY's r, g, b, a make 4)")
    return c


def attribute_layout(scene) -> tuple[tuple[str, int], ...]:
    """The mesh attributes a scene's textures read, as ((name, channels), ...):
    the "vertex_" ones first, then the "face_" ones, each in order of first
    use. Their values follow the uv in the texture coordinates of a render's
    shading points (column 2 onwards), in this order.

    Raises:
      ValueError: a shape whose BSDF or area light reads an attribute does
        not have it, or has it with other than 1 or 3 channels, or shapes
        have it with different channel counts.
    """
    every = attribute_textures((tuple(scene.bsdfs), tuple(scene.emitters)))
    for tex in every:
        if not tex.name.startswith(("vertex_", "face_")):
            raise ValueError(f'mesh_attribute texture name must start with "vertex_" or "face_", got {tex.name!r}')
    used = {}  # name -> channels
    for i, mesh in enumerate(scene.shapes):
        owners = [scene.bsdfs[mesh.bsdf]] if 0 <= mesh.bsdf < len(scene.bsdfs) else []
        if mesh.emitter >= 0:
            owners.append(scene.emitters[mesh.emitter])
        for tex in attribute_textures(tuple(owners)):
            c = attribute_channels(tex.name, mesh.attributes, mesh.num_vertices, mesh.num_faces,
                                   _shape_label(scene, i))
            if used.setdefault(tex.name, c) != c:
                raise ValueError(f'mesh attribute "{tex.name}" has {used[tex.name]} channels on one shape and '
                                 f"{c} on {_shape_label(scene, i)}; shapes sharing a mesh_attribute texture "
                                 f"need the same count")
    # Textures of BSDFs or emitters no shape uses still get a slot (zeros;
    # one channel serves both colour and scalar lookups).
    for tex in every:
        used.setdefault(tex.name, 1)
    names = sorted(used, key=lambda n: not n.startswith("vertex_"))  # stable: vertex_ first
    return tuple((n, used[n]) for n in names)


def bind_mesh_attributes(scene):
    """The scene with each MeshAttributeTexture's `slot` set from
    `attribute_layout(scene)` (the same scene when it has none). Works on
    traced scenes: only static metadata changes."""
    layout = attribute_layout(scene)
    if not layout:
        return scene
    slots, column = {}, 2
    for name, c in layout:
        slots[name] = (column, c)
        column += c

    def bind(x):
        return x.replace(slot=slots[x.name]) if _is_attribute_texture(x) else x

    bsdfs, emitters = jax.tree.map(bind, (tuple(scene.bsdfs), tuple(scene.emitters)), is_leaf=_is_attribute_texture)
    return scene.replace(bsdfs=bsdfs, emitters=emitters)


def _eval_attribute(tex: MeshAttributeTexture, uv) -> jax.Array:
    if tex.slot is None:
        raise ValueError(f'mesh_attribute texture "{tex.name}" is not bound to a scene: it is evaluated inside '
                         f"render(), which passes the hit's attributes (bind_mesh_attributes)")
    column, c = tex.slot
    if uv.shape[-1] < column + c:
        raise ValueError(f'mesh_attribute texture "{tex.name}" reads texture-coordinate columns {column}..'
                         f"{column + c - 1}, but the lookup has {uv.shape[-1]}")
    return uv[..., column:column + c] * jnp.asarray(tex.scale, jnp.float32)


# --------------------------------------------------------------------------
# Lookups


def transform_uv(to_uv, uv) -> jax.Array:
    """Maps uv (..., 2) by a (3, 3) `to_uv` as Mitsuba's `transform_affine`:
    `to_uv[:2, :2] @ uv + to_uv[:2, 2]` (the last row is ignored).
    Differentiable in both."""
    m = jnp.asarray(to_uv, jnp.float32)
    uv = jnp.asarray(uv, jnp.float32)
    return jnp.stack([
        m[0, 0] * uv[..., 0] + m[0, 1] * uv[..., 1] + m[0, 2],
        m[1, 0] * uv[..., 0] + m[1, 1] * uv[..., 1] + m[1, 2],
    ], axis=-1)


def _channels(value) -> jax.Array:
    """A constant's value as (C,): () -> (1,), (3,) stays."""
    v = jnp.asarray(value, jnp.float32)
    return v[None] if v.ndim == 0 else v


def _wrap(i, n: int, mode: str):
    """Integer texel indices wrapped into [0, n) as Dr.Jit's `Texture`
    (the engine of Mitsuba's `bitmap`) does: repeat = i mod n; mirror =
    reflect with period 2n (texels n-1, n-1 at the seam, 0, 0 at the other);
    clamp = clip to [0, n - 1]."""
    if mode == "repeat":
        return jnp.mod(i, n)
    if mode == "mirror":
        i = jnp.mod(i, 2 * n)
        return jnp.where(i >= n, 2 * n - 1 - i, i)
    if mode == "clamp":
        return jnp.clip(i, 0, n - 1)
    raise ValueError(f"wrap_mode must be repeat, mirror or clamp, got {mode!r}")


def _bilinear(data, ya, yb, xa, xb, fx, fy) -> jax.Array:
    """Bilinear blend of texels (ya, xa), (ya, xb), (yb, xa), (yb, xb) of
    data (H, W, C) with weights fx, fy (...) towards xb, yb: one gather (and
    one scatter in reverse mode) rather than four."""
    h, w, c = data.shape
    idx = jnp.stack([ya * w + xa, ya * w + xb, yb * w + xa, yb * w + xb], axis=-1)
    texels = data.reshape(h * w, c)[idx]  # (..., 4, C)
    gx, gy = 1.0 - fx, 1.0 - fy
    weights = jnp.stack([gx * gy, fx * gy, gx * fy, fx * fy], axis=-1)
    return jnp.sum(texels * weights[..., None], axis=-2)


def _eval_bitmap(tex: BitmapTexture, uv) -> jax.Array:
    data = jnp.asarray(tex.data, jnp.float32)
    if data.ndim != 3:
        raise ValueError(f"BitmapTexture.data must have shape (H, W, C), got {data.shape}")
    h, w = data.shape[0], data.shape[1]
    p = transform_uv(tex.to_uv, uv)
    # Row 0 is v = 0 (the top row of the image as stored): Mitsuba does not
    # flip v in the texture (its OBJ loader flips the texture coordinates).
    x = p[..., 0] * w
    y = p[..., 1] * h
    if tex.filter_type == "nearest":
        xi = _wrap(jnp.floor(x).astype(jnp.int32), w, tex.wrap_mode)
        yi = _wrap(jnp.floor(y).astype(jnp.int32), h, tex.wrap_mode)
        return data[yi, xi]
    if tex.filter_type != "bilinear":
        raise ValueError(f"filter_type must be bilinear or nearest, got {tex.filter_type!r}")
    # Texel (i, j) is centred at ((j + 0.5) / W, (i + 0.5) / H).
    x = x - 0.5
    y = y - 0.5
    x0f = jnp.floor(x)
    y0f = jnp.floor(y)
    x0 = x0f.astype(jnp.int32)
    y0 = y0f.astype(jnp.int32)
    xa, xb = _wrap(x0, w, tex.wrap_mode), _wrap(x0 + 1, w, tex.wrap_mode)
    ya, yb = _wrap(y0, h, tex.wrap_mode), _wrap(y0 + 1, h, tex.wrap_mode)
    return _bilinear(data, ya, yb, xa, xb, x - x0f, y - y0f)


def _eval_checkerboard(tex: CheckerboardTexture, uv) -> jax.Array:
    p = transform_uv(tex.to_uv, uv)
    frac = p - jnp.floor(p)
    high = frac > 0.5
    same = high[..., 0] == high[..., 1]
    c0, c1 = _channels(tex.color0), _channels(tex.color1)
    c = max(c0.shape[0], c1.shape[0])
    c0 = jnp.broadcast_to(c0, (c,))
    c1 = jnp.broadcast_to(c1, (c,))
    return jnp.where(same[..., None], c0, c1)


def eval_texture(texture: Texture, uv) -> jax.Array:
    """A texture's value at surface uv, exactly as Mitsuba 3's `Texture::eval`.

    Args:
      texture: a ConstantTexture, BitmapTexture, CheckerboardTexture or
        MeshAttributeTexture (bound, see `bind_mesh_attributes`).
      uv: float (..., 2), surface texture coordinates (any leading axes);
        in a render (..., 2 + K): the uv, then the mesh attributes of
        `attribute_layout`, which only a MeshAttributeTexture reads.

    Returns:
      float32 (..., C): C = 1 for a scalar constant or a one-channel bitmap,
      else 3 (a checkerboard mixing a scalar and an rgb color gives 3).

    Conventions (verified against Mitsuba 3.9.1 `bitmap` / `checkerboard`):
      * `to_uv` maps uv first (`transform_uv`).
      * bitmap, no v flip: uv (0, 0) is the top-left corner of the image,
        row i spans v in [i / H, (i + 1) / H).
      * nearest: texel (floor(v H), floor(u W)), wrapped.
      * bilinear: texel centres at ((j + 0.5) / W, (i + 0.5) / H); the four
        neighbours of (u W - 0.5, v H - 0.5) are wrapped one by one, so
        `repeat` blends across the seam and `clamp` / `mirror` repeat the edge
        texel there.
      * wrap: repeat (i mod n), mirror (period 2n, the edge texel twice),
        clamp (to [0, n - 1]).
      * checkerboard: color0 where (frac(u') > 0.5) == (frac(v') > 0.5),
        else color1 (so color0 on [0, 0.5]^2).
      * no clamping of values (data outside [0, 1] stays).

    Differentiable in `data`, `to_uv`, the constant/checkerboard values, and
    (bilinear only) uv; nearest and checkerboard are piecewise constant in uv
    (zero derivative). jit / vmap / grad compatible; NaN-free derivatives.
    """
    uv = jnp.asarray(uv, jnp.float32)
    if uv.ndim < 1 or uv.shape[-1] < 2:
        raise ValueError(f"uv must have shape (..., 2), got {uv.shape}")
    if isinstance(texture, ConstantTexture):
        v = _channels(texture.value)
        return jnp.broadcast_to(v, uv.shape[:-1] + v.shape)
    if isinstance(texture, BitmapTexture):
        return _eval_bitmap(texture, uv)
    if isinstance(texture, CheckerboardTexture):
        return _eval_checkerboard(texture, uv)
    if isinstance(texture, MeshAttributeTexture):
        return _eval_attribute(texture, uv)
    raise TypeError(f"eval_texture: unsupported texture type {type(texture).__name__}")


def luminance(rgb) -> jax.Array:
    """Luminance of linear sRGB/Rec.709 colours (..., 3) -> (...), as Mitsuba's
    `luminance` (0.212671 R + 0.715160 G + 0.072169 B)."""
    rgb = jnp.asarray(rgb)
    if not jnp.issubdtype(rgb.dtype, jnp.floating):
        rgb = rgb.astype(jnp.float32)
    return rgb[..., 0] * 0.212671 + rgb[..., 1] * 0.715160 + rgb[..., 2] * 0.072169


def _value1(v) -> jax.Array:
    # A constant's eval_1: itself, or the channel mean of an rgb colour
    # (Mitsuba's srgb spectrum).
    return jnp.mean(v, axis=-1)


def eval_texture_1(texture: Texture, uv) -> jax.Array:
    """A texture's scalar value at uv, exactly as Mitsuba 3's
    `Texture::eval_1`, which BSDFs use for roughness, blend weights,
    opacities and the principled BSDF's scalars.

    Args:
      texture: a ConstantTexture, BitmapTexture or CheckerboardTexture.
      uv: float (..., 2).

    Returns:
      float32 (...): a one-channel value itself; for three channels the
      luminance of a bitmap's value and the channel mean of a constant
      colour. A checkerboard gives color1 where `eval_texture` gives color0
      and vice versa: Mitsuba 3.9's `eval_1` tests the two halves with !=
      where `eval` tests ==, so a checkerboard mask or blend weight is the
      complement of the colour pattern; scenes rendered by Mitsuba rely on
      it. Differentiable as `eval_texture`.
    """
    uv = jnp.asarray(uv, jnp.float32)
    if isinstance(texture, BitmapTexture):
        v = _eval_bitmap(texture, uv)
        return luminance(v) if v.shape[-1] == 3 else v[..., 0]
    if isinstance(texture, CheckerboardTexture):
        p = transform_uv(texture.to_uv, uv)
        high = (p - jnp.floor(p)) > 0.5
        differ = high[..., 0] != high[..., 1]
        return jnp.where(differ, _value1(_channels(texture.color0)), _value1(_channels(texture.color1)))
    if isinstance(texture, ConstantTexture):
        return jnp.broadcast_to(_value1(_channels(texture.value)), uv.shape[:-1])
    if isinstance(texture, MeshAttributeTexture):
        if texture.slot is not None and texture.slot[1] != 1:
            raise ValueError(f'mesh attribute "{texture.name}" has {texture.slot[1]} channels and fills a scalar '
                             f"parameter (roughness, weight, opacity...): as in Mitsuba (eval_1), only "
                             f"one-channel attributes can")
        return _eval_attribute(texture, uv)[..., 0]
    raise TypeError(f"eval_texture_1: unsupported texture type {type(texture).__name__}")


def eval_texture_mean(texture: Texture) -> jax.Array:
    """The texture's average over the unit uv square, per channel: (C,).

    Constant: its value; bitmap: the mean texel (what the bilinear or nearest
    lookup averages to over [0, 1]^2 with `repeat`, and the value Mitsuba's
    `Bitmap::mean` reduces); checkerboard: (color0 + color1) / 2.
    (Mitsuba's own `Texture::mean()` is a scalar: the luminance of this for
    an rgb bitmap, the channel average for a checkerboard; `jnp.mean` of this
    gives the latter.) Differentiable.
    """
    if isinstance(texture, ConstantTexture):
        return _channels(texture.value)
    if isinstance(texture, BitmapTexture):
        return jnp.mean(jnp.asarray(texture.data, jnp.float32), axis=(0, 1))
    if isinstance(texture, CheckerboardTexture):
        c0, c1 = _channels(texture.color0), _channels(texture.color1)
        return 0.5 * (c0 + c1)
    if isinstance(texture, MeshAttributeTexture):
        # Mitsuba's Texture::mean is not implemented for mesh_attribute.
        raise ValueError(f'a mesh_attribute texture ("{texture.name}") has no mean over uv: plastic and '
                         f"roughplastic need one for their sampling weight (Mitsuba refuses it too)")
    raise TypeError(f"eval_texture_mean: unsupported texture type {type(texture).__name__}")
