"""`load_dict`: a Mitsuba 3 style scene dictionary -> `Scene`.

The dictionary follows `mi.load_dict`: every object is a dict with a "type"
and an optional "id"; the root is {"type": "scene", name: object, ...} in
document order. Values are Python floats/ints/bools/strs, {"type": "rgb",
"value": [r, g, b]}, {"type": "spectrum", "value": float}, 3-vectors as three
floats, transforms ("to_world", "to_uv") as anything `np.asarray` makes a
(4, 4) float array; nested objects sit under any key ("bsdf", "emitter",
"film", "sampler", "rfilter", or the parameter a texture fills), and
{"type": "ref", "id": ...} stands for the object with that id anywhere in the
document. Objects converted from XML carry "__source__" ("file:line", quoted
in every error) and "__tag__" (checked against the plugin's kind).

Ids: an object's "id", or else, for an entry at the root of a hand-written
dict, its key (as `mi.load_dict` does). Keys beginning with "_", and keys of
objects that carry a "__source__" (converted from XML, where ids are
explicit), are not ids, so those objects get positional parameter names.

Every plugin type, parameter and default is Mitsuba 3.9's (the tests load the
same dicts in Mitsuba and compare). Unknown plugin types and unknown or
ill-typed parameters raise `SceneError` naming the plugin, the parameter and
the source; parameters that only affect sampling or output formats are
accepted and ignored, and the few cosmetic ones we do not model are ignored
with a `SceneWarning`. The scene is returned only when everything is built.

Transforms: a "to_world" must be invertible (|det| of its 3x3 part above
1e-6 times the product of its column lengths); normals need its inverse.

Limits: integer parameters must fit int32 (as in Mitsuba); a film's width
and height are at most `MAX_FILM_SIDE` (65536) and width * height at most
`MAX_FILM_PIXELS` (715827882, so that flat (H, W, 3) indices fit int32);
objects nest at most `MAX_OBJECT_DEPTH` (100) levels.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
import warnings

import jax.numpy as jnp
import numpy as np

from jaxrender.scene import data
from jaxrender.scene.bsdfs import (
    BSDF,
    Conductor,
    Dielectric,
    Diffuse,
    Plastic,
    RoughConductor,
    RoughDielectric,
    RoughPlastic,
    Principled,
    PrincipledThin,
    ThinDielectric,
    TwoSided,
    BlendBSDF,
    Mask,
    NormalMap,
    BumpMap,
    Null,
)
from jaxrender.scene.emitters import (
    AreaLight,
    ConstantEmitter,
    DirectionalLight,
    EnvironmentMap,
    PointLight,
    SpotLight,
)
from jaxrender.scene.scene import AOV_TYPES, AOV_UNSUPPORTED, Ids, IntegratorConfig, Scene
from jaxrender.scene.sensors import (
    BatchSensor,
    Camera,
    Film,
    OrthographicCamera,
    PerspectiveCamera,
    MAX_FILTER_RADIUS,
    Radiancemeter,
    IrradianceMeter,
    DistantSensor,
    ReconstructionFilter,
    ThinLensCamera,
    sub_film,
    with_film,
)
from jaxrender.scene.shapes import (
    Mesh,
    cube_mesh,
    disk_mesh,
    rectangle_mesh,
    sphere_mesh,
    cylinder_mesh,
    vertex_normals,
)
from jaxrender.scene._pytree import StaticArray
from jaxrender.scene.transform import is_singular
from jaxrender.scene.textures import (
    BitmapTexture,
    CheckerboardTexture,
    ConstantTexture,
    MeshAttributeTexture,
    Texture,
    attribute_channels,
    attribute_textures,
)


class _FallbackSceneError(ValueError):
    """Stands in for jaxrender.io.SceneError where that module is missing."""


class _FallbackSceneWarning(UserWarning):
    """Stands in for jaxrender.io.SceneWarning where that module is missing."""


def _scene_error_type():
    # jaxrender.io owns the error types; it sits above this layer, so it is
    # imported lazily.
    try:
        from jaxrender.io import SceneError
    except ImportError:
        return _FallbackSceneError
    return SceneError


def _three_floats(value) -> np.ndarray | None:
    """An rgb value (3 numbers, or one for gray) as float32 (3,), or None."""
    if isinstance(value, str):
        return None
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if v.shape not in ((), (1,), (3,)):
        return None
    return np.broadcast_to(v.reshape(-1), (3,)).astype(np.float32)


def _warn(message: str) -> None:
    try:
        from jaxrender.io import SceneWarning
    except ImportError:
        SceneWarning = _FallbackSceneWarning
    warnings.warn(message, SceneWarning, stacklevel=4)


PLUGINS = {
    "shape": ("obj", "ply", "serialized", "rectangle", "cube", "disk", "sphere", "cylinder", "shapegroup",
              "instance", "merge"),
    "bsdf": ("diffuse", "conductor", "roughconductor", "plastic", "roughplastic", "dielectric",
             "roughdielectric", "thindielectric", "twosided", "blendbsdf", "mask", "null", "normalmap", "bumpmap",
             "principled", "principledthin"),
    "emitter": ("area", "point", "spot", "directional", "constant", "envmap"),
    "texture": ("bitmap", "checkerboard", "mesh_attribute"),
    "sensor": ("perspective", "thinlens", "orthographic", "batch", "radiancemeter", "irradiancemeter", "distant"),
    "film": ("hdrfilm",),
    "rfilter": ("box", "tent", "gaussian", "mitchell", "catmullrom", "lanczos"),
    "sampler": ("independent", "stratified", "multijitter", "orthogonal", "ldsampler"),
    "integrator": ("path", "direct", "aov", "depth", "prb", "prb_basic", "prb_projective",
                   "direct_projective", "volpath", "volpathmis"),
}

# Mitsuba 3 plugins that jaxrender does not implement (named as such in errors).
_UNSUPPORTED = {
    "shape": ("bsplinecurve", "linearcurve",
              "sdfgrid", "ellipsoids", "ellipsoidsmesh"),
    "bsdf": ("measured", "measured_polarized",
             "polarizer", "retarder", "circular", "pplastic", "hair"),
    "emitter": ("projector", "directionalarea", "sunsky", "timed_sunsky"),
    "texture": ("volume", "rawconstant"),
    "film": ("specfilm",),
    "integrator": ("ptracer", "moment", "stokes", "volprim_rf_basic"),
    "medium": ("homogeneous", "heterogeneous"),
    "phase": ("isotropic", "hg", "rayleigh", "sggx", "tabphase", "blendphase"),
    "volume": ("constvolume", "gridvolume"),
    "spectrum": ("blackbody", "irregular", "regular"),
}

_CATEGORY = {t: c for c, ts in PLUGINS.items() for t in ts}
_UNSUPPORTED_CATEGORY = {t: c for c, ts in _UNSUPPORTED.items() for t in ts}
_VALUE_TYPES = ("rgb", "spectrum", "uniform", "d65", "srgb")
_RESERVED = ("type", "id", "__source__", "__tag__")
_MISSING = object()
# Real scenes nest objects a handful of levels deep (shape > twosided > bsdf >
# texture). The builders recurse a few frames per level, so a bound keeps a
# runaway (or self-containing) dict a SceneError rather than a RecursionError.
MAX_OBJECT_DEPTH = 100
# Integer parameters are int32, as in Mitsuba (which rejects larger values
# where a plugin reads them).
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
# Film size: each side at most 65536 pixels, and width * height * 3 (the
# flat length of the (H, W, 3) image) within int32, so that pixel and
# channel indices never overflow. Mitsuba allows any uint32 side.
MAX_FILM_SIDE = 65536
MAX_FILM_PIXELS = _INT32_MAX // 3

# Parameters accepted and ignored without a word: they change only how
# samples are drawn (not the expected image) or how files are written.
_SILENT = {
    "shape": ("silhouette_sampling_weight",),
    "emitter": ("sampling_weight",),
    "roughconductor": ("sample_visible",),
    "roughdielectric": ("sample_visible",),
    "roughplastic": ("sample_visible",),
    "perspective": ("shutter_open", "shutter_close"),
    "hdrfilm": ("pixel_format", "component_format", "file_format", "banner", "compensate"),
    "sampler": ("seed",),
    "bitmap": ("format", "accel"),
    "prb_projective": ("sppc", "sppp", "sppi", "guiding", "guiding_rounds", "proj_seed_spp"),
    "direct_projective": ("sppc", "sppp", "sppi", "guiding", "guiding_rounds", "proj_seed_spp"),
}


def load_dict(scene_dict: dict) -> Scene:
    """Builds a `Scene` from a Mitsuba 3 style scene dictionary (see the
    module docstring for the format and the naming of ids).

    Args:
      scene_dict: {"type": "scene", ...}. Not modified.

    Returns:
      A Scene whose float arrays (float32 `jax.Array`s) are all
      differentiable leaves.

    Raises:
      SceneError (a ValueError; `jaxrender.io.SceneError`): unknown or
        unsupported plugin types, unknown or ill-typed parameters, missing
        or malformed mesh and image files, bad references; the message names
        the plugin, the parameter and the "__source__" where given.
    Warns:
      SceneWarning: cosmetic parameters that are ignored.
    """
    return _Loader(scene_dict).load()


# --------------------------------------------------------------------------
# Helpers


def _describe(value) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=3)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _is_number(x) -> bool:
    if isinstance(x, bool) or isinstance(x, np.bool_):
        return False
    if isinstance(x, numbers.Real):
        return True
    return isinstance(x, np.ndarray) and x.ndim == 0 and np.issubdtype(x.dtype, np.number)


_FLOAT32_MAX = float(np.finfo(np.float32).max)

# Reflectances (Mitsuba's sRGB reflectance spectra) must lie in [0, 1].
UNIT = (0.0, 1.0)


def _f32(x) -> jnp.ndarray:
    return jnp.asarray(np.asarray(x, dtype=np.float32))


def _coordinate_system(n):
    """Mitsuba's coordinate_system (Duff et al. 2017): two unit vectors
    orthogonal to the unit vector n."""
    sign = 1.0 if n[2] >= 0 else -1.0
    a = -1.0 / (sign + n[2])
    b = n[0] * n[1] * a
    s = np.array([1.0 + sign * n[0] * n[0] * a, sign * b, -sign * n[0]])
    t = np.array([b, sign + n[1] * n[1] * a, -n[1]])
    return s, t


def _sphere_frame(p: "_Obj", m: np.ndarray) -> np.ndarray:
    """A sphere's to_world as Mitsuba 3 reads it: a sphere about m's
    translation whose radius is the length of m's image of the x axis. A
    non-uniform scale or a shear (which would make the mesh an ellipsoid)
    is warned about, as Mitsuba does, and replaced by the nearest rotation
    (polar decomposition) times that radius; a uniform m is kept as is."""
    a = np.asarray(m[:3, :3], np.float64)
    radius = float(np.linalg.norm(a[:, 0]))
    if not radius > 0 or np.allclose(a.T @ a, radius * radius * np.eye(3), rtol=0, atol=1e-5 * radius * radius):
        return m
    _warn(f"{p.where()}: the sphere's to_world has a non-uniform scale or a shear; as in Mitsuba it renders a "
          f"sphere of radius {radius:g} (the length of to_world's image of the x axis), not an ellipsoid")
    u, _, vt = np.linalg.svd(a)
    out = np.array(m, np.float64)
    out[:3, :3] = (u @ vt) * radius
    return out


def _look_at_np(origin, target, up):
    d = np.asarray(target, np.float64) - np.asarray(origin, np.float64)
    d = d / np.linalg.norm(d)
    left = np.cross(up, d)
    left = left / np.linalg.norm(left)
    new_up = np.cross(d, left)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = left, new_up, d, origin
    return m


def _translate_np(v):
    m = np.eye(4)
    m[:3, 3] = v
    return m


# --------------------------------------------------------------------------
# One object's parameters


class _Obj:
    """An object dict being built: hands out its parameters, type-checked, and
    at the end (`finish`) rejects the ones nobody asked for."""

    def __init__(self, loader: _Loader, d: dict, category: str):
        self.loader = loader
        self.d = d
        self.type = d["type"]
        self.category = category
        self.used = set(_RESERVED)
        self.known: list[str] = []

    # -- messages

    def where(self) -> str:
        return self.loader.where(self.d)

    def error(self, message: str):
        return self.loader.error(f"{self.where()}: {message}")

    def param_error(self, name: str, expected: str, value):
        return self.error(f'parameter "{name}" must be {expected}, got {_describe(value)}')

    # -- access

    def has(self, name: str) -> bool:
        if name not in self.known:
            self.known.append(name)
        return name in self.d

    def raw(self, name: str, default=_MISSING):
        if not self.has(name):
            if default is _MISSING:
                raise self.error(f'missing required parameter "{name}"')
            return default
        self.used.add(name)
        return self.d[name]

    def unsupported(self, *names: str) -> None:
        for name in names:
            if name in self.d:
                raise self.error(f'parameter "{name}" is not supported by jaxrender')

    def float(self, name, default=_MISSING, *, minimum=None, exclusive=False, maximum=None) -> float:
        value = self.raw(name, default)
        if name not in self.d:
            return float(default)
        if not _is_number(value):
            raise self.param_error(name, "a float", value)
        value = float(value)
        if not math.isfinite(value):
            raise self.error(f'parameter "{name}" must be finite, got {value}')
        if minimum is not None and (value < minimum or (exclusive and value == minimum)):
            bound = ">" if exclusive else ">="
            raise self.error(f'parameter "{name}" must be {bound} {minimum}, got {value}')
        if maximum is not None and value > maximum:
            raise self.error(f'parameter "{name}" must be <= {maximum}, got {value}')
        return value

    def int(self, name, default=_MISSING, *, minimum=None, maximum=None) -> int:
        value = self.raw(name, default)
        if name not in self.d:
            return int(default)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
            raise self.param_error(name, "an integer", value)
        value = int(value)
        if not _INT32_MIN <= value <= _INT32_MAX:
            raise self.error(f'parameter "{name}" = {value} is out of range for a 32-bit integer '
                             f"[{_INT32_MIN}, {_INT32_MAX}]")
        if minimum is not None and value < minimum:
            raise self.error(f'parameter "{name}" must be >= {minimum}, got {value}')
        if maximum is not None and value > maximum:
            raise self.error(f'parameter "{name}" must be <= {maximum}, got {value}')
        return value

    def bool(self, name, default=_MISSING) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, (bool, np.bool_)):
            raise self.param_error(name, "a bool", value)
        return bool(value)

    def str(self, name, default=_MISSING, choices=None) -> str:
        value = self.raw(name, default)
        if not isinstance(value, str):
            raise self.param_error(name, "a string", value)
        if choices is not None and value not in choices:
            raise self.error(
                f'parameter "{name}" must be one of {", ".join(choices)}, got {value!r}'
                + _suggest(value, choices)
            )
        return value

    def matrix(self, name, size=4) -> np.ndarray | None:
        """A transform as float64 (size, size), or None when absent."""
        if not self.has(name):
            return None
        value = self.raw(name)
        if "Transform" in type(value).__name__ and hasattr(value, "matrix"):
            value = value.matrix  # a Mitsuba transform object
        try:
            m = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise self.param_error(name, "a (4, 4) float array", value) from None
        if m.shape not in ((4, 4), (size, size)):
            raise self.error(f'parameter "{name}" must be a (4, 4) float array, got shape {m.shape}')
        if not np.all(np.isfinite(m)):
            raise self.error(f'parameter "{name}" has non-finite entries: {m.tolist()}')
        if name == "to_world" and is_singular(m[:3, :3]):
            raise self.error(f'parameter "to_world" is singular (its 3x3 part {np.round(m[:3, :3], 6).tolist()} '
                             "has no inverse, which normals and directions need)")
        return self.check_float32(m, name)

    def check_float32(self, m: np.ndarray, name: str) -> np.ndarray:
        """m, after checking that float32 holds it and its inverse (normals
        and directions go through the inverse): a transform that overflows
        would otherwise make its shape or camera vanish without a word."""
        with np.errstate(all="ignore"):
            ok = np.all(np.abs(m) <= _FLOAT32_MAX)
            if ok and m.shape == (4, 4) and name == "to_world":
                try:
                    ok = np.all(np.abs(np.linalg.inv(m[:3, :3])) <= _FLOAT32_MAX)
                except np.linalg.LinAlgError:  # exactly singular: no inverse at all
                    ok = False
        if not ok:
            raise self.error(f'parameter "{name}" does not fit in float32 (largest entry of it or its inverse '
                             f"beyond {_FLOAT32_MAX:.3g}): [{'; '.join(' '.join(f'{x:.3g}' for x in row) for row in m)}]")
        return m

    def clamp_below(self, data: np.ndarray, lo: float, what: str):
        """data (numpy) with values below lo raised to lo, warning (naming the
        object and `what`) when there were any; data itself when there were
        none."""
        below = data < lo
        if not np.any(below):
            return data
        _warn(f"{self.where()}: {what}: {int(np.sum(below))} texel value(s) below {lo} (min {data.min():.6g}) "
              f"raised to {lo}")
        return np.maximum(data, np.asarray(lo, data.dtype))

    def vector3(self, name, default=_MISSING) -> np.ndarray:
        value = self.raw(name, default)
        try:
            v = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise self.param_error(name, "three floats", value) from None
        if v.shape != (3,) or isinstance(value, str):
            raise self.param_error(name, "three floats", value)
        if not np.all(np.isfinite(v)):
            raise self.error(f'parameter "{name}" must be finite, got {v.tolist()}')
        return v

    def ior(self, name, default: str) -> float:
        value = self.raw(name, default)
        if isinstance(value, str):
            key = value.lower()
            if key not in data.IOR:
                raise self.error(
                    f'parameter "{name}": unknown IOR name {value!r}; known: {", ".join(data.IOR)}'
                    + _suggest(key, data.IOR)
                )
            return data.IOR[key]
        if not _is_number(value):
            raise self.param_error(name, "a float or an IOR name", value)
        value = float(value)
        if not (math.isfinite(value) and value > 0):
            raise self.error(f'parameter "{name}" must be a positive IOR, got {value}')
        return value

    def constant(self, name, value, emitter=False):
        """A float/rgb/spectrum value as float32 () or (3,), or None if not one.

        Emitter values follow Mitsuba's RGB variants: a float becomes a gray
        rgb (3,), a `spectrum` the equal-energy white times its value (a
        `uniform` stays a float)."""
        if _is_number(value):
            v = float(value)
            if not math.isfinite(v):
                raise self.error(f'parameter "{name}" must be finite, got {v}')
            return np.full(3, v, np.float32) if emitter else np.float32(v)
        if isinstance(value, dict) and value.get("type") in ("d65", "srgb"):
            return self._named_spectrum(name, value)
        if isinstance(value, dict) and value.get("type") in _VALUE_TYPES:
            vtype, inner = value["type"], value.get("value", _MISSING)
            extra = set(value) - {"type", "value", "__source__", "__tag__"}
            if extra:
                raise self.error(f'parameter "{name}": {vtype} has unknown entries {sorted(extra)}')
            if vtype == "rgb":
                v = _three_floats(inner)
                if v is None:
                    raise self.error(f'parameter "{name}": rgb value must be 3 floats, got {_describe(inner)}')
            else:
                if not _is_number(inner):
                    raise self.error(
                        f'parameter "{name}": only a uniform {vtype} (one float) is supported in '
                        f"RGB mode, got {_describe(inner)}; give an rgb instead"
                    )
                v = np.float32(inner)
                if emitter and vtype == "spectrum":
                    v = (np.float32(inner) * np.asarray(data.EQUAL_ENERGY_RGB, np.float32)).astype(np.float32)
            if not np.all(np.isfinite(v)):
                raise self.error(f'parameter "{name}" must be finite, got {np.asarray(v).tolist()}')
            return v
        return None

    def _named_spectrum(self, name, value):
        """Mitsuba's `d65` (in RGB variants: the uniform value `scale`,
        default 1) and `srgb` (the rgb `color`) spectrum plugins."""
        vtype = value["type"]
        key = "scale" if vtype == "d65" else "color"
        extra = set(value) - {"type", key, "__source__", "__tag__"}
        if extra:
            raise self.error(f'parameter "{name}": {vtype} has unknown entries {sorted(extra)}')
        if vtype == "d65":
            v = value.get("scale", 1.0)
            if not _is_number(v) or not math.isfinite(float(v)):
                raise self.error(f'parameter "{name}": d65 "scale" must be a finite float, got {_describe(v)}')
            return np.float32(v)
        if "color" not in value:
            raise self.error(f'parameter "{name}": srgb needs a "color" (3 floats)')
        c = value["color"]
        if isinstance(c, dict) and c.get("type") == "rgb":  # <rgb name="color" .../> in XML
            c = c.get("value")
        v = _three_floats(c)
        if v is None or not np.all(np.isfinite(v)):
            raise self.error(f'parameter "{name}": srgb "color" must be 3 finite floats, got {_describe(c)}')
        return v

    def texture(self, name, default=_MISSING, *, spatial=True, emitter=False, bounds=None) -> Texture:
        """A texture-valued parameter: float, rgb, spectrum, or (if `spatial`)
        a bitmap / checkerboard / reference to one. Defaults are floats.
        bounds: (lo, hi) that a constant value must lie in (either None:
        open); emitted values must be >= 0."""
        if not self.has(name) and default is not _MISSING:
            return ConstantTexture(value=_f32(default))
        value = self.raw(name, default)
        c = self.constant(name, value, emitter)
        lo, hi = (0.0, None) if emitter and bounds is None else (bounds or (None, None))

        def check(arr, what):
            arr = np.asarray(arr, np.float64)
            if (lo is not None and np.any(arr < lo)) or (hi is not None and np.any(arr > hi)):
                want = f"in [{lo}, {hi}]" if lo is not None and hi is not None else (
                    f">= {lo}" if lo is not None else f"<= {hi}")
                got = np.round(arr, 6).tolist() if arr.size <= 3 else f"values in [{arr.min():.6g}, {arr.max():.6g}]"
                raise self.error(f'parameter "{name}"{what} must be {want}, got {got}')

        if c is not None:
            check(c, "")
            return ConstantTexture(value=_f32(c))
        if isinstance(value, dict) and "type" in value:
            target = self.loader.resolve(value, self)
            category = self.loader.category(target)
            if category == "texture":
                if not spatial:
                    raise self.error(
                        f'parameter "{name}" of {self.type} must be a constant (float, rgb or '
                        f'spectrum), not a {target["type"]} texture'
                    )
                tex = self.loader.build_texture(target)
                # A texture's constants obey the parameter's bounds. A
                # bitmap's texels are raised to its lower one with a warning:
                # image files carry small negative values (resampling's
                # ringing) that Mitsuba renders as they are; texels above 1
                # (HDR) are kept, as Mitsuba keeps them.
                if isinstance(tex, CheckerboardTexture):
                    check(tex.color0, " (its checkerboard's color0)")
                    check(tex.color1, " (its checkerboard's color1)")
                elif isinstance(tex, BitmapTexture) and lo is not None:
                    tex = self.loader.clamped_bitmap(target, tex, lo, self, f'parameter "{name}"')
                return tex
            raise self.error(
                f'parameter "{name}" must be a float, rgb, spectrum or texture, got a {category} '
                f'({target["type"]})'
            )
        expected = "a float, rgb, spectrum or texture" if spatial else "a float, rgb or spectrum"
        raise self.param_error(name, expected, value)

    def nested(self, category: str) -> list[tuple[str, dict]]:
        """The nested objects of one category (references resolved), in order."""
        out = []
        for key, value in self.d.items():
            if key in self.used or key.startswith("__") or not isinstance(value, dict) or "type" not in value:
                continue
            if value["type"] in _VALUE_TYPES:
                continue
            target = self.loader.resolve(value, self)
            if self.loader.category(target) == category:
                self.used.add(key)
                out.append((key, target))
        return out

    def finish(self, cosmetic=()) -> None:
        """Rejects every entry that no builder asked for (silent and cosmetic
        ones aside)."""
        silent = _SILENT.get(self.type, ()) + _SILENT.get(self.category, ())
        for key, value in self.d.items():
            if key in self.used or key in silent or key.startswith("__"):
                continue
            if key in cosmetic:
                _warn(f'{self.where()}: parameter "{key}" is ignored by jaxrender')
                continue
            if isinstance(value, dict) and "type" in value and value["type"] not in _VALUE_TYPES:
                target = self.loader.resolve(value, self)
                raise self.error(
                    f'unexpected nested {self.loader.category(target)} "{key}" '
                    f'({target["type"]}) in a {self.type}'
                )
            known = sorted(set(self.known) | set(silent) | set(cosmetic))
            raise self.error(
                f'unknown parameter "{key}" for {self.category} "{self.type}"'
                + _suggest(key, known)
                + (f" (known: {', '.join(known)})" if known else "")
            )


def _world_triangles(positions, faces, to_world) -> np.ndarray:
    """A mesh's triangles (F, 3, 3) in world space, in float64."""
    world = np.asarray(positions, np.float64) @ to_world[:3, :3].T + to_world[:3, 3]
    return world[np.asarray(faces)]


def _area(tris: np.ndarray) -> float:
    """The total area of triangles (F, 3, 3)."""
    return float(np.sum(0.5 * np.linalg.norm(np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]), axis=-1)))


def _check_meter_filter(p: _Obj, film: Film) -> None:
    """Mitsuba warns when a meter's film filter is wider than a pixel."""
    if film.rfilter.radius > 0.5 + 1e-4:
        _warn(f"{p.where()}: this sensor should be used with a reconstruction filter of radius 0.5 or lower "
              "(e.g. the default box)")


# --------------------------------------------------------------------------
# The loader


class _Loader:
    def __init__(self, root):
        self.root = root
        self.by_id: dict[str, dict] = {}
        self.order: dict[int, int] = {}
        self.built: dict[int, object] = {}
        # Bitmaps whose texels were raised to a parameter's lower bound, by
        # (id of the texture's dict, bound).
        self.clamped: dict[tuple[int, float], BitmapTexture] = {}
        self.building: set[int] = set()
        self.shapes: list[Mesh] = []
        self.shape_dicts: list[dict] = []
        self.bsdfs: list[tuple[float, BSDF]] = []
        self.bsdf_index: dict[int, int] = {}
        self.emitters: list = []
        self.emitter_owner: dict[int, int] = {}
        self.sensors: list[Camera] = []
        self.integrator: IntegratorConfig | None = None
        self.ids: dict[str, tuple[str, int]] = {}
        self.key_ids: dict[int, str] = {}
        self.prefix: dict[int, str | None] = {}
        # Built object (by id()) -> (its dict, how to name it in messages):
        # tells objects that share a parameter name because they are one
        # shared object from different objects whose names collide.
        self.sources: dict[int, tuple[dict, str]] = {}
        self.SceneError = _scene_error_type()

    # -- messages

    def error(self, message: str):
        return self.SceneError(message)

    def where(self, d: dict) -> str:
        text = f'{d.get("type", "?")}'
        oid = d.get("id") or self.key_ids.get(id(d))
        if oid:
            text += f' "{oid}"'
        if d.get("__source__"):
            text += f' ({d["__source__"]})'
        return text

    # -- ids and references

    def index(self) -> None:
        """First pass: document order and ids of every object dict."""
        counter = [0]
        enclosing: list[dict] = []  # the objects `d` is nested in, outermost first

        def visit(d, key, parent_prefix, role):
            if any(d is e for e in enclosing):
                raise self.error(f"{self.where(d)}: the object contains itself")
            if len(enclosing) >= MAX_OBJECT_DEPTH:
                raise self.error(f"{self.where(d)}: objects are nested more than "
                                 f"{MAX_OBJECT_DEPTH} levels deep (outermost: {self.where(enclosing[0])})")
            self.order[id(d)] = counter[0]
            counter[0] += 1
            oid = d.get("id")
            if oid is not None and not isinstance(oid, str) or oid == "":
                raise self.error(f'{d.get("type")}: "id" must be a non-empty string, got {oid!r}')
            if oid is None and key is not None and not key.startswith("_") and "__source__" not in d:
                oid = key
                self.key_ids[id(d)] = key
            if oid is not None:
                other = self.by_id.get(oid)
                if other is not None and other is not d:
                    raise self.error(
                        f'duplicate id "{oid}": {self.where(other)} and {self.where(d)}'
                    )
                self.by_id[oid] = d
            # The parameter-name prefix, as Mitsuba's traverse names things:
            # root objects by their id, nested ones by their parent's name
            # and their role ("bsdf", "emitter", "brdf_0", the parameter a
            # texture fills), whatever id they have; own id as a fallback.
            if key is not None:
                self.prefix[id(d)] = oid
            elif parent_prefix and role:
                self.prefix[id(d)] = f"{parent_prefix}.{role}"
            else:
                self.prefix[id(d)] = d.get("id")
            category = self.category(d)
            position = nested_bsdfs = 0
            for k, v in d.items():
                if k.startswith("__") or not isinstance(v, dict) or not isinstance(v.get("type"), str) \
                        or v["type"] in _VALUE_TYPES:
                    continue
                if v["type"] == "ref":
                    position += 1
                    continue
                child = self.category(v)
                if category == "shape" and child in ("bsdf", "emitter"):
                    child_role = child
                elif d["type"] == "twosided" and child == "bsdf":
                    child_role = f"brdf_{position}"
                elif d["type"] == "blendbsdf" and child == "bsdf":
                    child_role = f"bsdf_{nested_bsdfs}"
                elif d["type"] in ("mask", "normalmap", "bumpmap") and child == "bsdf":
                    child_role = "nested_bsdf"
                elif d["type"] == "bumpmap" and child == "texture":
                    child_role = "nested_texture"
                elif child == "texture":
                    child_role = k
                else:
                    child_role = None
                position += 1
                nested_bsdfs += child == "bsdf"
                enclosing.append(d)
                try:
                    visit(v, None, self.prefix[id(d)], child_role)
                finally:
                    enclosing.pop()

        for key, value in self.root.items():
            if key in _RESERVED or key.startswith("__"):
                continue
            if not isinstance(value, dict) or not isinstance(value.get("type"), str):
                raise self.error(
                    f'scene entry "{key}" must be an object (a dict with a "type"), got {_describe(value)}'
                )
            if value["type"] == "ref":
                raise self.error(f'scene entry "{key}": a reference cannot stand at the root of the scene')
            visit(value, key, None, None)

    def object_id(self, d: dict) -> str | None:
        return d.get("id") or self.key_ids.get(id(d))

    def resolve(self, value: dict, parent: _Obj | None = None) -> dict:
        if value.get("type") != "ref":
            return value
        rid = value.get("id")
        src = f' ({value["__source__"]})' if value.get("__source__") else ""
        context = f"{parent.where()}: " if parent is not None else ""
        if not isinstance(rid, str):
            raise self.error(f'{context}reference{src} needs a string "id", got {rid!r}')
        if rid not in self.by_id:
            raise self.error(
                f'{context}reference{src} to unknown id "{rid}"' + _suggest(rid, self.by_id)
            )
        return self.by_id[rid]

    def category(self, d: dict) -> str:
        t = d.get("type")
        if not isinstance(t, str):
            raise self.error(f'object {_describe(d)} needs a string "type"')
        src = f' ({d["__source__"]})' if d.get("__source__") else ""
        if t in _CATEGORY:
            category = _CATEGORY[t]
        elif t in _UNSUPPORTED_CATEGORY:
            c = _UNSUPPORTED_CATEGORY[t]
            raise self.error(
                f'{c} plugin "{t}"{src} is not supported by jaxrender (supported {c}s: '
                f'{", ".join(PLUGINS.get(c, ())) or "none"})'
            )
        else:
            tag = d.get("__tag__")
            kind = f"{tag} " if isinstance(tag, str) else ""
            options = PLUGINS.get(tag, list(_CATEGORY) + list(_UNSUPPORTED_CATEGORY))
            raise self.error(f'unknown {kind}plugin type "{t}"{src}' + _suggest(t, options)
                             + (f" (supported {tag}s: {', '.join(options)})" if tag in PLUGINS else ""))
        tag = d.get("__tag__")
        if tag is not None and tag != category:
            raise self.error(f'<{tag} type="{t}">{src}: "{t}" is a {category} plugin, not a {tag}')
        return category

    def clamped_bitmap(self, target: dict, tex: BitmapTexture, lo: float, user: _Obj, what: str) -> BitmapTexture:
        """tex with its texels raised to lo (`_Obj.clamp_below`, warning as
        `user`'s `what`), once per texture dict and bound, so that the
        texture's users still share one object (and one parameter); tex
        itself where no texel was below lo."""
        key = (id(target), lo)
        if key not in self.clamped:
            texels = np.asarray(tex.data)
            data = user.clamp_below(texels, lo, what)
            if data is not texels:
                clamped = dataclasses.replace(tex, data=_f32(data))
                # It stands for the texture's dict, as the original did.
                self.sources[id(clamped)] = self.sources.get(id(tex), (target, ""))
                tex = clamped
            self.clamped[key] = tex
        return self.clamped[key]

    # -- the whole scene

    def check_keys(self, root: dict) -> None:
        """Every key of the scene dict and of the dicts inside it is a string
        (each dict looked at once: shared and self-containing ones too)."""
        seen, todo = set(), [(root, "the scene dict")]
        while todo:
            d, where = todo.pop()
            if id(d) in seen:
                continue
            seen.add(id(d))
            for key, value in d.items():
                if not isinstance(key, str):
                    raise self.error(f"{where} has a key that is not a string: {_describe(key)}")
                if isinstance(value, dict):
                    todo.append((value, f'"{key}"'))

    def load(self) -> Scene:
        root = self.root
        if not isinstance(root, dict) or root.get("type") != "scene":
            got = root.get("type") if isinstance(root, dict) else _describe(root)
            raise self.error(f'the root of a scene dict must have "type": "scene", got {got!r}')
        self.check_keys(root)
        self.index()
        for key, d in root.items():
            if key in _RESERVED or key.startswith("__"):
                continue
            category = self.category(d)
            if category == "shape":
                self.add_shape(d)
            elif category == "bsdf":
                self.register_bsdf(d)
            elif category == "emitter":
                self.register_emitter(d, None)
            elif category == "sensor":
                self.register(d, "sensors", len(self.sensors))
                self.sensors.append(self.build_sensor(d))
                self.sources[id(self.sensors[-1])] = (d, self.where(d))
            elif category == "integrator":
                if self.integrator is not None:
                    raise self.error(f"{self.where(d)}: a scene has at most one integrator")
                self.integrator = self.build_integrator(d)
            elif category == "texture":
                self.build_texture(d)
            else:
                raise self.error(f"{self.where(d)}: a {category} must be nested in a "
                                 f"{'film' if category == 'rfilter' else 'sensor'}")
        # BSDFs in document order, whatever order references built them in.
        perm = sorted(range(len(self.bsdfs)), key=lambda i: self.bsdfs[i][0])
        new_index = {old: new for new, old in enumerate(perm)}
        shapes = tuple(m.replace(bsdf=new_index[m.bsdf]) for m in self.shapes)
        for mesh, d in zip(shapes, self.shape_dicts):
            self.sources[id(mesh)] = (d, self.where(d))
        ids = {k: (c, new_index[i] if c == "bsdfs" else i) for k, (c, i) in self.ids.items()}
        scene = Scene(
            shapes=shapes,
            bsdfs=tuple(self.bsdfs[i][1] for i in perm),
            emitters=tuple(self.emitters),
            sensors=tuple(self.sensors),
            integrator=self.integrator or IntegratorConfig(),
            ids=Ids(ids),
        )
        self.check_parameter_names(scene)
        return scene

    def check_parameter_names(self, scene: Scene) -> None:
        """Rejects scenes in which one parameter name would stand for leaves of
        different objects (`replace` would silently change them all).

        Names are built from ids and roles (see params.py), so ids like
        "Mesh[0]" or "x.bsdf" can spell another object's name. Mitsuba lets
        such names collide silently (its `traverse` keeps one of them); ids
        themselves are not restricted (Blender exports "Material.001").
        One name for several leaves of one shared object (a texture or BSDF
        used by reference) is fine.
        """
        from jaxrender.scene.params import _param_paths

        def owner(path):
            # The innermost built object on the path that came from a dict.
            obj, found = scene, None
            for step in path[:-1]:
                obj = obj[step] if isinstance(step, int) else getattr(obj, step)
                found = self.sources.get(id(obj), found)
            return found

        for name, paths in _param_paths(scene).items():
            if len(paths) < 2:
                continue
            first = owner(paths[0])
            for path in paths[1:]:
                other = owner(path)
                if first is None or other is None or other[0] is not first[0]:
                    a = first[1] if first else ".".join(map(str, paths[0]))
                    b = other[1] if other else ".".join(map(str, path))
                    raise self.error(
                        f'parameter name "{name}" would stand for two objects: {a} and {b} (names '
                        'are made from ids and roles, e.g. "<shape id>.bsdf", "Mesh[<i>]"); rename one'
                    )

    def register(self, d: dict, collection: str, index: int) -> None:
        oid = self.object_id(d)
        if oid is not None:
            self.ids[oid] = (collection, index)

    def memo(self, d: dict, build):
        key = id(d)
        if key in self.built:
            return self.built[key]
        if key in self.building:
            raise self.error(f"{self.where(d)}: circular reference")
        self.building.add(key)
        try:
            obj = build()
        finally:
            self.building.discard(key)
        self.built[key] = obj
        self.sources[id(obj)] = (d, self.where(d))
        return obj

    # -- shapes

    def add_shape(self, d: dict) -> None:
        """A shape of the scene (or of a `merge`), by its type."""
        if d["type"] == "shapegroup":
            self.group_members(d)  # checked here, built by each instance
        elif d["type"] == "instance":
            self.build_instance(d)
        elif d["type"] == "merge":
            for _, m in self.merged([(None, d)]):
                self.add_shape(m)
        else:
            self.build_shape(d)

    def merged(self, shapes: list) -> list:
        """(key, dict) of `shapes` with each `merge` replaced by its shapes.

        Mitsuba's `merge` joins the meshes that share a BSDF into one mesh
        to save memory; the image is that of its shapes loaded one by one,
        which is what they become here (names and ids as if they were
        outside it)."""
        def expand(d):
            p = _Obj(self, d, "shape")
            members = p.nested("shape")
            p.finish()
            return self.merged(members)

        out = []
        for key, d in shapes:
            # memo: a merge that contains itself through a reference is a
            # circular reference, as for any other object.
            out.extend(self.memo(d, lambda: expand(d)) if d["type"] == "merge" else [(key, d)])
        return out

    def group_members(self, d: dict) -> list[tuple[str, dict]]:
        """The shapes of a `shapegroup` (checked: plain shapes without
        emitters, at least one)."""
        p = _Obj(self, d, "shape")
        members = self.merged(p.nested("shape"))
        p.finish()
        if not members:
            raise p.error("a shapegroup needs at least one shape")
        for _, m in members:
            if m["type"] in ("shapegroup", "instance"):
                raise self.error(f"{self.where(m)}: a shapegroup cannot contain a {m['type']} (nested instancing)")
            if _Obj(self, m, "shape").nested("emitter"):
                raise self.error(f"{self.where(m)}: a shape in a shapegroup cannot be an emitter "
                                 "(Mitsuba does not instance emitters)")
        return members

    def build_instance(self, d: dict) -> None:
        """Mitsuba's `instance` of a `shapegroup`: each shape of the group
        becomes a mesh of its own, under to_world = instance's @ shape's."""
        p = _Obj(self, d, "shape")
        to_world = p.matrix("to_world")
        groups = p.nested("shape")
        p.finish()
        if len(groups) != 1 or groups[0][1]["type"] != "shapegroup":
            got = ", ".join(g["type"] for _, g in groups) or "nothing"
            raise p.error(f"an instance takes one shapegroup (a reference to it), got {got}")
        iid = self.object_id(d)
        for key, member in self.group_members(groups[0][1]):
            name = member.get("id") or key
            self.build_shape(member, instance=(np.eye(4) if to_world is None else to_world,
                                               f"{iid}.{name}" if iid else None, d))

    def shape_geometry(self, p: _Obj, instance=None):
        """A shape's mesh from its parameters: (to_world, positions, normals,
        texcoords, faces, attributes, face_normals, flip_normals), positions
        in object space (to_world includes an instance's transform)."""
        t = p.type
        to_world = p.matrix("to_world")
        to_world = np.eye(4) if to_world is None else to_world
        flip_normals = p.bool("flip_normals", False)
        face_normals = False
        if t in ("obj", "ply", "serialized"):
            filename = p.str("filename")
            face_normals = p.bool("face_normals", False)
            # Mitsuba's serialized plugin has no flip_tex_coords (uvs as stored).
            flip_tex = p.bool("flip_tex_coords", t == "obj") if t != "serialized" else False
            positions, normals, texcoords, faces, attributes = self.read_mesh(p, filename)
            # jaxrender.io.read_obj already flips v as Mitsuba's default
            # flip_tex_coords=true does; read_ply does not.
            if texcoords is not None and flip_tex != (t == "obj"):
                texcoords = texcoords.copy()
                texcoords[:, 1] = 1.0 - texcoords[:, 1]
        else:
            attributes = {}
            positions, normals, texcoords, faces = {
                "rectangle": rectangle_mesh, "cube": cube_mesh, "disk": disk_mesh, "sphere": sphere_mesh,
                "cylinder": cylinder_mesh,
            }[t]()
            if t == "sphere":
                center = p.vector3("center", (0.0, 0.0, 0.0))
                radius = p.float("radius", 1.0, minimum=0.0, exclusive=True)
                to_world = to_world @ _translate_np(center) @ np.diag([radius, radius, radius, 1.0])
                to_world = _sphere_frame(p, to_world)
            if t == "cylinder":
                # Mitsuba: translate(p0) * to_frame(coordinate_system(axis)) * scale(r, r, length).
                p0 = np.asarray(p.vector3("p0", (0.0, 0.0, 0.0)), np.float64)
                p1 = np.asarray(p.vector3("p1", (0.0, 0.0, 1.0)), np.float64)
                radius = p.float("radius", 1.0, minimum=0.0, exclusive=True)
                axis = p1 - p0
                length = float(np.linalg.norm(axis))
                if not length > 0:
                    raise p.error('cylinder: "p0" and "p1" must differ')
                unit_axis = axis / length
                frame = np.eye(4)
                frame[:3, 0], frame[:3, 1] = _coordinate_system(unit_axis)
                frame[:3, 2] = unit_axis
                to_world = to_world @ _translate_np(p0) @ frame @ np.diag([radius, radius, length, 1.0])
            p.check_float32(to_world, "to_world")
        generated = normals is None
        if normals is None and not face_normals:
            normals = np.asarray(vertex_normals(positions, faces))
        if normals is not None and (generated or t == "sphere") and np.linalg.det(to_world[:3, :3]) < 0:
            # A mirroring to_world turns the winding, and with it the face
            # normal, inwards. Mitsuba computes missing vertex normals from
            # the world-space winding and orients its analytic sphere the
            # same way, so they turn inwards too (a mirrored closed mesh is
            # inside out); normals read from a file (and the cube's) are
            # only transformed, and keep pointing outwards. (Its mirrored
            # cylinder does neither: measured, it still differs a little.)
            # An instance's transform is not part of this: Mitsuba applies
            # it to rays, after the shape (and a sphere's frame) is built,
            # so a sphere in a non-uniformly scaled instance is an ellipsoid.
            normals = -normals
        if instance is not None:
            to_world = p.check_float32(np.asarray(instance[0], np.float64) @ to_world, "to_world")
        return to_world, positions, normals, texcoords, faces, attributes, face_normals, flip_normals

    def build_shape(self, d: dict, instance=None) -> None:
        """Builds one shape. `instance`: (to_world, mesh id, instance dict)
        when the shape is a member of a shapegroup instanced by `build_instance`."""
        p = _Obj(self, d, "shape")
        sid = self.object_id(d) if instance is None else instance[1]
        to_world, positions, normals, texcoords, faces, attributes, face_normals, flip_normals = \
            self.shape_geometry(p, instance)
        bsdfs = p.nested("bsdf")
        emitters = p.nested("emitter")
        sensors = p.nested("sensor")
        p.finish()
        if len(bsdfs) > 1:
            raise p.error(f"a shape takes one BSDF, got {len(bsdfs)} ({', '.join(k for k, _ in bsdfs)})")
        if len(emitters) > 1:
            raise p.error(f"a shape takes one emitter, got {len(emitters)}")

        shape_index = len(self.shapes)
        if bsdfs:
            bsdf = self.register_bsdf(bsdfs[0][1])
        else:
            # Mitsuba gives each shape without a BSDF its own diffuse: 0.5, or
            # black when the shape is an area light.
            albedo = 0.0 if emitters else 0.5
            default = Diffuse(reflectance=ConstantTexture(value=_f32(albedo)), id=f"{sid}.bsdf" if sid else None)
            self.bsdfs.append((self.order[id(d)] + 0.5, default))
            self.sources[id(default)] = (d, f"the default BSDF of {self.where(d)}")
            bsdf = len(self.bsdfs) - 1
        emitter = -1
        if emitters:
            emitter = self.register_emitter(emitters[0][1], shape_index)
        self.check_attributes(p, attributes, bsdf, emitter, len(positions), len(faces))

        mesh = Mesh(
            vertex_positions=_f32(positions),
            to_world=_f32(to_world),
            vertex_normals=None if face_normals else _f32(normals),
            vertex_texcoords=None if texcoords is None else _f32(texcoords),
            faces=StaticArray(np.asarray(faces, np.int32)),
            face_normals=face_normals,
            flip_normals=flip_normals,
            bsdf=bsdf,
            emitter=emitter,
            id=sid,
            attributes={name: _f32(a) for name, a in attributes.items()},
        )
        if instance is None:
            self.register(d, "shapes", shape_index)
        elif sid is not None:
            self.ids[sid] = ("shapes", shape_index)
        self.shapes.append(mesh)
        self.shape_dicts.append(d if instance is None else instance[2])
        for _, sd in sensors:
            if sd["type"] != "irradiancemeter":
                raise p.error(f"a shape can hold an irradiancemeter sensor, not a {sd['type']}")
            if instance is not None:
                raise p.error("an irradiancemeter cannot be nested in a shapegroup's shape in jaxrender")
            if len(sensors) > 1:
                raise p.error(f"a shape takes one sensor, got {len(sensors)}")
            if not _area(_world_triangles(positions, faces, to_world)) > 0:
                raise p.error("the shape of an irradiancemeter has no area")
            self.register(sd, "sensors", len(self.sensors))
            self.sensors.append(self._build_irradiancemeter(_Obj(self, sd, "sensor"), sd, shape_index))
            self.sources[id(self.sensors[-1])] = (sd, self.where(sd))

    def check_attributes(self, p: _Obj, attributes: dict, bsdf: int, emitter: int, num_vertices: int,
                         num_faces: int) -> None:
        """Every mesh_attribute texture of the shape's BSDF and area light
        names an attribute of 1 or 3 channels that the shape has (Mitsuba
        fails at render time on the first hit otherwise)."""
        owners = [self.bsdfs[bsdf][1]] + ([self.emitters[emitter]] if emitter >= 0 else [])
        for tex in attribute_textures(tuple(owners)):
            try:
                attribute_channels(tex.name, attributes, num_vertices, num_faces, "the shape")
            except ValueError as e:
                raise p.error(str(e)) from None

    def read_mesh(self, p: _Obj, filename: str):
        path = os.path.abspath(os.path.expanduser(filename))
        if not os.path.isfile(path):
            raise p.error(f"mesh file not found: {path}")
        from jaxrender import io as jio

        if p.type == "serialized":
            index = p.int("shape_index", 0, minimum=0)
            reader = lambda path: jio.read_serialized(path, index)  # noqa: E731
        else:
            reader = jio.read_obj if p.type == "obj" else jio.read_ply
        try:
            mesh = reader(path)
        except Exception as e:  # the reader's message names the problem; add the shape
            text = str(e) if path in str(e) else f"could not read {path}: {e}"
            raise p.error(text) from e

        def check(name, x, cols, kind):
            if x is None:
                return None
            a = np.asarray(x)
            if a.ndim != 2 or a.shape[1] != cols:
                raise p.error(f"{path}: {name} must have shape (N, {cols}), got {a.shape}")
            if kind == "f":
                a = a.astype(np.float32)
                bad = np.nonzero(~np.all(np.isfinite(a), axis=1))[0]
                if bad.size:
                    raise p.error(f"{path}: {name}[{bad[0]}] = {a[bad[0]].tolist()} is not finite "
                                  f"({bad.size} such rows)")
            return a

        positions = check("vertices", mesh.vertices, 3, "f")
        faces = check("faces", mesh.faces, 3, "i")
        normals = check("normals", getattr(mesh, "normals", None), 3, "f")
        texcoords = check("texcoords", getattr(mesh, "texcoords", None), 2, "f")
        if positions.shape[0] == 0 or faces.shape[0] == 0:
            raise p.error(f"{path}: the mesh is empty ({positions.shape[0]} vertices, {faces.shape[0]} faces)")
        if not np.issubdtype(faces.dtype, np.integer):
            raise p.error(f"{path}: faces must be integers, got {faces.dtype}")
        bad = np.nonzero(((faces < 0) | (faces >= positions.shape[0])).any(axis=1))[0]
        if bad.size:
            raise p.error(f"{path}: faces[{bad[0]}] = {faces[bad[0]].tolist()} indexes a vertex outside "
                          f"[0, {positions.shape[0]})")
        faces = faces.astype(np.int32)
        for name, x in (("normals", normals), ("texcoords", texcoords)):
            if x is not None and x.shape[0] != positions.shape[0]:
                raise p.error(f"{path}: {x.shape[0]} {name} for {positions.shape[0]} vertices")
        if normals is not None:
            # Mitsuba normalizes the normals it reads; zero ones get the
            # computed smooth normal instead of NaN.
            length = np.linalg.norm(normals, axis=1, keepdims=True)
            normals = normals / np.where(length > 0, length, 1)
            if np.any(length == 0):
                normals = np.where(length > 0, normals, vertex_normals(positions, faces))
        attributes = dict(getattr(mesh, "attributes", None) or {})
        for name, a in attributes.items():
            rows = positions.shape[0] if name.startswith("vertex_") else faces.shape[0]
            if a.ndim != 2 or a.shape[0] != rows:
                raise p.error(f"{path}: mesh attribute {name} must have shape ({rows}, C), got {a.shape}")
        return positions, normals, texcoords, faces, attributes

    # -- BSDFs

    def register_bsdf(self, d: dict) -> int:
        key = id(d)
        if key in self.bsdf_index:
            return self.bsdf_index[key]
        bsdf = self.build_bsdf(d)
        self.bsdfs.append((self.order[key], bsdf))
        self.bsdf_index[key] = len(self.bsdfs) - 1
        # Ids point at final (document-order) positions after load() sorts.
        self.register(d, "bsdfs", len(self.bsdfs) - 1)
        return len(self.bsdfs) - 1

    def build_bsdf(self, d: dict) -> BSDF:
        return self.memo(d, lambda: self._build_bsdf(d, self.prefix[id(d)]))

    def _alphas(self, p: _Obj):
        if p.has("alpha"):
            if p.has("alpha_u") or p.has("alpha_v"):
                raise p.error('give either "alpha" or "alpha_u" and "alpha_v", not both')
            return p.texture("alpha", bounds=(0.0, None)), None
        if p.has("alpha_u") or p.has("alpha_v"):
            if not (p.has("alpha_u") and p.has("alpha_v")):
                raise p.error('"alpha_u" and "alpha_v" must be given together')
            return p.texture("alpha_u", bounds=(0.0, None)), p.texture("alpha_v", bounds=(0.0, None))
        return ConstantTexture(value=_f32(0.1)), None

    def _eta_k(self, p: _Obj):
        if p.has("eta") or p.has("k"):
            if p.has("material"):
                raise p.error('give either "material" or "eta" and "k", not both')
            return p.texture("eta", 0.0), p.texture("k", 1.0)
        material = p.str("material", "none")
        if material == "none":
            return ConstantTexture(value=_f32(0.0)), ConstantTexture(value=_f32(1.0))
        if material not in data.CONDUCTORS:
            raise p.error(f'parameter "material": unknown conductor {material!r}'
                          + _suggest(material, list(data.CONDUCTORS) + ["none"])
                          + f" (known: none, {', '.join(data.CONDUCTORS)})")
        eta, k = data.CONDUCTORS[material]
        return ConstantTexture(value=_f32(eta)), ConstantTexture(value=_f32(k))

    def _distribution(self, p: _Obj) -> str:
        return p.str("distribution", "beckmann", choices=("beckmann", "ggx"))

    def _sampling_rates(self, p: _Obj, *lobes: str) -> dict:
        """The principled BSDFs' "<lobe>_sampling_rate" floats (>= 0, default
        1, not all 0)."""
        rates = {f"{lobe}_sampling_rate": p.float(f"{lobe}_sampling_rate", 1.0, minimum=0.0) for lobe in lobes}
        if sum(rates.values()) <= 0.0:
            raise p.error("the sampling rates cannot all be 0")
        return rates

    def _principled(self, p: _Obj, bid: str | None) -> Principled:
        # Mitsuba's get_flag: a lobe is on when its parameter is given and is
        # not the float 0. Only the transmission lobe's changes a number: it
        # nudges eta = 1 (specular = 0), which has no refraction, as
        # Mitsuba's constructor does.
        has_trans = p.has("spec_trans") and not (_is_number(p.d["spec_trans"]) and float(p.d["spec_trans"]) == 0.0)
        if p.has("eta") and p.has("specular"):
            raise p.error('give either "eta" or "specular", not both (each determines the other)')
        eta = specular = None
        if p.has("eta"):
            eta = p.float("eta", minimum=0.0, exclusive=True)
            eta = 1.001 if has_trans and eta == 1.0 else eta
        else:
            specular = p.float("specular", 0.5, minimum=0.0)
            if 0.08 * specular >= 1.0:
                raise p.error(f'parameter "specular" must be < 12.5 (it maps to eta = 2 / (1 - sqrt(0.08 '
                              f'specular)) - 1), got {specular}')
            specular = 1e-3 if has_trans and specular == 0.0 else specular
        unit = {name: p.texture(name, default, bounds=UNIT) for name, default in (
            ("base_color", 0.5), ("roughness", 0.5), ("anisotropic", 0.0), ("metallic", 0.0),
            ("spec_trans", 0.0), ("spec_tint", 0.0), ("sheen", 0.0), ("sheen_tint", 0.0),
            ("flatness", 0.0), ("clearcoat", 0.0), ("clearcoat_gloss", 0.0))}
        rates = self._sampling_rates(p, "main_specular", "clearcoat", "diffuse_reflectance")
        return Principled(**unit, eta=None if eta is None else _f32(eta),
                          specular=None if specular is None else _f32(specular), **rates, id=bid)

    def _principledthin(self, p: _Obj, bid: str | None) -> PrincipledThin:
        tex = {name: p.texture(name, default, bounds=UNIT) for name, default in (
            ("base_color", 0.5), ("roughness", 0.5), ("anisotropic", 0.0), ("spec_trans", 0.0),
            ("spec_tint", 0.0), ("sheen", 0.0), ("sheen_tint", 0.0), ("flatness", 0.0))}
        tex["diff_trans"] = p.texture("diff_trans", 0.0, bounds=(0.0, 2.0))
        tex["eta"] = p.texture("eta", 1.5, bounds=(1e-3, None))
        rates = self._sampling_rates(p, "specular_reflectance", "specular_transmittance", "diffuse_reflectance",
                                     "diffuse_transmittance")
        return PrincipledThin(**tex, **rates, id=bid)

    def _build_bsdf(self, d: dict, bid: str | None) -> BSDF:
        p = _Obj(self, d, "bsdf")
        t = p.type
        if t == "diffuse":
            b = Diffuse(reflectance=p.texture("reflectance", 0.5, bounds=UNIT), id=bid)
        elif t == "conductor":
            eta, k = self._eta_k(p)
            b = Conductor(eta=eta, k=k, specular_reflectance=p.texture("specular_reflectance", 1.0, bounds=UNIT), id=bid)
        elif t == "roughconductor":
            dist = self._distribution(p)
            au, av = self._alphas(p)
            eta, k = self._eta_k(p)
            b = RoughConductor(alpha_u=au, alpha_v=av, eta=eta, k=k,
                               specular_reflectance=p.texture("specular_reflectance", 1.0, bounds=UNIT),
                               distribution=dist, id=bid)
        elif t in ("plastic", "roughplastic"):
            kw = dict(
                diffuse_reflectance=p.texture("diffuse_reflectance", 0.5, bounds=UNIT),
                specular_reflectance=p.texture("specular_reflectance", 1.0, bounds=UNIT),
                int_ior=_f32(p.ior("int_ior", "polypropylene")),
                ext_ior=_f32(p.ior("ext_ior", "air")),
                nonlinear=p.bool("nonlinear", False),
                id=bid,
            )
            for name in ("diffuse_reflectance", "specular_reflectance"):
                if isinstance(kw[name], MeshAttributeTexture):
                    # Mitsuba: "Texture::mean(): not implemented!"
                    raise p.error(f'parameter "{name}" of a {t} cannot be a mesh_attribute texture: the '
                                  f"{t}'s sampling weight needs the texture's mean (Mitsuba refuses it too)")
            if t == "plastic":
                b = Plastic(**kw)
            else:
                p.unsupported("alpha_u", "alpha_v")
                b = RoughPlastic(alpha=_f32(p.float("alpha", 0.1, minimum=0.0)),
                                 distribution=self._distribution(p), **kw)
        elif t in ("dielectric", "thindielectric", "roughdielectric"):
            kw = dict(
                int_ior=_f32(p.ior("int_ior", "bk7")),
                ext_ior=_f32(p.ior("ext_ior", "air")),
                specular_reflectance=p.texture("specular_reflectance", 1.0, bounds=UNIT),
                specular_transmittance=p.texture("specular_transmittance", 1.0, bounds=UNIT),
                id=bid,
            )
            if t == "dielectric":
                b = Dielectric(**kw)
            elif t == "thindielectric":
                b = ThinDielectric(**kw)
            else:
                dist = self._distribution(p)
                au, av = self._alphas(p)
                b = RoughDielectric(alpha_u=au, alpha_v=av, distribution=dist, **kw)
        elif t == "twosided":
            nested = p.nested("bsdf")
            if len(nested) not in (1, 2):
                raise p.error(f"twosided takes one or two nested BSDFs, got {len(nested)}")
            inner = []
            for _, nd in nested:
                if nd["type"] == "twosided":
                    raise p.error("a twosided BSDF cannot contain another twosided BSDF")
                inner.append(self.build_bsdf(nd))
            b = TwoSided(brdf=tuple(inner), id=bid)
        elif t in ("blendbsdf", "mask", "normalmap", "bumpmap"):
            nested = p.nested("bsdf")
            want = 2 if t == "blendbsdf" else 1
            if len(nested) != want:
                raise p.error(f"{t} takes {'two nested BSDFs' if want == 2 else 'one nested BSDF'}, "
                              f"got {len(nested)}")
            inner = tuple(self.build_bsdf(nd) for _, nd in nested)
            if t == "blendbsdf":
                b = BlendBSDF(weight=p.texture("weight", bounds=UNIT), bsdf=inner, id=bid)
            elif t == "normalmap":
                b = NormalMap(normalmap=p.texture("normalmap"), bsdf=inner, id=bid)
            elif t == "bumpmap":
                textures = p.nested("texture")
                if len(textures) != 1:
                    raise p.error(f"bumpmap takes one nested texture (the height field), got {len(textures)}")
                height = p.texture(textures[0][0])
                if isinstance(height, MeshAttributeTexture):
                    raise p.error("a bumpmap's height cannot be a mesh_attribute texture: its value has no uv "
                                  "gradient (Mitsuba's bumpmap fails on it too)")
                b = BumpMap(texture=height, bsdf=inner, scale=p.float("scale", 1.0), id=bid)
            else:
                b = Mask(opacity=p.texture("opacity", 0.5, bounds=UNIT), bsdf=inner, id=bid)
        elif t == "null":
            b = Null(id=bid)
        elif t == "principled":
            b = self._principled(p, bid)
        elif t == "principledthin":
            b = self._principledthin(p, bid)
        else:  # pragma: no cover  (category() admits only the types above)
            raise p.error(f"unhandled BSDF type {t}")
        p.finish()
        return b

    # -- textures

    def build_texture(self, d: dict) -> Texture:
        return self.memo(d, lambda: self._build_texture(d))

    def _to_uv(self, p: _Obj):
        m = p.matrix("to_uv", size=3)
        if m is None:
            return _f32(np.eye(3))
        if m.shape == (4, 4):
            # Mitsuba keeps rows/columns x, y and the translation of a 4x4 to_uv.
            m = m[np.ix_([0, 1, 3], [0, 1, 3])]
        return _f32(m)

    def _build_texture(self, d: dict) -> Texture:
        p = _Obj(self, d, "texture")
        tid = self.prefix[id(d)]
        if p.type == "bitmap":
            raw = p.bool("raw", False)
            filter_type = p.str("filter_type", "bilinear", choices=("bilinear", "nearest"))
            wrap_mode = p.str("wrap_mode", "repeat", choices=("repeat", "mirror", "clamp"))
            # Mitsuba's storage precision; texels are float32 here whatever it says.
            p.str("format", "auto", choices=("auto", "variant", "float16", "fp16", "uint8"))
            image = self.image(p, raw, channels=(1, 3))
            tex = BitmapTexture(data=_f32(image), to_uv=self._to_uv(p), filter_type=filter_type,
                                wrap_mode=wrap_mode, raw=raw, id=tid)
        elif p.type == "mesh_attribute":
            name = p.str("name")
            if not name.startswith(("vertex_", "face_")):
                raise p.error(f'mesh_attribute: "name" must start with "vertex_" or "face_", got {name!r}')
            tex = MeshAttributeTexture(name=name, scale=_f32(p.float("scale", 1.0)), id=tid)
        else:
            c0 = p.texture("color0", 0.4, spatial=False)
            c1 = p.texture("color1", 0.2, spatial=False)
            tex = CheckerboardTexture(color0=c0.value, color1=c1.value, to_uv=self._to_uv(p), id=tid)
        p.finish()
        return tex

    def image(self, p: _Obj, raw: bool, channels) -> np.ndarray:
        """The image of a bitmap or envmap: from "filename" or a "data" array."""
        if p.has("filename") == p.has("data"):
            raise p.error('give exactly one of "filename" and "data"')
        if p.has("filename"):
            filename = p.str("filename")
            path = os.path.abspath(os.path.expanduser(filename))
            if not os.path.isfile(path):
                raise p.error(f"image file not found: {path}")
            from jaxrender import io as jio

            try:
                img = jio.read_image(path, raw=raw)
            except Exception as e:
                text = str(e) if path in str(e) else f"could not read {path}: {e}"
                raise p.error(text) from e
            what = path
        else:
            value = p.raw("data")
            try:
                img = np.asarray(value, dtype=np.float32)
            except (TypeError, ValueError):
                raise p.param_error("data", "a float array (H, W, C)", value) from None
            what = 'parameter "data"'
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3 or img.shape[2] not in channels or img.shape[0] == 0 or img.shape[1] == 0:
            raise p.error(f"{what}: image must have shape (H, W, C) with C in {channels}, got {img.shape}")
        if not np.all(np.isfinite(img)):
            raise p.error(f"{what}: image has {int(np.sum(~np.isfinite(img)))} non-finite values")
        return img.astype(np.float32)

    # -- emitters

    def register_emitter(self, d: dict, shape_index: int | None) -> int:
        key = id(d)
        if key in self.emitter_owner:
            raise self.error(f"{self.where(d)}: an emitter can be attached to one shape only")
        if d["type"] == "area" and shape_index is None:
            raise self.error(f"{self.where(d)}: an area emitter must be attached to a shape")
        if d["type"] != "area" and shape_index is not None:
            raise self.error(f"{self.where(d)}: only area emitters can be attached to shapes")
        emitter = self.memo(d, lambda: self.build_emitter(d, self.prefix[id(d)], shape_index))
        self.emitter_owner[key] = len(self.emitters)
        self.register(d, "emitters", len(self.emitters))
        self.emitters.append(emitter)
        return len(self.emitters) - 1

    def build_emitter(self, d: dict, eid: str | None, shape_index: int | None):
        p = _Obj(self, d, "emitter")
        t = p.type
        if t == "area":
            e = AreaLight(radiance=p.texture("radiance", 1.0, emitter=True), shape=shape_index, id=eid)
        elif t == "point":
            if p.has("position") and p.has("to_world"):
                raise p.error('give either "position" or "to_world", not both')
            m = p.matrix("to_world")
            position = m[:3, 3] if m is not None else p.vector3("position", (0.0, 0.0, 0.0))
            e = PointLight(intensity=p.texture("intensity", 1.0, spatial=False, emitter=True),
                           position=_f32(position), id=eid)
        elif t == "spot":
            texture = p.texture("texture", emitter=True) if p.has("texture") else None
            # Mitsuba asserts beam_width <= cutoff_angle (debug builds only)
            # and bounds neither; past 90 degrees the cone is wider than a
            # hemisphere and the spot's texture projection (tan cutoff) breaks.
            cutoff = p.float("cutoff_angle", 20.0, minimum=0.0, exclusive=True)
            if cutoff > 90.0:
                raise p.error(f'parameter "cutoff_angle" must be in (0, 90] degrees, got {cutoff}')
            beam = p.float("beam_width", cutoff * 0.75, minimum=0.0)
            if beam > cutoff:
                raise p.error(f'parameter "beam_width" ({beam}) must not exceed "cutoff_angle" ({cutoff})')
            m = p.matrix("to_world")
            e = SpotLight(intensity=p.texture("intensity", 1.0, spatial=False, emitter=True), cutoff_angle=_f32(cutoff),
                          beam_width=_f32(beam), to_world=_f32(np.eye(4) if m is None else m), id=eid,
                          texture=texture)
        elif t == "directional":
            if p.has("direction") and p.has("to_world"):
                raise p.error('give either "direction" or "to_world", not both')
            m = p.matrix("to_world")
            if p.has("direction"):
                direction = p.vector3("direction")
                norm = np.linalg.norm(direction)
                if norm == 0:
                    raise p.error('parameter "direction" must be non-zero')
                direction = direction / norm
                m = _look_at_np(np.zeros(3), direction, _coordinate_system(direction)[0])
            e = DirectionalLight(irradiance=p.texture("irradiance", 1.0, spatial=False, emitter=True),
                                 to_world=_f32(np.eye(4) if m is None else m), id=eid)
        elif t == "constant":
            e = ConstantEmitter(radiance=p.texture("radiance", 1.0, spatial=False, emitter=True), id=eid)
        elif t == "envmap":
            image = self.image(p, raw=False, channels=(3,))
            source = p.str("filename") if p.has("filename") else 'parameter "data"'
            if image.shape[0] < 2:
                raise p.error(f"{source}: an environment map (latitude-longitude image) needs at least 2 rows, "
                              f"got shape {image.shape}")
            # Negative radiance would break the map's importance sampling.
            image = p.clamp_below(image, 0.0, source)
            scale = p.float("scale", 1.0, minimum=0.0)
            m = p.matrix("to_world")
            e = EnvironmentMap(data=_f32(image), scale=_f32(scale),
                               to_world=_f32(np.eye(4) if m is None else m), id=eid)
        else:  # pragma: no cover
            raise p.error(f"unhandled emitter type {t}")
        p.finish()
        return e

    # -- sensors

    def build_sensor(self, d: dict, in_batch: bool = False) -> Camera | BatchSensor:
        p = _Obj(self, d, "sensor")
        if p.type == "batch":
            return self._build_batch(p, d, in_batch)
        if p.type == "radiancemeter":
            return self._build_radiancemeter(p, d)
        if p.type in ("distant", "irradiancemeter") and in_batch:
            raise p.error(f"a batch sensor cannot hold a {p.type} sensor in jaxrender")
        if p.type == "distant":
            return self._build_distant(p, d)
        if p.type == "irradiancemeter":
            raise p.error("an irradiancemeter must be nested in the shape it measures")
        m = p.matrix("to_world")
        fov = fov_axis = None
        if p.type != "orthographic":
            fov, fov_axis = self._field_of_view(p)
        near = p.float("near_clip", 0.01, minimum=0.0, exclusive=True)
        far = p.float("far_clip", 10000.0)
        # Motion blur is not rendered (the scene is static), but a shutter
        # that closes before it opens is an error in Mitsuba too.
        shutter = p.float("shutter_open", 0.0), p.float("shutter_close", 0.0)
        if shutter[1] < shutter[0]:
            raise p.error(f"shutter_close ({shutter[1]}) must not be before shutter_open ({shutter[0]})")
        if not far > near:
            raise p.error(f"far_clip ({far}) must be greater than near_clip ({near})")
        if p.type == "perspective":
            # In units of the film's size, as in Mitsuba (thinlens has none there).
            principal_point = tuple(p.float(f"principal_point_offset_{a}", 0.0) for a in "xy")
        if p.type == "thinlens":
            # Required, as in Mitsuba; 0 is a pinhole (Mitsuba warns and uses epsilon).
            aperture = p.float("aperture_radius", minimum=0.0)
            focus = p.float("focus_distance", far, minimum=0.0, exclusive=True)
        film, sample_count = self._film_and_sampler(p)
        common = dict(
            to_world=_f32(np.eye(4) if m is None else m), film=film, near_clip=near, far_clip=far,
            sample_count=sample_count, id=self.object_id(d),
        )
        if p.type == "orthographic":
            return OrthographicCamera(**common)
        if p.type == "thinlens":
            return ThinLensCamera(fov=_f32(fov), fov_axis=fov_axis, aperture_radius=_f32(aperture),
                                  focus_distance=_f32(focus), **common)
        return PerspectiveCamera(fov=_f32(fov), fov_axis=fov_axis, principal_point=principal_point, **common)

    def _build_irradiancemeter(self, p: _Obj, d: dict, shape: int) -> IrradianceMeter:
        """Mitsuba's `irradiancemeter`, nested in shape number `shape`."""
        if p.has("to_world"):
            raise p.error('an irradiancemeter takes no "to_world": it inherits its shape\'s placement')
        p.float("shutter_open", 0.0), p.float("shutter_close", 0.0)
        film, sample_count = self._film_and_sampler(p)
        _check_meter_filter(p, film)
        return IrradianceMeter(shape=shape, film=film, sample_count=sample_count, id=self.object_id(d))

    def _build_distant(self, p: _Obj, d: dict) -> DistantSensor:
        """Mitsuba's `distant`: rays along `direction` (or to_world's +z),
        aimed at `target` (a point or a nested shape's surface) or at the
        scene's bounding sphere's cross-section."""
        m = p.matrix("to_world")
        if p.has("direction"):
            if m is not None:
                raise p.error('give either "direction" or "to_world", not both')
            direction = p.vector3("direction")
            norm = np.linalg.norm(direction)
            if not norm > 0:
                raise p.error('parameter "direction" must be non-zero')
            direction = direction / norm
            m = _look_at_np(np.zeros(3), direction, _coordinate_system(direction)[1])
        target = None
        if p.has("target"):
            value = p.d["target"]
            if isinstance(value, dict) and "type" in value and value["type"] not in _VALUE_TYPES:
                shape = self.resolve(value, p)
                if self.category(shape) != "shape":
                    raise p.error(f'parameter "target" must be a point or a shape, got a {self.category(shape)}')
                p.used.add("target")
                target = _f32(self.target_triangles(shape))
            else:
                target = _f32(p.vector3("target"))
        p.float("shutter_open", 0.0), p.float("shutter_close", 0.0)
        film, sample_count = self._film_and_sampler(p)
        if (film.width, film.height) != (1, 1):
            raise p.error(f"a distant sensor needs a 1x1 film, got {film.width}x{film.height}")
        _check_meter_filter(p, film)
        return DistantSensor(to_world=_f32(np.eye(4) if m is None else m), target=target, film=film,
                             sample_count=sample_count, id=self.object_id(d))

    def target_triangles(self, d: dict) -> np.ndarray:
        """A distant sensor's target shape as world-space triangles (F, 3, 3)
        (float64). The shape is only sampled, not added to the scene (one
        referenced by id may also be a scene shape); its BSDF, emitter or
        sensor play no part in the target, as in Mitsuba."""
        p = _Obj(self, d, "shape")
        if p.type in ("shapegroup", "instance", "merge"):
            raise p.error(f"a distant sensor's target must be a single shape, not a {p.type}")
        to_world, positions, _, _, faces, _, _, _ = self.shape_geometry(p)
        for category in ("bsdf", "emitter", "sensor"):  # a scene shape's, when referenced: not the target's
            p.nested(category)
        p.finish()
        tris = _world_triangles(positions, faces, to_world)
        if not _area(tris) > 0:
            raise p.error("a distant sensor's target shape has no area")
        return tris

    def _build_radiancemeter(self, p: _Obj, d: dict) -> Radiancemeter:
        """Mitsuba's `radiancemeter`: one ray, from `to_world` or from
        `origin` and `direction` (both; to_world wins, as in Mitsuba)."""
        m = p.matrix("to_world")
        given = [n for n in ("origin", "direction") if p.has(n)]
        if m is not None and given:
            for n in given:
                p.raw(n)
            _warn(f'{p.where()}: {" and ".join(given)} ignored: "to_world" places the radiancemeter (as in Mitsuba)')
        elif given:
            if len(given) == 1:
                raise p.error('a radiancemeter given by "origin" and "direction" needs both')
            origin, direction = p.vector3("origin"), p.vector3("direction")
            norm = np.linalg.norm(direction)
            if not norm > 0:
                raise p.error('parameter "direction" must be non-zero')
            direction = direction / norm
            m = _look_at_np(origin, origin + direction, _coordinate_system(direction)[0])
        p.float("shutter_open", 0.0), p.float("shutter_close", 0.0)
        film, sample_count = self._film_and_sampler(p)
        if (film.width, film.height) != (1, 1):
            # Mitsuba's default film is 768x576, which it refuses here too.
            raise p.error(f"a radiancemeter needs a 1x1 film, got {film.width}x{film.height}")
        return Radiancemeter(to_world=_f32(np.eye(4) if m is None else m), film=film, sample_count=sample_count,
                             id=self.object_id(d))

    def _build_batch(self, p: _Obj, d: dict, in_batch: bool) -> BatchSensor:
        """Mitsuba's `batch`: its nested sensors side by side in its film,
        each taking 1/N of the width (their own films' sizes and samplers
        are replaced, as in Mitsuba)."""
        if in_batch:
            raise p.error("a batch sensor cannot hold another batch sensor")
        children = p.nested("sensor")
        film, sample_count = self._film_and_sampler(p)
        if not children:
            raise p.error("a batch sensor needs at least one nested sensor")
        if film.width % len(children):
            raise p.error(f"the film width ({film.width}) must be divisible by the number of nested "
                          f"sensors ({len(children)})")
        if film.cropped:
            raise p.error("a batch sensor's film cannot be cropped in jaxrender")
        share = sub_film(film, len(children))
        try:
            cameras = tuple(with_film(self.build_sensor(c, in_batch=True), share) for _, c in children)
        except ValueError as e:  # a radiancemeter's share that is not 1x1
            raise p.error(f"each nested sensor gets {share.width}x{share.height} pixels of the film: {e}") from None
        return BatchSensor(sensors=cameras, film=film, sample_count=sample_count, id=self.object_id(d))

    def _film_and_sampler(self, p: _Obj) -> tuple[Film, int]:
        """A sensor's film (Mitsuba's default if none) and sample count (4),
        after every other parameter of `p` was read (`finish` runs here)."""
        films = p.nested("film")
        samplers = p.nested("sampler")
        p.finish()
        if len(films) > 1 or len(samplers) > 1:
            raise p.error("a sensor takes at most one film and one sampler")
        return (self.build_film(films[0][1]) if films else Film(),
                self.build_sampler(samplers[0][1]) if samplers else 4)

    def _field_of_view(self, p: _Obj) -> tuple[float, str]:
        """A perspective or thin-lens sensor's (fov, fov_axis), from `fov` or
        Mitsuba's 35 mm-equivalent `focal_length`."""
        if p.has("fov") and p.has("focal_length"):
            raise p.error('give either "fov" or "focal_length", not both')
        if p.has("fov"):
            fov = p.float("fov")
            if not 0 < fov < 180:
                raise p.error(f'parameter "fov" must be in (0, 180) degrees, got {fov}')
            return fov, p.str("fov_axis", "x", choices=("x", "y", "diagonal", "smaller", "larger"))
        if p.has("fov_axis"):
            raise p.error('parameter "fov_axis" applies only together with "fov"')
        value = p.raw("focal_length", "50mm")
        text = value[:-2] if isinstance(value, str) and value.endswith("mm") else value
        try:
            focal = float(text)
        except (TypeError, ValueError):
            raise p.param_error("focal_length", 'a length like "50mm"', value) from None
        if not (math.isfinite(focal) and focal > 0):
            raise p.error(f'parameter "focal_length" must be positive, got {value!r}')
        # Mitsuba: a focal length on 35 mm film sets the diagonal fov.
        return math.degrees(2.0 * math.atan(math.hypot(36.0, 24.0) / (2.0 * focal))), "diagonal"

    def build_film(self, d: dict) -> Film:
        p = _Obj(self, d, "film")
        width = p.int("width", 768, minimum=1, maximum=MAX_FILM_SIDE)
        height = p.int("height", 576, minimum=1, maximum=MAX_FILM_SIDE)
        if width * height > MAX_FILM_PIXELS:
            raise p.error(f"film of {width}x{height} = {width * height} pixels is larger than "
                          f"jaxrender's limit of {MAX_FILM_PIXELS} pixels (width * height * 3 "
                          "must fit a 32-bit index)")
        # Mitsuba's crop window: the part of the film that is rendered.
        crop = {name: p.int(name, default, minimum=minimum) for name, default, minimum in (
            ("crop_offset_x", 0, 0), ("crop_offset_y", 0, 0), ("crop_width", width, 1), ("crop_height", height, 1))}
        cosmetic = ()
        if p.has("sample_border"):
            if p.bool("sample_border"):
                p.used.discard("sample_border")
                cosmetic = ("sample_border",)
        rfilters = p.nested("rfilter")
        p.finish(cosmetic=cosmetic)
        if len(rfilters) > 1:
            raise p.error("a film takes at most one rfilter")
        rfilter = self.build_rfilter(rfilters[0][1]) if rfilters else ReconstructionFilter()
        try:
            return Film(width=width, height=height, rfilter=rfilter, **crop)
        except ValueError as e:  # a crop window outside the film (Mitsuba refuses it too)
            raise p.error(str(e)) from None

    def build_rfilter(self, d: dict) -> ReconstructionFilter:
        p = _Obj(self, d, "rfilter")
        # Footprints are bounded (MAX_FILTER_RADIUS pixels): each pixel of
        # the footprint costs a pass over the samples.
        if p.type == "gaussian":
            stddev = p.float("stddev", 0.5, minimum=0.0, exclusive=True, maximum=MAX_FILTER_RADIUS / 4)
            f = ReconstructionFilter("gaussian", 4.0 * stddev, stddev)
        elif p.type == "mitchell":
            # Mitchell and Netravali's family lives in [0, 1]^2; far outside
            # it the weights nearly cancel and pixels blow up.
            f = ReconstructionFilter("mitchell", 2.0, b=p.float("B", 1.0 / 3.0, minimum=0.0, maximum=1.0),
                                     c=p.float("C", 1.0 / 3.0, minimum=0.0, maximum=1.0))
        elif p.type == "catmullrom":
            f = ReconstructionFilter("mitchell", 2.0, b=0.0, c=0.5)
        elif p.type == "lanczos":
            f = ReconstructionFilter("lanczos", float(p.int("lobes", 3, minimum=1, maximum=16)))
        else:
            default = 0.5 if p.type == "box" else 1.0
            f = ReconstructionFilter(p.type, p.float("radius", default, minimum=0.0, exclusive=True,
                                                     maximum=MAX_FILTER_RADIUS))
        p.finish()
        return f

    def build_sampler(self, d: dict) -> int:
        p = _Obj(self, d, "sampler")
        count = p.int("sample_count", 4, minimum=1)
        for name in ("jitter", "scramble_seed"):  # stratified/multijitter/ldsampler extras
            if p.has(name):
                p.raw(name)
        p.finish()
        if p.type != "independent":
            _warn(f"{p.where()}: jaxrender draws independent samples "
                  f'(the "{p.type}" sampler only changes the noise pattern)')
        return count

    # -- integrator

    def build_integrator(self, d: dict) -> IntegratorConfig:
        p = _Obj(self, d, "integrator")
        t = p.type
        if t == "aov":
            aovs = p.str("aovs")
            for item in aovs.split(","):
                name, _, kind = item.partition(":")
                if name and kind in AOV_UNSUPPORTED:
                    raise p.error(f'parameter "aovs": AOV type {kind!r} is not supported by jaxrender '
                                  f'(supported: {", ".join(AOV_TYPES)})')
                if not name or kind not in AOV_TYPES:
                    raise p.error(f'parameter "aovs": bad entry {item!r} (want name:type with type in '
                                  f'{", ".join(AOV_TYPES)})' + _suggest(kind, AOV_TYPES))
            nested = p.nested("integrator")
            p.finish()
            if len(nested) > 1:
                raise p.error("aov takes at most one nested integrator")
            inner = self.build_integrator(nested[0][1]) if nested else None
            return IntegratorConfig(type="aov", aovs=aovs, nested=inner)
        if t == "depth":
            p.finish()
            return IntegratorConfig(type="depth")
        hide = p.bool("hide_emitters", False)
        if t in ("direct", "direct_projective"):
            shading = p.int("shading_samples", 1, minimum=0)
            cfg = IntegratorConfig(type="direct", hide_emitters=hide,
                                   emitter_samples=p.int("emitter_samples", shading, minimum=0),
                                   bsdf_samples=p.int("bsdf_samples", shading, minimum=0))
            if t == "direct_projective":
                p.int("max_depth", -1, minimum=-1)
        else:
            cfg = IntegratorConfig(type="path", hide_emitters=hide,
                                   max_depth=p.int("max_depth", -1, minimum=-1),
                                   rr_depth=p.int("rr_depth", 5, minimum=1))
        p.finish()
        return cfg
