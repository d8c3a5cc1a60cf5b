"""Mitsuba scene files (3.x XML and the 0.5/0.6 dialect of PSDR-CUDA) -> a
plain Python dict, the *scene dict*, which `jaxrender.scene` builds scenes from.

Host-side only: numbers become Python scalars, transforms numpy arrays.

The scene dict
==============

It follows the conventions of Mitsuba 3's `mi.load_dict`, plus a few private
keys (starting with `__`) that say where things came from.

Objects. Every plugin object (`<scene>`, `<shape>`, `<bsdf>`, `<texture>`,
`<emitter>`, `<sensor>`, `<film>`, `<sampler>`, `<rfilter>`, `<integrator>`,
`<medium>`, `<phase>`, `<volume>`, and `<spectrum type=...>`) is a dict::

    {"type": "diffuse",            # plugin name, passed through unchecked
     "id": "red",                  # only if the XML gave one
     "__tag__": "bsdf",            # the XML element it came from
     "__source__": "/abs/scene.xml:12",   # file:line, for error messages
     <parameter name>: <value>, ...}      # in document order

The root is `{"type": "scene", "__tag__": "scene", "__source__": ...,
<child>: <object>, ...}`, children in document order (after includes are
spliced in). A root child is keyed by its `id`, else `"<tag>_<n>"`, n counting
the unnamed root children with that tag from 0 ("shape_0", "shape_1",
"bsdf_0", "sensor_0", ...). Objects with ids that are only referenced (a
`<bsdf id="red">` at scene level) stay at the root under their id.

Nested objects (a bsdf or emitter inside a shape, a texture as a BSDF
parameter, film and sampler inside a sensor, rfilter inside a film) are keyed
by their `name` attribute if given, else by their tag ("bsdf", "emitter",
"film", "sampler", "rfilter", "texture"); when a parent has several unnamed
children with the same tag (e.g. `blendbsdf`), they are keyed "bsdf_0",
"bsdf_1", ... in document order. A nested object keeps its `id`.

Values:

    <float>      float           <integer>  int (int32 range)    <boolean>  bool
    <string>     str             (`filename` values: absolute paths, see below)
    <point>, <vector>            [x, y, z] (list of 3 floats)
    <rgb>        {"type": "rgb", "value": [r, g, b]}   (one value -> gray)
    <srgb>       same, the value (3 floats in [0, 1] or "#rrggbb") sRGB-decoded
    <spectrum value="0.5"/>      {"type": "spectrum", "value": 0.5}
                                 (files of the 0.5/0.6 dialect: {"type": "rgb",
                                 "value": [0.5, 0.5, 0.5]}, as PSDR-CUDA reads it)
    <spectrum value="400:0.1, 700:0.4"/> (or filename="x.spd")
                 {"type": "rgb", "value": [...]}: converted to linear sRGB as
                 Mitsuba's RGB variants do (see `_color.spectrum_to_rgb`; D65-lit
                 for reflectances, plain CIE integration inside an emitter),
                 within about 1.5% of Mitsuba.
    <transform name="to_world">  numpy.ndarray (4, 4) float64

References: `<ref id="x"/>` becomes `{"type": "ref", "id": "x",
"__source__": ...}` under the ref's `name` if given, else under "ref_<n>"
(n counts the unnamed refs of the parent from 0). References are checked (an
id that no object in the document has is an error) but not resolved; the
scene builder resolves them by id. `<alias id="a" as="b"/>` is applied by
rewriting references to "b" into references to "a".

Paths: `filename` values (and `<spectrum filename>`) are made absolute. Like
Mitsuba's file resolver, a relative path is looked up in the folder of the
file that names it, then the folders of the files that included that one (up
to the main file), then folders added with `<path value=.../>`, then the
current directory; the first that exists wins. If none exists the path is made
absolute against the naming file's folder, and the reader that opens it
reports it missing. `<include filename=.../>` is resolved the same way; its
content (the children of its `<scene>`, or its single root object) is spliced
in where the include stood.

Parameters: `$name` in any attribute is replaced by `params["name"]`, else by
an earlier `<default name=... value=.../>` (the first default of a name wins);
a `$` that matches neither is an error naming it, and so is a passed
parameter that the file never uses (both as in Mitsuba).

Transforms compose in document order, each new element multiplied on the
left (M = T_new @ M): `translate` (x/y/z or value), `scale` (x/y/z, default
1, or value with 1 or 3 numbers), `rotate` (axis x/y/z or value, `angle` in
degrees; the axis is normalised, as Mitsuba 0.6 did; Mitsuba 3 expects a unit
axis), `matrix` (16 numbers row-major, or 9 for the upper 3x3), `lookat`
(origin, target, optional up; without up, Mitsuba's choice of a perpendicular
vector). Computed in float64. A `to_world` transform must be invertible
(normals and directions are transformed with its inverse): a step or a
product whose 3x3 part is singular (|det| <= 1e-6 times the product of its
column lengths, e.g. `<scale value="0"/>` or an all-zero `<matrix>`) is an
error at its line. Other transforms (`to_uv`) may be singular.

The 0.5/0.6 dialect
===================

Files whose `<scene version>` is below 2.0 (each included file by its own
version) are upgraded as Mitsuba 3 does (`transform_upgrade`): parameter
names go from camelCase to snake_case with Mitsuba's rule (`toWorld` ->
`to_world`, `intIOR` -> `int_ior`, `sampleCount` -> `sample_count`; a name
that starts with an upper-case letter, like `HDRFilm`, is kept);
`<float>` parameters `uoffset`, `voffset`, `uscale`, `vscale` become a
`to_uv` transform (translate by the offsets, then scale: Mitsuba 3's upgrade,
although Mitsuba 0.6 computed uv * scale + offset); a `diffuse` BSDF's
`diffuse_reflectance` becomes `reflectance`; a `<film type="bitmap">` becomes
`hdrfilm`; a `<spectrum>` with three plain numbers is an RGB colour (PSDR-CUDA
reads it so). Inside `<transform>`, `<lookAt>` and `<look_at>` are accepted
as PSDR-CUDA accepts them, besides `<lookat>` (Mitsuba 3 files must spell it
`<lookat>`, as Mitsuba 3 requires). A `<sensor>` after the first that has no
`<film>` (or no `<sampler>`) of its own gets a copy of the first sensor's
(ids dropped, `__source__` kept): PSDR-CUDA renders every sensor of a scene
with the first one's film and sampler. `<srgb>` is accepted in files of any
version.

PSDR-CUDA's `<bsdf type="microfacet">` (diffuseReflectance, specularReflectance,
roughness) has no Mitsuba 3 counterpart. It becomes a `roughplastic` with
`distribution` "ggx", `alpha` = roughness**2 (PSDR's GGX term uses
roughness**2 as alpha), `int_ior` chosen so that the dielectric's normal-
incidence reflectance equals the mean of specularReflectance (F0), and
`specular_reflectance` = F0 / mean(F0) for its tint; `diffuse_reflectance`
is kept. PSDR's Schlick Fresnel and its diffuse lobe (not weighted by 1 - F)
are only approximated, so a SceneWarning names the file and line. The
original parameters are kept under the private key `"__psdr__"`
(`{"type": "microfacet", "roughness": ..., ...}`) for a builder that wants
PSDR's exact model.

Film parameters that only affect how Mitsuba writes images (`banner`,
`pixel_format`, `component_format`, `file_format`, `high_quality_edges`,
`attach_log`) are dropped with a SceneWarning naming file and line. Unknown
plugin types and unknown parameters are passed through: the scene builder
decides about them.

Errors are `SceneError`s whose message starts with `file:line:`: malformed XML,
unknown elements or attributes, missing required attributes, bad numbers (NaN
is refused, inf allowed) or booleans, wrong arity, duplicate ids or parameter
names, undefined `$name`s, unresolved references, missing or cyclic includes,
includes nested more than `MAX_INCLUDE_DEPTH` (32; Mitsuba 3 allows 15) files
deep, plugin objects nested more than `MAX_OBJECT_DEPTH` (100) deep.
Warnings (`SceneWarning`, with file and line): dropped film parameters, the
microfacet approximation, sampled spectra clamped to the sRGB gamut, a
`<rotate>` axis that is not of unit length (Mitsuba 3 uses it as written,
so the transform also scales and shears; 0.x files normalize it, as
Mitsuba 0.6 did).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import warnings
from xml.parsers import expat

import numpy as np

from jaxrender.io._color import spectrum_to_rgb, srgb_to_linear
from jaxrender.io.errors import SceneError, SceneWarning
from jaxrender.scene.transform import is_singular

__all__ = ["parse_xml"]

# Elements that become plugin objects. `scene` only as a file's root.
_OBJECT_TAGS = frozenset(
    [
        "shape",
        "bsdf",
        "texture",
        "emitter",
        "sensor",
        "film",
        "sampler",
        "rfilter",
        "integrator",
        "medium",
        "phase",
        "volume",
    ]
)
_VALUE_TAGS = frozenset(
    [
        "float",
        "integer",
        "boolean",
        "string",
        "rgb",
        "srgb",
        "spectrum",
        "point",
        "vector",
        "transform",
    ]
)
_COSMETIC_FILM_PARAMS = frozenset(
    [
        "banner",
        "pixel_format",
        "component_format",
        "file_format",
        "high_quality_edges",
        "attach_log",
    ]
)
_UV_PARAMS = ("uoffset", "voffset", "uscale", "vscale")
# PSDR-CUDA's spellings of <lookat>, all accepted in version 0.x files.
_LOOKAT_OLD = ("lookat", "lookAt", "look_at")

# Mitsuba 3 stops at 15 nested includes. Scene packs that split geometry,
# materials and lights over files rarely nest more than 3 or 4 deep; 32 is
# generous and keeps the parser's recursion (a few frames per level) far
# below Python's limit, so a runaway chain is a SceneError, not a crash.
MAX_INCLUDE_DEPTH = 32
# Plugin objects nest a handful of levels in real scenes (shape > twosided >
# bsdf > texture); 100 is far past any of them and bounds the recursion.
MAX_OBJECT_DEPTH = 100

_FLOAT_RE = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE
)
_INT_RE = re.compile(r"[+-]?\d+")
# `<integer>` values must fit int32, as every integer parameter of Mitsuba's
# plugins (and jaxrender's static ints) does; Mitsuba checks the range where
# a plugin reads the value, we check it where the file gives it.
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


@dataclasses.dataclass
class _Node:
    """One XML element, with the line it starts on."""

    tag: str
    attrib: dict
    children: list
    line: int


@dataclasses.dataclass(frozen=True)
class _Ctx:
    """What the elements of one file need to know while being converted."""

    file: str  # absolute path, or "<string>"
    dirs: tuple  # folders to resolve relative paths in, nearest first
    old: bool  # file version < 2.0: upgrade names as Mitsuba 3 does
    in_emitter: bool = False  # spectra convert as radiance, not reflectance
    depth: int = 0  # plugin objects enclosing this element (the root <scene> not counted)

    def at(self, line: int) -> str:
        return f"{self.file}:{line}"


# --------------------------------------------------------------------------
# Reading XML text into _Node trees (expat records line numbers).


def _parse_tree(data: bytes, source: str) -> _Node:
    parser = expat.ParserCreate()
    stack: list[_Node] = []
    root: list[_Node] = []

    def start(tag, attrs):
        node = _Node(tag, dict(attrs), [], parser.CurrentLineNumber)
        (stack[-1].children if stack else root).append(node)
        stack.append(node)

    def end(tag):
        stack.pop()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise SceneError(
            f"{source}:{e.lineno}: malformed XML: {expat.ErrorString(e.code)} "
            f"(column {e.offset + 1})"
        ) from None
    except (LookupError, UnicodeError) as e:
        # An encoding the XML declaration names that Python does not know,
        # or bytes that are not in it.
        raise SceneError(f"{source}:{parser.CurrentLineNumber}: cannot decode the file: {e}") from None
    return root[0]


# --------------------------------------------------------------------------
# Small parsers for attribute values. Each raises SceneError naming `where`.


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _float(text: str, what: str, where: str) -> float:
    s = text.strip()
    if not _FLOAT_RE.fullmatch(s):
        raise SceneError(f"{where}: could not parse {what} {text!r} as a number")
    value = float(s)
    if math.isnan(value):
        raise SceneError(f"{where}: {what} is NaN")
    # Scenes are float32: a finite number beyond its range would become
    # inf there (a shape or camera silently gone).
    if math.isfinite(value) and abs(value) > _FLOAT32_MAX:
        raise SceneError(f"{where}: {what} {text.strip()!r} is beyond float32's range (|x| <= 3.4e38)")
    return value


def _floats(text: str, what: str, where: str, counts: tuple) -> list:
    parts = [p for p in re.split(r"[\s,]+", text.strip()) if p]
    if len(parts) not in counts:
        want = " or ".join(str(c) for c in counts)
        raise SceneError(f"{where}: {what} must have {want} numbers, got {len(parts)} ({text!r})")
    return [_float(p, what, where) for p in parts]


def _snake_case(name: str) -> str:
    """Mitsuba 3's camelCase -> snake_case rule for version < 2 files.

    An upper-case letter that follows a lower-case one starts a new word
    ('_' + lower case); the upper-case letters right after it stay in that
    word (`intIOR` -> `int_ior`). Upper-case runs not preceded by a lower-case
    letter are kept (`HDRFilm`, `eta_K`, `a1B`), as Mitsuba does.
    """
    out = []
    lowering = False
    prev = ""
    for c in name:
        if c.isupper():
            if prev.islower():
                out.append("_" + c.lower())
                lowering = True
            elif lowering:
                out.append(c.lower())
            else:
                out.append(c)
        else:
            out.append(c)
            lowering = False
        prev = c
    return "".join(out)


# --------------------------------------------------------------------------
# Transforms (float64, column vectors: p' = M @ p).


def _translate(v) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = v
    return m


def _scale(v) -> np.ndarray:
    return np.diag([v[0], v[1], v[2], 1.0])


def _rotate(axis, angle_deg: float, where: str, normalize: bool = True) -> np.ndarray:
    """Rodrigues' rotation matrix. Mitsuba 3 uses the axis as written: an
    axis that is not of unit length scales and shears as well
    (normalize=False, with a warning); Mitsuba 0.x normalized it."""
    axis = np.asarray(axis, dtype=np.float64)
    n = np.linalg.norm(axis)
    if n == 0.0:
        raise SceneError(f"{where}: rotation axis cannot be zero")
    if not math.isfinite(angle_deg):
        raise SceneError(f"{where}: rotation angle must be finite, got {angle_deg}")
    if not normalize and abs(n - 1.0) > 1e-3 and math.sin(math.radians(angle_deg)) != 0.0:
        warnings.warn(f"{where}: the <rotate> axis {axis.tolist()} is not of unit length; as in Mitsuba 3 it is "
                      "used as written, so the transform also scales and shears (normalize it for a rotation)",
                      SceneWarning, stacklevel=2)
    x, y, z = axis / n if normalize else axis
    t = math.radians(angle_deg)
    s, c = math.sin(t), math.cos(t)
    cm = 1.0 - c
    m = np.eye(4)
    m[:3, :3] = [
        [c + x * x * cm, x * y * cm - z * s, x * z * cm + y * s],
        [x * y * cm + z * s, c + y * y * cm, y * z * cm - x * s],
        [x * z * cm - y * s, y * z * cm + x * s, c + z * z * cm],
    ]
    return m


def _coordinate_system(n: np.ndarray) -> np.ndarray:
    """First tangent of Mitsuba's `coordinate_system` (Duff et al. 2017)."""
    sign = 1.0 if n[2] >= 0.0 else -1.0
    a = -1.0 / (sign + n[2])
    b = n[0] * n[1] * a
    return np.array([n[0] * n[0] * a * sign + 1.0, b * sign, -n[0] * sign])


def _look_at(origin, target, up, where: str) -> np.ndarray:
    origin = np.asarray(origin, dtype=np.float64)
    d = np.asarray(target, dtype=np.float64) - origin
    dn = np.linalg.norm(d)
    if dn == 0.0:
        raise SceneError(f"{where}: invalid lookat transformation (origin == target)")
    d = d / dn
    if up is None:
        up = _coordinate_system(d)
    left = np.cross(np.asarray(up, dtype=np.float64), d)
    ln = np.linalg.norm(left)
    if ln == 0.0 or not np.isfinite(ln):
        raise SceneError(
            f"{where}: invalid lookat transformation (up is parallel to the view direction)"
        )
    left = left / ln
    new_up = np.cross(d, left)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = left, new_up, d, origin
    return m


# --------------------------------------------------------------------------


class _Loader:
    """Converts one scene file (and what it includes) into a scene dict."""

    def __init__(self, params: dict):
        # Passed parameters override defaults; `_used` tracks which were used.
        self.params: dict[str, str] = {k: _param_str(v) for k, v in params.items()}
        self.passed = set(self.params)
        self.used: set[str] = set()
        self.ids: dict[str, str] = {}  # id -> source of its definition
        self.refs: list[dict] = []  # every ref dict made, for checking
        self.aliases: dict[str, str] = {}  # alias -> id
        self.extra_dirs: list[str] = []  # from <path value=.../>
        self.include_stack: list[str] = []
        self.include_depth = 0  # <include>s being expanded, nested
        self.first_sensor: dict | None = None  # PSDR's sensors share its film and sampler

    # ---- entry points -----------------------------------------------------

    def load_file(self, path: str) -> dict:
        path = os.path.abspath(path)
        if os.path.isdir(path):
            raise SceneError(f"{path}: is a directory, not a scene file")
        if not os.path.isfile(path):
            raise SceneError(f"{path}: scene file not found")
        with open(path, "rb") as f:
            data = f.read()
        self.include_stack.append(path)
        return self._load_root(_parse_tree(data, path), path, (os.path.dirname(path),))

    def load_string(self, text: str) -> dict:
        data = text.encode("utf-8") if isinstance(text, str) else text
        return self._load_root(_parse_tree(data, "<string>"), "<string>", ())

    def _load_root(self, node: _Node, file: str, dirs: tuple) -> dict:
        if node.tag != "scene":
            raise SceneError(
                f"{file}:{node.line}: the root element must be <scene>, got <{node.tag}>"
            )
        ctx = _Ctx(file, dirs + (os.getcwd(),), old=False)
        attrs = self._attrs(node, ctx, {"version"}, required=("version",))
        ctx = dataclasses.replace(ctx, old=self._is_old(attrs["version"], ctx.at(node.line)))
        scene = {"type": "scene", "__tag__": "scene", "__source__": ctx.at(node.line)}
        self._fill(scene, node.children, ctx, root=True)
        self._finish(scene)
        return scene

    def _finish(self, scene: dict) -> None:
        for ref in self.refs:
            ref["id"] = self.aliases.get(ref["id"], ref["id"])
            if ref["id"] not in self.ids:
                raise SceneError(f"{ref['__source__']}: reference to unknown id {ref['id']!r}")
        unused = sorted(self.passed - self.used)
        if unused:
            raise SceneError(
                f"{scene['__source__'].rsplit(':', 1)[0]}: parameters passed but never "
                f"used in the scene: {', '.join('$' + u for u in unused)}"
            )

    # ---- attributes ------------------------------------------------------

    def _subst(self, value: str, where: str) -> str:
        if "$" not in value:
            return value
        # Longest names first, so "$spp_max" is not taken for "$spp" + "_max".
        for name in sorted(self.params, key=len, reverse=True):
            token = "$" + name
            if token in value:
                value = value.replace(token, self.params[name])
                self.used.add(name)
        if "$" in value:
            m = re.search(r"\$(\w*)", value)
            raise SceneError(
                f"{where}: undefined parameter ${m.group(1)} (not passed in params and "
                f'no <default name="{m.group(1)}"> before this line)'
            )
        return value

    def _attrs(self, node: _Node, ctx: _Ctx, allowed, required=()) -> dict:
        where = ctx.at(node.line)
        for key in node.attrib:
            if key not in allowed:
                raise SceneError(f"{where}: unexpected attribute {key!r} in <{node.tag}>")
        for key in required:
            if key not in node.attrib:
                raise SceneError(f"{where}: missing required attribute {key!r} in <{node.tag}>")
        attrs = {k: self._subst(v, where) for k, v in node.attrib.items()}
        if ctx.old and "name" in attrs and node.tag != "default":
            attrs["name"] = _snake_case(attrs["name"])
        return attrs

    @staticmethod
    def _is_old(version: str, where: str) -> bool:
        m = re.fullmatch(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?\s*", version)
        if not m:
            raise SceneError(f"{where}: invalid version number {version!r}")
        return int(m.group(1)) < 2

    # ---- children --------------------------------------------------------

    def _fill(
        self, parent: dict, nodes: list, ctx: _Ctx, root: bool = False, owner: str = "scene"
    ) -> None:
        """Converts `nodes` (children of a `owner` element) into `parent`'s entries."""
        entries: list[tuple] = []  # (explicit key or None, tag for auto key, value, where)
        self._collect(entries, nodes, ctx, root, owner)

        # Explicit keys first (duplicates are errors), then automatic keys
        # that avoid them.
        taken: dict[str, str] = {k: "" for k in parent}
        for key, _, _, where in entries:
            if key is None:
                continue
            if key in taken:
                first = f" (first at {taken[key]})" if taken[key] else ""
                raise SceneError(f"{where}: duplicate name {key!r}{first}")
            taken[key] = where
        auto_total: dict[str, int] = {}
        for key, tag, _, _ in entries:
            if key is None:
                auto_total[tag] = auto_total.get(tag, 0) + 1
        auto_seen: dict[str, int] = {}
        for key, tag, value, where in entries:
            if key is None:
                n = auto_seen.get(tag, 0)
                if root or tag == "ref" or auto_total[tag] > 1:
                    key = f"{tag}_{n}"
                    while key in taken:
                        n += 1
                        key = f"{tag}_{n}"
                    auto_seen[tag] = n + 1
                else:
                    key = tag
                    while key in taken:
                        n += 1
                        key = f"{tag}_{n}"
                taken[key] = where
            parent[key] = value

    def _collect(self, entries: list, nodes: list, ctx: _Ctx, root: bool, owner: str) -> None:
        for node in nodes:
            tag = node.tag
            where = ctx.at(node.line)
            if tag in _OBJECT_TAGS or (tag == "spectrum" and "type" in node.attrib):
                attrs = self._attrs(node, ctx, {"type", "id", "name"}, required=("type",))
                obj = self._object(node, attrs, ctx)
                key = attrs.get("id") if root else attrs.get("name")
                entries.append((key or None, tag, obj, where))
            elif tag == "ref":
                attrs = self._attrs(node, ctx, {"id", "name"}, required=("id",))
                ref = {"type": "ref", "id": attrs["id"], "__source__": where}
                self.refs.append(ref)
                entries.append((attrs.get("name") or None, "ref", ref, where))
            elif tag in _VALUE_TAGS:
                name, value = self._value(node, ctx)
                if owner == "film" and name in _COSMETIC_FILM_PARAMS:
                    why = ("jaxrender renders RGB; Mitsuba would add an alpha channel or return luminance"
                           if name == "pixel_format" else "it only affects how Mitsuba writes image files")
                    warnings.warn(
                        f"{where}: ignoring film parameter {name!r} ({why})",
                        SceneWarning,
                        stacklevel=2,
                    )
                    continue
                entries.append((name, tag, value, where))
            elif tag == "default":
                attrs = self._attrs(node, ctx, {"name", "value"}, required=("name", "value"))
                self.params.setdefault(attrs["name"], attrs["value"])
            elif tag == "include":
                self._include(entries, node, ctx, root, owner)
            elif tag == "alias":
                attrs = self._attrs(node, ctx, {"id", "as"}, required=("id", "as"))
                if attrs["id"] not in self.ids:
                    raise SceneError(f"{where}: alias source id {attrs['id']!r} not found")
                if attrs["as"] in self.ids or attrs["as"] in self.aliases:
                    raise SceneError(f"{where}: alias {attrs['as']!r} is already an id")
                self.aliases[attrs["as"]] = attrs["id"]
            elif tag == "path":
                attrs = self._attrs(node, ctx, {"value"}, required=("value",))
                base = ctx.dirs[0] if ctx.dirs else os.getcwd()
                self.extra_dirs.insert(0, os.path.normpath(os.path.join(base, attrs["value"])))
            elif tag == "scene":
                raise SceneError(f"{where}: <scene> is only allowed as the root element")
            elif tag in ("translate", "rotate", "scale", "matrix") + _LOOKAT_OLD:
                raise SceneError(f"{where}: <{tag}> is only allowed inside <transform>")
            else:
                raise SceneError(f"{where}: unknown element <{tag}>")

    # ---- objects ---------------------------------------------------------

    def _object(self, node: _Node, attrs: dict, ctx: _Ctx) -> dict:
        where = ctx.at(node.line)
        tag = node.tag
        if ctx.depth >= MAX_OBJECT_DEPTH:
            raise SceneError(
                f"{where}: <{tag}> is nested more than {MAX_OBJECT_DEPTH} objects deep"
            )
        obj = {"type": attrs["type"]}
        if attrs.get("id"):
            ident = attrs["id"]
            if ident in self.ids:
                raise SceneError(f"{where}: duplicate id {ident!r} (first at {self.ids[ident]})")
            self.ids[ident] = where
            obj["id"] = ident
        obj["__tag__"] = tag
        obj["__source__"] = where
        child_ctx = dataclasses.replace(
            ctx, in_emitter=ctx.in_emitter or tag == "emitter", depth=ctx.depth + 1
        )
        self._fill(obj, node.children, child_ctx, owner=tag)

        if ctx.old:
            self._upgrade_object(obj, where)
        if tag == "bsdf" and obj["type"] == "microfacet":
            _psdr_microfacet(obj, where)
        if tag == "sensor":
            if self.first_sensor is None:
                self.first_sensor = obj
            elif ctx.old:
                self._share_film_and_sampler(obj)
        return obj

    def _share_film_and_sampler(self, sensor: dict) -> None:
        """PSDR-CUDA's rule: a sensor without film or sampler uses the first sensor's."""
        first = self.first_sensor
        for tag in ("film", "sampler"):
            if any(isinstance(v, dict) and v.get("__tag__") == tag for v in sensor.values()):
                continue
            key, child = next(
                ((k, v) for k, v in first.items() if isinstance(v, dict) and v.get("__tag__") == tag),
                (None, None),
            )
            if child is None:
                continue
            # A copy, so each sensor owns its objects; without ids, which
            # must stay unique (and nothing refers to a film or sampler).
            copy = _copy_without_ids(child)
            sensor[key if key not in sensor else tag] = copy

    @staticmethod
    def _upgrade_object(obj: dict, where: str) -> None:
        """Mitsuba 3's upgrades of 0.x objects, beyond renaming parameters."""
        uv = {k: obj.pop(k) for k in _UV_PARAMS if isinstance(obj.get(k), float)}
        if uv:
            if "to_uv" in obj:
                raise SceneError(f"{where}: both a to_uv transform and {sorted(uv)} given")
            offset = (uv.get("uoffset", 0.0), uv.get("voffset", 0.0), 0.0)
            scale = (uv.get("uscale", 1.0), uv.get("vscale", 1.0), 1.0)
            # Translate, then scale, as Mitsuba 3's upgrade does (Mitsuba 0.6
            # itself computed uv * scale + offset).
            obj["to_uv"] = _scale(scale) @ _translate(offset)
        if obj["__tag__"] == "bsdf" and obj["type"] == "diffuse" and "diffuse_reflectance" in obj:
            if "reflectance" in obj:
                raise SceneError(f"{where}: both reflectance and diffuseReflectance given")
            obj["reflectance"] = obj.pop("diffuse_reflectance")
        if obj["__tag__"] == "film" and obj["type"] == "bitmap":
            obj["type"] = "hdrfilm"

    # ---- values ----------------------------------------------------------

    def _value(self, node: _Node, ctx: _Ctx):
        tag = node.tag
        where = ctx.at(node.line)
        if tag in ("float", "integer", "boolean", "string"):
            a = self._attrs(node, ctx, {"name", "value"}, required=("name", "value"))
            text = a["value"]
            what = f"<{tag} name={a['name']!r}> value"
            if tag == "float":
                value = _float(text, what, where)
            elif tag == "integer":
                if not _INT_RE.fullmatch(text.strip()):
                    raise SceneError(f"{where}: could not parse {what} {text!r} as an integer")
                value = int(text)
                if not _INT32_MIN <= value <= _INT32_MAX:
                    raise SceneError(
                        f"{where}: {what} {text!r} is out of range for a 32-bit integer "
                        f"[{_INT32_MIN}, {_INT32_MAX}]"
                    )
            elif tag == "boolean":
                low = text.strip().lower()
                if low not in ("true", "false"):
                    raise SceneError(
                        f"{where}: could not parse {what} {text!r}: must be 'true' or 'false'"
                    )
                value = low == "true"
            else:
                value = self._resolve(text, ctx) if a["name"] == "filename" else text
            return a["name"], value
        if tag in ("rgb", "srgb"):
            allowed = {"name", "value", "intent"}
            a = self._attrs(node, ctx, allowed, required=("name", "value"))
            what = f"<{tag} name={a['name']!r}> value"
            text = a["value"].strip()
            if tag == "srgb" and text.startswith("#"):
                if not re.fullmatch(r"#[0-9a-fA-F]{6}", text):
                    raise SceneError(f"{where}: could not parse {what} {text!r} as #rrggbb")
                rgb = [int(text[i : i + 2], 16) / 255.0 for i in (1, 3, 5)]
            else:
                rgb = _floats(text, what, where, (1, 3))
                rgb = rgb * 3 if len(rgb) == 1 else rgb
            if tag == "srgb":
                rgb = [float(c) for c in srgb_to_linear(np.asarray(rgb, dtype=np.float64))]
            return a["name"], {"type": "rgb", "value": rgb}
        if tag == "spectrum":
            return self._spectrum(node, ctx)
        if tag in ("point", "vector"):
            a = self._attrs(node, ctx, {"name", "value", "x", "y", "z"}, required=("name",))
            what = f"<{tag} name={a['name']!r}>"
            return a["name"], self._xyz(a, what, where, default=None)
        # transform
        a = self._attrs(node, ctx, {"name"}, required=("name",))
        return a["name"], self._transform(node, ctx, invertible=a["name"] == "to_world")

    def _xyz(self, a: dict, what: str, where: str, default: float | None) -> list:
        """[x, y, z] from `value` (1 or 3 numbers) or x/y/z attributes.

        With `default` None, all of x, y and z are required (as for points).
        """
        has_xyz = any(k in a for k in ("x", "y", "z"))
        if "value" in a:
            if has_xyz:
                raise SceneError(f"{where}: {what}: cannot mix 'value' and x/y/z attributes")
            v = _floats(a["value"], f"{what} value", where, (1, 3))
            return v * 3 if len(v) == 1 else v
        if default is None:
            for k in ("x", "y", "z"):
                if k not in a:
                    raise SceneError(f"{where}: {what}: missing required attribute {k!r}")
        return [_float(a[k], f"{what} {k}", where) if k in a else default for k in ("x", "y", "z")]

    def _spectrum(self, node: _Node, ctx: _Ctx):
        where = ctx.at(node.line)
        a = self._attrs(node, ctx, {"name", "value", "filename", "intent"}, required=("name",))
        what = f"<spectrum name={a['name']!r}>"
        if ("value" in a) == ("filename" in a):
            raise SceneError(f"{where}: {what} needs exactly one of 'value' and 'filename'")
        if "filename" in a:
            path = self._resolve(a["filename"], ctx)
            pairs = _read_spd(path, where)
        else:
            text = a["value"].strip()
            if ":" not in text:
                parts = [p for p in re.split(r"[\s,]+", text) if p]
                if len(parts) == 1:
                    value = _float(parts[0], what, where)
                    if ctx.old:
                        # PSDR-CUDA (the 0.5/0.6 dialect's users) is an RGB
                        # renderer: one number is a gray colour. Mitsuba 3's
                        # RGB variants would turn an emitter's into a D65-
                        # tinted colour instead, which PSDR scenes never meant.
                        return a["name"], {"type": "rgb", "value": [value] * 3}
                    return a["name"], {"type": "spectrum", "value": value}
                if len(parts) == 3 and ctx.old:
                    # PSDR-CUDA reads three plain numbers as an RGB colour.
                    return a["name"], {"type": "rgb", "value": _floats(text, what, where, (3,))}
                raise SceneError(
                    f"{where}: {what} value {text!r}: expected one number or wavelength:value pairs"
                )
            pairs = []
            for item in (p for p in re.split(r"[\s,]+", text) if p):
                lam, sep, val = item.partition(":")
                if not sep:
                    raise SceneError(f"{where}: {what}: {item!r} is not a wavelength:value pair")
                pairs.append((_float(lam, what, where), _float(val, what, where)))
        wl = np.array([p[0] for p in pairs])
        if len(pairs) < 2:
            raise SceneError(f"{where}: {what}: a sampled spectrum needs at least two entries")
        if np.any(np.diff(wl) <= 0):
            raise SceneError(f"{where}: {what}: wavelengths must increase")
        reflectance = not ctx.in_emitter
        rgb = spectrum_to_rgb(wl, [p[1] for p in pairs], reflectance=reflectance)
        lo, hi = 0.0, (1.0 if reflectance else np.inf)
        clipped = np.clip(rgb, lo, hi)
        if np.any(clipped != rgb):
            warnings.warn(
                f"{where}: {what}: spectrum is out of the sRGB gamut "
                f"({np.round(rgb, 4).tolist()}), clamped",
                SceneWarning,
                stacklevel=2,
            )
        return a["name"], {"type": "rgb", "value": [float(c) for c in clipped]}

    def _transform(self, node: _Node, ctx: _Ctx, invertible: bool = False) -> np.ndarray:
        """The transform's matrix. With `invertible` (to_world: normals and
        directions need its inverse), a singular step is an error at its
        line, and so is a singular product at the <transform>'s line."""
        m = np.eye(4)
        for op in node.children:
            where = ctx.at(op.line)
            tag = op.tag
            what = f"<{tag}>"
            if tag == "translate":
                a = self._attrs(op, ctx, {"x", "y", "z", "value"})
                t = _translate(self._xyz(a, what, where, default=0.0))
            elif tag == "scale":
                a = self._attrs(op, ctx, {"x", "y", "z", "value"})
                t = _scale(self._xyz(a, what, where, default=1.0))
            elif tag == "rotate":
                a = self._attrs(op, ctx, {"x", "y", "z", "value", "angle"}, required=("angle",))
                axis = self._xyz({k: v for k, v in a.items() if k != "angle"}, what, where, 0.0)
                t = _rotate(axis, _float(a["angle"], f"{what} angle", where), where, normalize=ctx.old)
            elif tag == "matrix":
                a = self._attrs(op, ctx, {"value"}, required=("value",))
                v = _floats(a["value"], f"{what} value", where, (9, 16))
                t = np.eye(4)
                if len(v) == 16:
                    t[:] = np.reshape(v, (4, 4))
                else:
                    t[:3, :3] = np.reshape(v, (3, 3))
            elif tag == "lookat" or (tag in _LOOKAT_OLD and ctx.old):
                a = self._attrs(op, ctx, {"origin", "target", "up"}, required=("origin", "target"))
                o = _floats(a["origin"], f"{what} origin", where, (3,))
                tg = _floats(a["target"], f"{what} target", where, (3,))
                up = _floats(a["up"], f"{what} up", where, (3,)) if "up" in a else None
                t = _look_at(o, tg, up, where)
            elif tag in _LOOKAT_OLD:
                raise SceneError(
                    f"{where}: unexpected <{tag}> element inside <transform>: Mitsuba 3 files "
                    f"spell it <lookat> (<{tag}> is accepted in version 0.x files, as PSDR-CUDA "
                    "reads them)"
                )
            else:
                raise SceneError(f"{where}: unexpected <{tag}> element inside <transform>")
            if invertible and is_singular(t[:3, :3]):
                raise SceneError(
                    f"{where}: {what} makes the to_world transform singular (its 3x3 part "
                    f"{np.round(t[:3, :3], 6).tolist()} has no inverse, which normals need)"
                )
            m = t @ m
        if invertible and is_singular(m[:3, :3]):
            raise SceneError(
                f"{ctx.at(node.line)}: the to_world transform is singular (its 3x3 part "
                f"{np.round(m[:3, :3], 6).tolist()} has no inverse, which normals need)"
            )
        return m

    # ---- files -----------------------------------------------------------

    def _search_dirs(self, ctx: _Ctx) -> list:
        dirs = list(ctx.dirs[:-1]) + self.extra_dirs + [ctx.dirs[-1]]
        seen, out = set(), []
        for d in dirs:
            if d not in seen:
                seen.add(d)
                out.append(d)
        return out

    def _candidates(self, name: str, ctx: _Ctx) -> list:
        name = os.path.expanduser(name)
        if os.path.isabs(name):
            return [os.path.normpath(name)]
        return [os.path.normpath(os.path.join(d, name)) for d in self._search_dirs(ctx)]

    def _resolve(self, name: str, ctx: _Ctx) -> str:
        candidates = self._candidates(name, ctx)
        for c in candidates:
            if os.path.exists(c):
                return c
        return candidates[0]

    def _include(self, entries: list, node: _Node, ctx: _Ctx, root: bool, owner: str) -> None:
        where = ctx.at(node.line)
        a = self._attrs(node, ctx, {"filename"}, required=("filename",))
        candidates = self._candidates(a["filename"], ctx)
        path = next((c for c in candidates if os.path.isfile(c)), None)
        if path is None:
            raise SceneError(
                f"{where}: included file {a['filename']!r} not found (tried "
                f"{', '.join(candidates)})"
            )
        real = os.path.realpath(path)
        if real in (os.path.realpath(p) for p in self.include_stack):
            chain = " -> ".join(self.include_stack + [path])
            raise SceneError(f"{where}: include cycle: {chain}")
        if self.include_depth >= MAX_INCLUDE_DEPTH:
            chain = self.include_stack + [path]
            if len(chain) > 6:
                chain = chain[:2] + [f"... ({len(chain) - 4} more)"] + chain[-2:]
            raise SceneError(
                f"{where}: includes nested more than {MAX_INCLUDE_DEPTH} levels deep "
                f"({' -> '.join(chain)})"
            )
        with open(path, "rb") as f:
            tree = _parse_tree(f.read(), path)
        inc_ctx = dataclasses.replace(
            ctx, file=path, dirs=(os.path.dirname(path),) + ctx.dirs
        )
        self.include_stack.append(path)
        self.include_depth += 1
        try:
            if tree.tag == "scene":
                attrs = self._attrs(tree, inc_ctx, {"version"}, required=("version",))
                old = self._is_old(attrs["version"], inc_ctx.at(tree.line))
                self._collect(
                    entries, tree.children, dataclasses.replace(inc_ctx, old=old), root, owner
                )
            else:
                # A file holding one object: it keeps the including file's
                # version unless it carries its own.
                if "version" in tree.attrib:
                    old = self._is_old(tree.attrib.pop("version"), inc_ctx.at(tree.line))
                    inc_ctx = dataclasses.replace(inc_ctx, old=old)
                self._collect(entries, [tree], inc_ctx, root, owner)
        finally:
            self.include_stack.pop()
            self.include_depth -= 1


def _copy_without_ids(obj):
    """A deep copy of an object dict with the "id" of every object removed."""
    if isinstance(obj, dict):
        return {k: _copy_without_ids(v) for k, v in obj.items() if not (k == "id" and "__tag__" in obj)}
    if isinstance(obj, list):
        return [_copy_without_ids(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.copy()
    return obj


def _param_str(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _read_spd(path: str, where: str) -> list:
    """Reads a Mitsuba .spd file: lines of `wavelength value`, '#' comments."""
    if not os.path.isfile(path):
        raise SceneError(f"{where}: spectrum file {path} not found")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeError) as e:
        raise SceneError(f"{where}: could not read spectrum file {path} (a text file of 'wavelength value' "
                         f"lines): {e}") from None
    pairs = []
    for i, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise SceneError(f"{path}:{i}: expected 'wavelength value', got {line!r}")
        pairs.append(tuple(_float(p, "spectrum entry", f"{path}:{i}") for p in parts))
    return pairs


# --------------------------------------------------------------------------
# PSDR-CUDA's microfacet BSDF.


def _rgb_of(v):
    """(3,) float64 for a float or an rgb dict; None for anything else."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return np.full(3, float(v))
    if isinstance(v, dict) and v.get("type") == "rgb":
        return np.asarray(v["value"], dtype=np.float64)
    if isinstance(v, dict) and v.get("type") == "spectrum" and isinstance(v.get("value"), float):
        return np.full(3, v["value"])
    return None


def _psdr_microfacet(obj: dict, where: str) -> None:
    """Rewrites PSDR-CUDA's `microfacet` BSDF in place as a `roughplastic`.

    PSDR evaluates a Lambertian lobe plus a GGX lobe with alpha = roughness**2,
    Schlick's Fresnel with F0 = specularReflectance and Schlick-GGX masking.
    Defaults as in PSDR: specularReflectance 0.04, diffuseReflectance 0.5,
    roughness 0.8.
    """

    def take(snake, camel, default):
        # 3.x files are not renamed, so accept PSDR's camelCase there too.
        if snake != camel and snake in obj and camel in obj:
            raise SceneError(f"{where}: both {snake!r} and {camel!r} given")
        return obj.pop(snake, obj.pop(camel, default))

    original = {
        "type": "microfacet",
        "diffuse_reflectance": take("diffuse_reflectance", "diffuseReflectance", 0.5),
        "specular_reflectance": take("specular_reflectance", "specularReflectance", 0.04),
        "roughness": take("roughness", "roughness", 0.8),
    }
    notes = []
    rough = original["roughness"]
    if isinstance(rough, (int, float)) and not isinstance(rough, bool):
        alpha = float(rough) ** 2
        notes.append(f"alpha = roughness**2 = {alpha:.6g}")
    else:
        alpha = rough
        notes.append("alpha = the roughness texture itself (PSDR squares it)")
    f0 = _rgb_of(original["specular_reflectance"])
    if f0 is not None:
        mean = float(np.clip(f0.mean(), 0.0, 0.999))
        if mean > 0.0:
            r = math.sqrt(mean)
            int_ior = (1.0 + r) / (1.0 - r)
            spec = {"type": "rgb", "value": [float(c) for c in f0 / mean]}
        else:
            int_ior, spec = 1.5, {"type": "rgb", "value": [0.0, 0.0, 0.0]}
        notes.append(f"int_ior = {int_ior:.6g} from F0 = {mean:.6g}")
    else:
        int_ior, spec = 1.5, original["specular_reflectance"]
        notes.append("specularReflectance texture used as specular_reflectance, int_ior = 1.5")
    params = {k: v for k, v in obj.items() if not k.startswith("__") and k not in ("type", "id")}
    private = {k: v for k, v in obj.items() if k.startswith("__")}
    head = {k: obj[k] for k in ("type", "id") if k in obj}
    obj.clear()
    obj.update(head)
    obj["type"] = "roughplastic"
    obj.update(private)
    obj.update(
        distribution="ggx",
        alpha=alpha,
        int_ior=int_ior,
        ext_ior=1.0,
        diffuse_reflectance=original["diffuse_reflectance"],
        specular_reflectance=spec,
        nonlinear=False,
    )
    obj.update(params)
    obj["__psdr__"] = original
    warnings.warn(
        f"{where}: PSDR-CUDA bsdf 'microfacet' approximated by 'roughplastic' (GGX, "
        f"{'; '.join(notes)}); PSDR's Schlick Fresnel and uncoupled diffuse lobe differ",
        SceneWarning,
        stacklevel=3,
    )


# --------------------------------------------------------------------------


def parse_xml(path_or_string, params: dict | None = None, *, is_string: bool = False) -> dict:
    """Reads a Mitsuba scene file (3.x, or the 0.5/0.6 dialect) into a scene dict.

    Args:
      path_or_string: the path of an XML file, or XML text when `is_string`
        is True (a str starting with '<' is taken as XML text too).
      params: values for `$name` substitution (any type; converted with
        str(), booleans as "true"/"false"); they override `<default>`s.
      is_string: treat `path_or_string` as XML text. Relative paths in it are
        resolved against the current directory.

    Returns:
      The scene dict described in this module's docstring.

    Raises:
      SceneError: on any problem with the file, with file and line.
    """
    loader = _Loader(dict(params or {}))
    if is_string or (isinstance(path_or_string, str) and path_or_string.lstrip().startswith("<")):
        return loader.load_string(path_or_string)
    return loader.load_file(os.fspath(path_or_string))
