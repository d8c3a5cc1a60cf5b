"""Triangle meshes from and to Wavefront OBJ, Stanford PLY and Mitsuba
`.serialized` files.

Readers return a `MeshData` in Mitsuba 3's conventions, so that a mesh read
here matches Mitsuba's `vertex_positions`, `faces`, `vertex_normals` and
`vertex_texcoords` for the same file:

* OBJ indexes positions, texture coordinates and normals separately; each
  distinct (v, vt, vn) triplet used by a face becomes one vertex, as in
  Mitsuba. Vertices are numbered by position index, then texture coordinate
  index, then normal index, so files whose corners use matching indices (all
  that `write_obj` writes, and files with positions only) keep their vertex
  order and round trip exactly. (Mitsuba numbers them in order of first use
  instead: the same mesh with its vertices permuted. Positions no face uses
  are dropped by both.)
* OBJ texture coordinates are flipped vertically (v -> 1 - v), as Mitsuba's
  OBJ loader does; `write_obj` writes 1 - v back, so OBJ round trips are exact.
  PLY texture coordinates are kept as stored.
* Polygons are split into triangle fans (0, i, i + 1).
* Mesh attributes (`MeshData.attributes`, what Mitsuba's `mesh_attribute`
  texture reads) come from PLY properties by Mitsuba's rules
  (`read_ply`); a serialized mesh's vertex colours are skipped, as Mitsuba
  3 skips them.

Files are validated when read: indices out of range, non-finite numbers and
meshes without faces raise `SceneError` naming the file (and the line, for
OBJ). Binary PLY is read with vectorized numpy; text is parsed in bulk with a
line-by-line fallback that pinpoints errors.
"""

from __future__ import annotations

import dataclasses
import os
import re
import struct
import warnings

import numpy as np

from jaxrender.io.errors import SceneError, SceneWarning

__all__ = ["MeshData", "read_obj", "read_ply", "read_serialized", "write_obj", "write_ply",
           "write_serialized"]


@dataclasses.dataclass
class MeshData:
    """A triangle mesh as host arrays.

    Attributes:
      vertices: float32 (V, 3) positions.
      faces: int32 (F, 3) vertex indices, counter-clockwise seen from the front.
      normals: float32 (V, 3) per-vertex normals, or None.
      texcoords: float32 (V, 2) per-vertex UVs, or None.
      attributes: {name: float32 array}, Mitsuba's mesh attributes: names
        starting "vertex_" hold (V, C) per-vertex values, names starting
        "face_" (F, C) per-triangle ones, C >= 1 (e.g. "vertex_color").

    Arrays given to the constructor are converted to these dtypes; shapes
    are checked (ValueError names the field).
    """

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None = None
    texcoords: np.ndarray | None = None
    attributes: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.vertices = _as_array(self.vertices, "vertices", np.float32, 3)
        self.faces = _as_array(self.faces, "faces", np.int32, 3)
        n = self.vertices.shape[0]
        if self.normals is not None:
            self.normals = _as_array(self.normals, "normals", np.float32, 3, rows=n)
        if self.texcoords is not None:
            self.texcoords = _as_array(self.texcoords, "texcoords", np.float32, 2, rows=n)
        self.attributes = {name: _attribute_array(name, a, n, self.faces.shape[0])
                           for name, a in dict(self.attributes or {}).items()}

    @property
    def num_vertices(self) -> int:
        return self.vertices.shape[0]

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]


def _attribute_array(name, a, num_vertices: int, num_faces: int) -> np.ndarray:
    """A mesh attribute as float32 (rows, C): one row per vertex for
    "vertex_*" names, per face for "face_*" ones; (rows,) becomes (rows, 1)."""
    if not isinstance(name, str) or not name.startswith(("vertex_", "face_")) or name in _RESERVED_ATTRIBUTES:
        raise ValueError(f"mesh attribute names start with 'vertex_' or 'face_' (and are not "
                         f"{', '.join(_RESERVED_ATTRIBUTES)}), got {name!r}")
    rows = num_vertices if name.startswith("vertex_") else num_faces
    a = np.asarray(a, np.float32)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != rows or a.shape[1] < 1:
        what = "vertex" if name.startswith("vertex_") else "face"
        raise ValueError(f"mesh attribute {name!r} must have shape ({rows}, C), one row per {what}, got {a.shape}")
    return np.ascontiguousarray(a)


_RESERVED_ATTRIBUTES = ("vertex_positions", "vertex_normals", "vertex_texcoords", "vertex_count", "face_count",
                        "face_normals")


def _as_array(x, name: str, dtype, cols: int, rows: int | None = None) -> np.ndarray:
    x = np.asarray(x)
    if np.issubdtype(dtype, np.integer) and x.size and not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {x.dtype}")
    if x.size == 0:
        x = x.reshape(0, cols)
    if x.ndim != 2 or x.shape[1] != cols:
        raise ValueError(f"{name} must have shape ({'V' if rows else 'N'}, {cols}), got {x.shape}")
    if rows is not None and x.shape[0] != rows:
        raise ValueError(f"{name} must have one row per vertex ({rows}), got {x.shape[0]}")
    return np.ascontiguousarray(x, dtype=dtype)


def _open_bytes(path) -> tuple[str, bytes]:
    path = os.path.abspath(os.fspath(path))
    try:
        with open(path, "rb") as f:
            return path, f.read()
    except FileNotFoundError:
        raise SceneError(f"{path}: mesh file not found") from None
    except IsADirectoryError:
        raise SceneError(f"{path}: is a directory, not a mesh file") from None


def _numbers(text: bytes, dtype, expected: int) -> np.ndarray | None:
    """Parses whitespace-separated numbers in bulk; None unless exactly `expected`."""
    if expected == 0:
        return np.zeros(0, dtype)
    with warnings.catch_warnings():
        # numpy flags text it could not read to its end; the caller then
        # falls back to parsing line by line, which names the culprit.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            out = np.fromstring(text, dtype=dtype, sep=" ")
        except ValueError:
            return None
    return out if out.size == expected else None


def _fan(counts: np.ndarray) -> np.ndarray:
    """For polygons with `counts` corners stored back to back: (T, 3) corner
    indices of their triangle fans."""
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ntri = counts - 2
    poly = np.repeat(np.arange(counts.size), ntri)
    local = np.arange(poly.size) - np.repeat(np.cumsum(ntri) - ntri, ntri) + 1
    a = starts[poly]
    return np.stack([a, a + local, a + local + 1], axis=1)


_PLURAL = {"vertex": "vertices", "normal": "normals", "texture coordinate": "texture coordinates"}


def _check_finite(arr: np.ndarray, what: str, path: str, lines: np.ndarray | None = None):
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        loc = f"{path}:{int(lines[i])}" if lines is not None else path
        raise SceneError(
            f"{loc}: {what} {i} is not finite ({arr[i].tolist()}); "
            f"{int(bad.sum())} of {len(arr)} are NaN or infinite"
        )


def _check_arrays(path: str, vertices, normals, texcoords, faces, label: str = "") -> None:
    """Finite numbers, and faces (T, 3) that index the vertices; `label`
    prefixes the face message (e.g. which mesh of the file)."""
    _check_finite(vertices, "vertex", path)
    if normals is not None:
        _check_finite(normals, "normal", path)
    if texcoords is not None:
        _check_finite(texcoords, "texture coordinate", path)
    bad = ((faces < 0) | (faces >= vertices.shape[0])).any(axis=1)
    if bad.any():
        t = int(np.argmax(bad))
        raise SceneError(
            f"{path}: {label}triangle {t} = {faces[t].tolist()} indexes a vertex outside "
            f"[0, {vertices.shape[0]}) ({int(bad.sum())} triangles out of range)"
        )


# --------------------------------------------------------------------------
# OBJ


def read_obj(path) -> MeshData:
    """Reads a Wavefront OBJ file (v, vt, vn, f; other statements ignored).

    Faces may use `v`, `v/vt`, `v//vn`, `v/vt/vn`, negative (relative)
    indices, and any number (>= 3) of corners.

    Returns:
      MeshData; `normals`/`texcoords` are None unless every face corner has them.

    Raises:
      SceneError: missing file, malformed statements, indices out of range,
        non-finite numbers, or no faces (with file and line).
    """
    path, data = _open_bytes(path)
    obj = _ObjText(data, path)
    v = obj.floats(b"v", 3, "vertex")
    vt = obj.floats(b"vt", 2, "texture coordinate")
    vn = obj.floats(b"vn", 3, "normal")
    faces_text = obj.bodies(b"f")
    if not faces_text:
        raise SceneError(f"{path}: mesh has no faces")
    joined = b"\n".join(faces_text)
    counts = _tokens_per_line(joined, len(faces_text))
    if (counts < 3).any():
        i = int(np.argmax(counts < 3))
        raise SceneError(f"{path}:{obj.line(b'f', i)}: face with {int(counts[i])} vertices")
    face_of_corner = np.repeat(np.arange(len(faces_text)), counts)
    idx = _obj_face_indices(joined, int(counts.sum()), obj, face_of_corner)  # 0 = absent

    # Resolve 1-based and negative (relative) indices, check ranges.
    arrays = ((b"v", v, "vertex"), (b"vt", vt, "texture coordinate"), (b"vn", vn, "normal"))
    for col, (key, arr, what) in enumerate(arrays):
        c = idx[:, col]
        neg = c < 0
        if neg.any():
            # -1 is the last element declared before the face's statement.
            before = np.searchsorted(
                obj.line_numbers(key), obj.line_numbers(b"f")[face_of_corner[neg]]
            )
            c[neg] += before + 1
            c[neg] = np.where(c[neg] <= 0, -(10**18), c[neg])
        out = (c != 0) & ((c < 1) | (c > arr.shape[0]))
        if out.any():
            k = int(np.argmax(out))
            f = int(face_of_corner[k])
            corner = faces_text[f].split()[k - int(np.searchsorted(face_of_corner, f))]
            raise SceneError(
                f"{path}:{obj.line(b'f', f)}: {what} index {corner.decode(errors='replace')!r} "
                f"out of range (the file has {arr.shape[0]} {_PLURAL[what]})"
            )
    # Corners without a texture coordinate or normal make the whole attribute
    # unusable; drop it rather than invent values.
    present = idx != 0
    has = [True, bool(present[:, 1].all()), bool(present[:, 2].all())]
    for col, what in ((1, "texture coordinates"), (2, "normals")):
        if present[:, col].any() and not has[col]:
            warnings.warn(
                f"{path}: some face corners have {what} and some do not; {what} ignored",
                SceneWarning,
                stacklevel=2,
            )
    keys = np.stack([idx[:, c] - 1 if has[c] else np.zeros_like(idx[:, 0]) for c in range(3)], 1)

    # Unique (v, vt, vn) triplets, numbered in the order of their indices.
    sizes = [max(v.shape[0], 1), max(vt.shape[0], 1), max(vn.shape[0], 1)]
    if float(sizes[0]) * sizes[1] * sizes[2] < 2**62:
        key = (keys[:, 0] * sizes[1] + keys[:, 1]) * sizes[2] + keys[:, 2]
        _, first, corner_vertex = np.unique(key, return_index=True, return_inverse=True)
    else:
        _, first, corner_vertex = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    corner_vertex = corner_vertex.reshape(-1)
    unique_keys = keys[first]

    faces = corner_vertex[_fan(counts)]
    vertices = v[unique_keys[:, 0]]
    texcoords = normals = None
    if has[1]:
        texcoords = vt[unique_keys[:, 1]].copy()
        texcoords[:, 1] = 1.0 - texcoords[:, 1]
    if has[2]:
        normals = vn[unique_keys[:, 2]]
    return MeshData(vertices, faces.astype(np.int32), normals, texcoords)


class _ObjText:
    """The statements of an OBJ file by kind. Bodies are gathered with list
    comprehensions over the lines (fast); line numbers only when needed."""

    def __init__(self, data: bytes, path: str):
        self.path = path
        if b"\r" in data or b"\t" in data:
            data = data.replace(b"\r", b"").replace(b"\t", b" ")
        self.lines = data.split(b"\n")
        if data[:1] == b" " or b"\n " in data:
            self.lines = [ln.lstrip() for ln in self.lines]
        self._bodies: dict = {}
        self._line_numbers: dict = {}

    def bodies(self, key: bytes) -> list:
        """The text after `key` of each `key` statement, in file order."""
        if key not in self._bodies:
            head, k = key + b" ", len(key) + 1
            bodies = [ln[k:] for ln in self.lines if ln[:k] == head]
            if any(b"#" in b for b in bodies):  # trailing comments
                bodies = [b.split(b"#", 1)[0] for b in bodies]
            self._bodies[key] = bodies
        return self._bodies[key]

    def line_numbers(self, key: bytes) -> np.ndarray:
        """1-based lines of the `key` statements."""
        if key not in self._line_numbers:
            head, k = key + b" ", len(key) + 1
            found = [i + 1 for i, ln in enumerate(self.lines) if ln[:k] == head]
            self._line_numbers[key] = np.asarray(found, dtype=np.int64)
        return self._line_numbers[key]

    def line(self, key: bytes, i: int) -> int:
        return int(self.line_numbers(key)[i])

    def floats(self, key: bytes, cols: int, what: str) -> np.ndarray:
        """(N, cols) float64 from the statements of kind `key` (first `cols`
        numbers of each: v may carry w or a colour, vt a w)."""
        bodies = self.bodies(key)
        n = len(bodies)
        joined = b"\n".join(bodies)
        counts = _tokens_per_line(joined, n)
        k = int(counts[0]) if n else cols
        arr = _numbers(joined, np.float64, n * k) if (counts == k).all() and k >= cols else None
        if arr is not None:
            arr = arr.reshape(n, k)[:, :cols]
        else:
            # Ragged lines or a bad number: go line by line to name the culprit.
            arr = np.zeros((n, cols))
            for i, body in enumerate(bodies):
                parts = body.split()
                if len(parts) < cols:
                    raise SceneError(
                        f"{self.path}:{self.line(key, i)}: {what} needs {cols} numbers, "
                        f"got {len(parts)}"
                    )
                try:
                    arr[i] = [float(p) for p in parts[:cols]]
                except ValueError:
                    raise SceneError(
                        f"{self.path}:{self.line(key, i)}: could not parse {what} "
                        f"{body.decode(errors='replace')!r}"
                    ) from None
        bad = ~np.isfinite(arr).all(axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            raise SceneError(
                f"{self.path}:{self.line(key, i)}: {what} {i} is not finite ({arr[i].tolist()}); "
                f"{int(bad.sum())} of {len(arr)} are NaN or infinite"
            )
        return arr


def _tokens_per_line(joined: bytes, n: int) -> np.ndarray:
    """Number of whitespace-separated tokens on each of the n lines of `joined`."""
    if n == 0:
        return np.zeros(0, np.int64)
    b = np.frombuffer(joined, np.uint8)
    space = (b == 32) | (b == 10)
    starts = np.flatnonzero(~space & np.concatenate([[True], space[:-1]]))
    line = np.searchsorted(np.flatnonzero(b == 10), starts)
    return np.bincount(line, minlength=n).astype(np.int64)


def _obj_face_indices(joined: bytes, n: int, obj: _ObjText, face_of_corner) -> np.ndarray:
    """(N, 3) int64 (v, vt, vn) for the n face corners in `joined`; 0 where absent."""
    slashes = joined.count(b"/")
    doubles = joined.count(b"//")
    out = np.zeros((n, 3), dtype=np.int64)
    # Fast paths for files whose corners all have the same form.
    if slashes == 0:
        cols, text = [0], joined
    elif slashes == 2 * n and doubles == n:
        cols, text = [0, 2], joined.replace(b"//", b" ")  # v//vn
    elif slashes == n and doubles == 0:
        cols, text = [0, 1], joined.replace(b"/", b" ")  # v/vt
    elif slashes == 2 * n and doubles == 0:
        cols, text = [0, 1, 2], joined.replace(b"/", b" ")  # v/vt/vn
    else:
        cols = None
    if cols is not None:
        a = _numbers(text, np.int64, len(cols) * n)
        if a is not None:
            out[:, cols] = a.reshape(n, len(cols))
            if (out[:, cols] != 0).all():
                return out
    # Mixed forms or bad corners: one at a time, naming the line of a bad one.
    for k, tok in enumerate(joined.split()):
        parts = tok.split(b"/")
        try:
            if len(parts) > 3 or not parts[0]:
                raise ValueError
            vals = [int(p) if p else 0 for p in parts]
        except ValueError:
            raise SceneError(
                f"{obj.path}:{obj.line(b'f', int(face_of_corner[k]))}: could not parse face "
                f"corner {tok.decode(errors='replace')!r}"
            ) from None
        if any(p and val == 0 for p, val in zip(parts, vals, strict=True)):
            raise SceneError(
                f"{obj.path}:{obj.line(b'f', int(face_of_corner[k]))}: index 0 in face corner "
                f"{tok.decode(errors='replace')!r} (OBJ indices start at 1)"
            )
        out[k, : len(vals)] = vals
    return out


def write_obj(path, vertices, faces=None, *, normals=None, texcoords=None) -> None:
    """Writes a mesh as a Wavefront OBJ file.

    Args:
      path: output file.
      vertices: (V, 3) positions, or a MeshData (then leave the rest unset).
      faces: (F, 3) vertex indices.
      normals, texcoords: optional (V, 3) and (V, 2) per-vertex attributes.
        Texture coordinates are written as (u, 1 - v), see the module docstring.

    Values are written with 9 significant digits (float32 round trips exactly).
    """
    mesh = _mesh_arg(vertices, faces, normals, texcoords)
    f = mesh.faces.astype(np.int64) + 1
    parts = [b"# written by jaxrender\n", _rows(b"v", mesh.vertices)]
    if mesh.texcoords is not None:
        uv = mesh.texcoords.astype(np.float64)
        uv[:, 1] = 1.0 - uv[:, 1]
        parts.append(_rows(b"vt", uv))
    if mesh.normals is not None:
        parts.append(_rows(b"vn", mesh.normals))
    if mesh.texcoords is not None and mesh.normals is not None:
        corner = "{0}/{0}/{0}"
    elif mesh.texcoords is not None:
        corner = "{0}/{0}"
    elif mesh.normals is not None:
        corner = "{0}//{0}"
    else:
        corner = "{0}"
    fmt = "f " + " ".join(corner.replace("0", str(i)) for i in range(3)) + "\n"
    parts.append("".join(fmt.format(*row) for row in f.tolist()).encode())
    with open(os.fspath(path), "wb") as fh:
        fh.write(b"".join(parts))


def _rows(key: bytes, arr: np.ndarray) -> bytes:
    fmt = key.decode() + (" %.9g" * arr.shape[1]) + "\n"
    return "".join(fmt % tuple(r) for r in arr.astype(np.float64).tolist()).encode()


def _mesh_arg(vertices, faces, normals, texcoords, attributes=None) -> MeshData:
    if isinstance(vertices, MeshData):
        if faces is not None or normals is not None or texcoords is not None or attributes is not None:
            raise TypeError("pass either a MeshData or arrays, not both")
        return vertices
    if faces is None:
        raise TypeError("faces are required")
    return MeshData(vertices, faces, normals, texcoords, attributes or {})


# --------------------------------------------------------------------------
# PLY

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
_UV_NAMES = (("u", "v"), ("s", "t"), ("texture_u", "texture_v"), ("texture_s", "texture_t"))


@dataclasses.dataclass
class _PlyProp:
    name: str
    dtype: str  # item type for lists
    count_dtype: str | None = None  # set for list properties


@dataclasses.dataclass
class _PlyElement:
    name: str
    count: int
    props: list


def read_ply(path) -> MeshData:
    """Reads a Stanford PLY file (ASCII, binary little or big endian).

    Vertex properties used: x, y, z; nx, ny, nz; u, v (or s, t, texture_u,
    texture_v, texture_s, texture_t). Faces: the list property vertex_indices
    (or vertex_index); polygons are fan-triangulated. Other vertex and face
    properties become mesh attributes (`MeshData.attributes`) by Mitsuba 3's
    rules (`_ply_attributes`): r, g, b (or red, green, blue), with a or alpha
    if present, make "vertex_color" / "face_color" (values as stored:
    0-255 stays 0-255 for integer types, as in Mitsuba, with a warning);
    properties named <prefix>_<x|y|z>, _<r|g|b>, _<0|1|2> or _<1|2|3>, in
    sequence, make "vertex_<prefix>" ("vertex_<prefix>_color" for r, g, b)
    of 1 or 3 channels. Others are skipped (with a SceneWarning where they
    look like a broken attribute). A polygon's face attributes apply to
    each triangle of its fan.
    Other elements are skipped.

    Raises:
      SceneError: missing file, bad header (including float list lengths),
        truncated data, indices out of range or not whole numbers (face
        indices may be stored as floats if their values are integral),
        non-finite numbers, no faces.
    """
    path, data = _open_bytes(path)
    fmt, elements, body = _ply_header(data, path)
    values = {}
    if fmt == "ascii":
        _ply_ascii(body, elements, values, path)
    else:
        _ply_binary(body, elements, values, path, "<" if fmt == "binary_little_endian" else ">")

    if "vertex" not in values:
        raise SceneError(f"{path}: no 'vertex' element")
    vert = values["vertex"]
    for c in "xyz":
        if c not in vert:
            raise SceneError(f"{path}: vertex element has no property {c!r}")
    vertices = np.stack([vert[c] for c in "xyz"], axis=1).astype(np.float32)
    normals = texcoords = None
    normal_names = [c for c in ("nx", "ny", "nz") if c in vert]
    if len(normal_names) == 3:
        normals = np.stack([vert[c] for c in normal_names], axis=1).astype(np.float32)
    elif normal_names:
        # A partial set cannot be used; a user who exported it expects it used, so say so.
        _warn(f"{path}: vertex normals need nx, ny and nz; only {', '.join(normal_names)} present, "
              f"so the mesh's normals are computed from its faces")
    for u, v in _UV_NAMES:
        if u in vert and v in vert:
            texcoords = np.stack([vert[u], vert[v]], axis=1).astype(np.float32)
            break
    else:
        half = [n for pair in _UV_NAMES for n in pair if n in vert]
        if half:
            _warn(f"{path}: texture coordinates need a pair ({', '.join('/'.join(p) for p in _UV_NAMES)}); "
                  f"only {', '.join(half)} present, so the mesh has no UVs")
    face = values.get("face", {})
    lists = face.get("vertex_indices", face.get("vertex_index"))
    if lists is None or lists[1].size == 0:
        raise SceneError(f"{path}: mesh has no faces")
    counts, flat = lists
    if (counts < 3).any():
        i = int(np.argmax(counts < 3))
        raise SceneError(f"{path}: face {i} has {int(counts[i])} vertices")
    if flat.dtype.kind == "f":
        # PLY allows float index types; only whole numbers are indices
        # (casting would truncate 2.7 to vertex 2 without a word).
        bad = ~np.isfinite(flat) | (flat != np.round(flat))
        if bad.any():
            i = int(np.argmax(bad))
            face_i = int(np.searchsorted(np.cumsum(counts), i, side="right"))
            raise SceneError(
                f"{path}: face {face_i} has the non-integer vertex index {float(flat[i]):g} "
                f"(face indices stored as {flat.dtype.name}; {int(bad.sum())} bad in all)"
            )
    faces = flat.astype(np.int64)[_fan(counts)]
    _check_arrays(path, vertices, normals, texcoords, faces)
    reserved = {"x", "y", "z", "nx", "ny", "nz"} | {n for pair in _UV_NAMES for n in pair}
    attributes = _ply_attributes(vert, "vertex_", reserved, path)
    face_attributes = _ply_attributes(face, "face_", {"vertex_indices", "vertex_index"}, path)
    for name, a in face_attributes.items():
        # One row per triangle: a polygon's value for each of its fan's triangles.
        attributes[name] = np.repeat(a, counts - 2, axis=0)
    for name, a in attributes.items():
        _check_finite(a, f"{name} value", path)
    return MeshData(vertices, faces.astype(np.int32), normals, texcoords, attributes)


# Mitsuba's PLY attribute postfix sequences: x y z, r g b, 0 1 2, 1 2 3.
_POSTFIX_SEQUENCES = ("xyz", "rgb", "012", "123")


def _ply_attributes(props: dict, kind: str, reserved: set, path: str) -> dict:
    """Mesh attributes from an element's remaining properties (in header
    order), as Mitsuba 3.9's PLY loader groups them; `kind` is "vertex_" or
    "face_". Returns {name: float32 (rows, C)}."""
    out = {}
    props = {n: a for n, a in props.items() if not isinstance(a, tuple)}  # lists are not attributes
    names = list(props)
    colour = next((c for c in (("r", "g", "b"), ("red", "green", "blue")) if all(n in props for n in c)), None)
    if colour is not None:
        # Mitsuba renames red/green/blue/alpha to r/g/b/a, then takes a.
        alpha = next((n for n in (("a", "alpha") if colour[0] == "red" else ("a",)) if n in props), None)
        fields = list(colour) + ([alpha] if alpha else [])
        if any(props[n].dtype.kind != "f" for n in fields):
            _warn(f'{path}: mesh attribute "{kind}color" has integer fields: its values are used as stored '
                  f"(Mitsuba expects colours in [0, 1]; scale a mesh_attribute texture by 1/255)")
        out[kind + "color"] = np.stack([props[n] for n in fields], axis=1).astype(np.float32)
        reserved = reserved | set(fields)
    reserved = reserved | {"r", "g", "b", "a"}
    groups = []  # [prefix, postfix sequence index, fields]
    seen = set()
    for n in names:
        if n in reserved:
            continue
        prefix, sep, postfix = n.rpartition("_")
        if not sep or len(postfix) != 1:
            # Mitsuba warns about each of these; PLY files carry many such
            # properties (flags, quality, confidence), so only those named
            # like an attribute's field are worth a word.
            if sep and postfix[:1] in "xyzrgb0123" and not postfix.isalpha():
                _warn(f'{path}: {kind[:-1]} property "{n}" is ignored (mesh attributes are named '
                      f"<prefix>_x/_y/_z, _r/_g/_b, _0/_1/_2 or _1/_2/_3, as in Mitsuba)")
            groups.append(None)
            continue
        g = groups[-1] if groups else None
        if g is not None and g[0] == prefix and g[1] is not None and len(g[2]) < 3 \
                and postfix == _POSTFIX_SEQUENCES[g[1]][len(g[2])]:
            g[2].append(n)
            continue
        if g is not None and g[0] == prefix:
            g[1] = None  # a broken sequence: the whole attribute is dropped
            g[2].append(n)
            continue
        start = next((i for i, sq in enumerate(_POSTFIX_SEQUENCES) if sq[0] == postfix), None)
        groups.append([prefix, start, [n]])
    for g in groups:
        if g is None:
            continue
        prefix, seq, fields = g
        name = kind + prefix + ("_color" if seq == 1 else "")
        if seq is None or len(fields) not in (1, 3) or prefix in seen or name in out:
            why = ("its postfixes are not one of x y z, r g b, 0 1 2, 1 2 3 in order" if seq is None
                   else f"it has {len(fields)} fields; attributes have 1 or 3" if len(fields) not in (1, 3)
                   else "its prefix was used before")
            _warn(f'{path}: {kind[:-1]} properties {", ".join(fields)} are ignored ({why})')
            continue
        if name in _RESERVED_ATTRIBUTES:
            _warn(f'{path}: {kind[:-1]} properties {", ".join(fields)} are ignored ("{name}" is not an attribute '
                  f"name jaxrender can hold)")
            continue
        seen.add(prefix)
        if len(fields) == 3 and any(props[n].dtype.kind != "f" for n in fields):
            _warn(f'{path}: mesh attribute "{name}" has integer fields: its values are used as stored')
        out[name] = np.stack([props[n] for n in fields], axis=1).astype(np.float32)
    return out


def _warn(message: str) -> None:
    warnings.warn(message, SceneWarning, stacklevel=4)


def _ply_header(data: bytes, path: str):
    m = re.search(rb"end_header[ \t]*\r?\n", data)
    if not data.startswith(b"ply") or m is None:
        raise SceneError(f"{path}: not a PLY file (no 'ply' ... 'end_header' header)")
    fmt = None
    elements: list[_PlyElement] = []
    for i, raw in enumerate(data[: m.start()].decode("ascii", "replace").splitlines()[1:], 2):
        toks = raw.split()
        if not toks or toks[0] in ("comment", "obj_info"):
            continue
        where = f"{path}:{i}"
        if toks[0] == "format":
            if len(toks) < 2 or toks[1] not in (
                "ascii",
                "binary_little_endian",
                "binary_big_endian",
            ):
                raise SceneError(f"{where}: unsupported PLY format {raw.strip()!r}")
            fmt = toks[1]
        elif toks[0] == "element":
            if len(toks) != 3 or not toks[2].isdigit():
                raise SceneError(f"{where}: bad element declaration {raw.strip()!r}")
            elements.append(_PlyElement(toks[1], int(toks[2]), []))
        elif toks[0] == "property":
            if not elements:
                raise SceneError(f"{where}: property before any element")
            if len(toks) == 5 and toks[1] == "list":
                if toks[2] not in _PLY_TYPES or toks[3] not in _PLY_TYPES:
                    raise SceneError(f"{where}: unknown PLY type in {raw.strip()!r}")
                if _PLY_TYPES[toks[2]][0] == "f":
                    raise SceneError(
                        f"{where}: a list's length must have an integer type, got {toks[2]!r} "
                        f"in {raw.strip()!r}"
                    )
                elements[-1].props.append(
                    _PlyProp(toks[4], _PLY_TYPES[toks[3]], _PLY_TYPES[toks[2]])
                )
            elif len(toks) == 3 and toks[1] in _PLY_TYPES:
                elements[-1].props.append(_PlyProp(toks[2], _PLY_TYPES[toks[1]]))
            else:
                raise SceneError(f"{where}: bad property declaration {raw.strip()!r}")
        else:
            raise SceneError(f"{where}: unknown PLY header line {raw.strip()!r}")
    if fmt is None:
        raise SceneError(f"{path}: PLY header has no format line")
    return fmt, elements, data[m.end() :]


def _ply_binary(body: bytes, elements: list, values: dict, path: str, endian: str) -> None:
    offset = 0
    for el in elements:
        if el.count == 0:
            values[el.name] = {}
            continue
        lists = [p for p in el.props if p.count_dtype is not None]
        if not lists:
            dt = np.dtype([(p.name, endian + p.dtype) for p in el.props])
            arr = _frombuffer(body, dt, el.count, offset, path, el.name)
            offset += dt.itemsize * el.count
            values[el.name] = {p.name: arr[p.name] for p in el.props}
            continue
        # Fast path: every list of the element as long as in its first record
        # (all triangles, say): one structured dtype for the whole element.
        fields, pos = [], offset
        for p in el.props:
            if p.count_dtype is None:
                fields.append((p.name, endian + p.dtype))
                pos += np.dtype(p.dtype).itemsize
            else:
                cdt = np.dtype(endian + p.count_dtype)
                if pos + cdt.itemsize > len(body):
                    raise SceneError(f"{path}: file ends inside element {el.name!r}")
                n = int(np.frombuffer(body, cdt, 1, pos)[0])
                fields.append((p.name + "#count", cdt))
                fields.append((p.name, endian + p.dtype, (n,)))
                pos += cdt.itemsize + n * np.dtype(p.dtype).itemsize
        dt = np.dtype(fields)
        arr = None
        if offset + dt.itemsize * el.count <= len(body):
            arr = np.frombuffer(body, dt, el.count, offset)
            if not all((arr[p.name + "#count"] == arr.dtype[p.name].shape[0]).all() for p in lists):
                arr = None
        if arr is not None:
            offset += dt.itemsize * el.count
            out = {}
            for p in el.props:
                if p.count_dtype is None:
                    out[p.name] = arr[p.name]
                else:
                    items = arr[p.name].reshape(el.count, -1)
                    out[p.name] = (np.full(el.count, items.shape[1], np.int64), items.reshape(-1))
            values[el.name] = out
        else:
            values[el.name], offset = _ply_binary_slow(body, el, offset, path, endian)


def _frombuffer(body, dt, count, offset, path, name):
    if offset + dt.itemsize * count > len(body):
        raise SceneError(f"{path}: file ends inside element {name!r} (truncated?)")
    return np.frombuffer(body, dt, count, offset)


def _ply_binary_slow(body: bytes, el: _PlyElement, offset: int, path: str, endian: str):
    """Record by record, for elements whose lists vary in length."""
    scalars = {p.name: np.empty(el.count, p.dtype) for p in el.props if p.count_dtype is None}
    counts = {p.name: np.empty(el.count, np.int64) for p in el.props if p.count_dtype}
    chunks = {p.name: [] for p in el.props if p.count_dtype}
    codes = {"i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I", "f4": "f", "f8": "d"}
    size = len(body)
    try:
        for r in range(el.count):
            for p in el.props:
                if p.count_dtype is None:
                    (scalars[p.name][r],) = struct.unpack_from(
                        endian + codes[p.dtype], body, offset
                    )
                    offset += np.dtype(p.dtype).itemsize
                else:
                    (n,) = struct.unpack_from(endian + codes[p.count_dtype], body, offset)
                    offset += np.dtype(p.count_dtype).itemsize
                    nbytes = n * np.dtype(p.dtype).itemsize
                    if offset + nbytes > size:
                        raise struct.error
                    counts[p.name][r] = n
                    chunks[p.name].append(body[offset : offset + nbytes])
                    offset += nbytes
    except struct.error:
        raise SceneError(f"{path}: file ends inside element {el.name!r} (truncated?)") from None
    out = dict(scalars)
    for p in el.props:
        if p.count_dtype is not None:
            flat = np.frombuffer(b"".join(chunks[p.name]), endian + p.dtype)
            out[p.name] = (counts[p.name], flat)
    return out, offset


def _ply_ascii(body: bytes, elements: list, values: dict, path: str) -> None:
    lines = [ln for ln in body.split(b"\n") if ln.strip()]
    pos = 0
    for el in elements:
        rows = lines[pos : pos + el.count]
        if len(rows) < el.count:
            raise SceneError(
                f"{path}: element {el.name!r} declares {el.count} rows, the file has {len(rows)}"
            )
        pos += el.count
        if el.count == 0:
            values[el.name] = {}
            continue
        lists = [p for p in el.props if p.count_dtype is not None]
        if not lists:
            k = len(el.props)
            arr = _numbers(b"\n".join(rows), np.float64, el.count * k)
            if arr is None:
                arr = _ascii_rows(rows, k, el.name, path)
            arr = arr.reshape(el.count, k)
            values[el.name] = {p.name: arr[:, j].astype(p.dtype) for j, p in enumerate(el.props)}
            continue
        # Fast path: one list as the only property, all of the same length.
        toks = [r.split() for r in rows]
        ntok = np.array([len(t) for t in toks])
        if len(el.props) == 1 and (ntok == ntok[0]).all():
            arr = _numbers(b"\n".join(rows), np.float64, el.count * int(ntok[0]))
            if arr is not None:
                arr = arr.reshape(el.count, -1)
                if (arr[:, 0] == ntok[0] - 1).all():
                    p = el.props[0]
                    items = arr[:, 1:]
                    _check_integral(items, p, el, path)
                    values[el.name] = {
                        p.name: (
                            np.full(el.count, items.shape[1]),
                            items.reshape(-1).astype(p.dtype),
                        )
                    }
                    continue
        out = {p.name: [] for p in el.props}
        for r, t in enumerate(toks):
            try:
                j = 0
                for p in el.props:
                    if p.count_dtype is None:
                        out[p.name].append(float(t[j]))
                        j += 1
                    else:
                        n = int(t[j])
                        out[p.name].append([float(x) for x in t[j + 1 : j + 1 + n]])
                        if len(out[p.name][-1]) != n:
                            raise IndexError
                        j += 1 + n
                if j != len(t):
                    raise IndexError
            except (ValueError, IndexError):
                raise SceneError(
                    f"{path}: could not parse row {r} of element {el.name!r}: "
                    f"{rows[r].decode(errors='replace').strip()!r}"
                ) from None
        result = {}
        for p in el.props:
            if p.count_dtype is None:
                result[p.name] = np.asarray(out[p.name]).astype(p.dtype)
            else:
                counts = np.array([len(x) for x in out[p.name]], dtype=np.int64)
                flat = np.array([y for x in out[p.name] for y in x], dtype=np.float64)
                _check_integral(flat, p, el, path)
                result[p.name] = (counts, flat.astype(p.dtype))
        values[el.name] = result


def _check_integral(items: np.ndarray, p: _PlyProp, el: _PlyElement, path: str) -> None:
    if p.dtype[0] in "iu" and items.size and (items != np.round(items)).any():
        raise SceneError(f"{path}: element {el.name!r} property {p.name!r} has non-integer indices")


def _ascii_rows(rows: list, k: int, name: str, path: str) -> np.ndarray:
    arr = np.empty((len(rows), k))
    for r, row in enumerate(rows):
        parts = row.split()
        try:
            if len(parts) != k:
                raise ValueError
            arr[r] = [float(x) for x in parts]
        except ValueError:
            raise SceneError(
                f"{path}: could not parse row {r} of element {name!r} ({k} numbers expected): "
                f"{row.decode(errors='replace').strip()!r}"
            ) from None
    return arr


def write_ply(
    path,
    vertices,
    faces=None,
    *,
    normals=None,
    texcoords=None,
    attributes=None,
    ascii: bool = False,
    big_endian: bool = False,
) -> None:
    """Writes a triangle mesh as a PLY file.

    Args:
      path: output file.
      vertices: (V, 3) positions, or a MeshData (then leave the arrays unset).
      faces: (F, 3) vertex indices.
      normals, texcoords: optional (V, 3) and (V, 2) per-vertex attributes,
        written as nx, ny, nz and u, v.
      attributes: optional {name: array} mesh attributes of 1 or 3 channels
        (see `MeshData`), written so that `read_ply` (and Mitsuba) read them
        back: "vertex_color" / "face_color" as r, g, b, other names
        "<kind>_<prefix>" as <prefix>_x, _y, _z (one channel: <prefix>_x),
        "<kind>_<prefix>_color" as <prefix>_r, _g, _b.
      ascii: write text instead of binary.
      big_endian: for binary files, write big-endian instead of little-endian.

    Vertices are float32 properties, faces `list uchar int vertex_indices`
    followed by their float32 attributes.
    """
    mesh = _mesh_arg(vertices, faces, normals, texcoords, attributes)
    names = ["x", "y", "z"]
    cols = [mesh.vertices]
    if mesh.normals is not None:
        names += ["nx", "ny", "nz"]
        cols.append(mesh.normals)
    if mesh.texcoords is not None:
        names += ["u", "v"]
        cols.append(mesh.texcoords)
    face_names, face_cols = [], []
    written = set()
    for name, a in mesh.attributes.items():
        kind, _, rest = name.partition("_")
        if rest == "color" and a.shape[1] in (3, 4):
            props = ["r", "g", "b", "a"][:a.shape[1]]
        elif a.shape[1] not in (1, 3):
            raise ValueError(f"write_ply: attribute {name!r} has {a.shape[1]} channels; PLY attributes have 1 or 3 "
                             f"(4 for a colour)")
        elif rest.endswith("_color") and a.shape[1] == 3:
            props = [f"{rest[:-6]}_{c}" for c in "rgb"]
        else:
            props = [f"{rest}_{c}" for c in "xyz"[:a.shape[1]]]
        # read_ply groups fields by the prefix before their last "_": two
        # attributes with one prefix (foo and foo_color) would not come back.
        prefix = (kind, props[0].rpartition("_")[0] if "_" in props[0] else "<r g b>")
        if prefix in written or not re.fullmatch(r"[A-Za-z0-9_]+", rest):
            raise ValueError(f"write_ply: attribute {name!r} cannot be written so that it reads back (its PLY "
                             f"properties {', '.join(props)} clash with another attribute's, or the name has "
                             f"characters other than letters, digits and _)")
        written.add(prefix)
        (names if kind == "vertex" else face_names).extend(props)
        (cols if kind == "vertex" else face_cols).append(a)
    vdata = np.concatenate(cols, axis=1).astype(np.float32)
    fattr = np.concatenate(face_cols, axis=1).astype(np.float32) if face_cols else np.zeros((mesh.num_faces, 0))
    fmt = "ascii" if ascii else ("binary_big_endian" if big_endian else "binary_little_endian")
    header = [
        "ply",
        f"format {fmt} 1.0",
        "comment written by jaxrender",
        f"element vertex {mesh.num_vertices}",
    ]
    header += [f"property float {n}" for n in names]
    header += [
        f"element face {mesh.num_faces}",
        "property list uchar int vertex_indices",
    ]
    header += [f"property float {n}" for n in face_names] + ["end_header"]
    out = ["\n".join(header).encode() + b"\n"]
    if ascii:
        out.append(
            "".join(
                ("%.9g " * len(names))[:-1] % tuple(r) + "\n"
                for r in vdata.astype(np.float64).tolist()
            ).encode()
        )
        out.append("".join(
            "3 %d %d %d" % tuple(r) + "".join(" %.9g" % x for x in a) + "\n"
            for r, a in zip(mesh.faces.tolist(), fattr.astype(np.float64).tolist())).encode())
    else:
        e = ">" if big_endian else "<"
        out.append(vdata.astype(e + "f4").tobytes())
        fdt = np.dtype([("n", "u1"), ("i", e + "i4", (3,)), ("a", e + "f4", (fattr.shape[1],))])
        frec = np.empty(mesh.num_faces, fdt)
        frec["n"] = 3
        frec["i"] = mesh.faces
        frec["a"] = fattr
        out.append(frec.tobytes())
    with open(os.fspath(path), "wb") as fh:
        fh.write(b"".join(out))


# --------------------------------------------------------------------------
# Mitsuba's serialized format

_SERIALIZED_MAGIC = 0x041C
_HAS_NORMALS, _HAS_TEXCOORDS, _HAS_COLORS, _FACE_NORMALS, _DOUBLE = 0x1, 0x2, 0x8, 0x10, 0x2000


def _serialized_offsets(data: bytes, version: int, path: str) -> list:
    """Start offsets of the meshes of a serialized file, from its
    end-of-file dictionary (a u32 count after u64 offsets, u32 in
    version 3)."""
    if len(data) < 8:
        raise SceneError(f"{path}: truncated serialized file ({len(data)} bytes)")
    (count,) = struct.unpack_from("<I", data, len(data) - 4)
    width = 8 if version == 4 else 4
    start = len(data) - 4 - width * count
    if count == 0 or start < 4:
        raise SceneError(f"{path}: the serialized file's end-of-file dictionary is corrupt "
                         f"({count} meshes in {len(data)} bytes)")
    return list(struct.unpack_from(("<%dQ" if width == 8 else "<%dI") % count, data, start))


def read_serialized(path, shape_index: int = 0) -> MeshData:
    """Reads one mesh of a Mitsuba `.serialized` file (versions 3 and 4:
    zlib-compressed little-endian streams, one per mesh, and an
    end-of-file dictionary of their offsets).

    Args:
      path: the file.
      shape_index: which mesh of the file (0: the first).

    Returns:
      MeshData with positions, faces and, where the file has them, vertex
      normals and texture coordinates (as stored: no v flip, as Mitsuba).
      Double-precision files are rounded to float32; vertex colours are
      skipped, and so is the file's face-normals flag (0x10), as Mitsuba
      3.9 does (the shape's `face_normals` parameter decides).

    Raises:
      SceneError: missing file, wrong magic number or version, a shape index
        beyond the file's meshes, a corrupt or truncated stream, indices out
        of range, non-finite numbers, no faces.
    """
    import zlib

    path, data = _open_bytes(path)
    if len(data) < 4:
        raise SceneError(f"{path}: not a serialized mesh file (too short)")
    magic, version = struct.unpack_from("<HH", data, 0)
    if magic != _SERIALIZED_MAGIC:
        raise SceneError(f"{path}: not a serialized mesh file (magic number {magic:#06x}, expected 0x041c)")
    if version not in (3, 4):
        raise SceneError(f"{path}: serialized file version {version} is not supported (3 or 4)")
    if shape_index < 0:
        raise SceneError(f"{path}: shape_index must be >= 0, got {shape_index}")
    offset = 0
    if shape_index > 0:
        offsets = _serialized_offsets(data, version, path)
        if shape_index >= len(offsets):
            raise SceneError(f"{path}: shape_index {shape_index} is out of range (the file holds "
                             f"{len(offsets)} meshes: 0..{len(offsets) - 1})")
        offset = offsets[shape_index]
        if not 0 <= offset < len(data) - 4:
            raise SceneError(f"{path}: mesh {shape_index} starts at {offset}, outside the file")
    try:
        body = zlib.decompressobj().decompress(data[offset + 4:])
    except zlib.error as e:
        raise SceneError(f"{path}: mesh {shape_index}: corrupt compressed data ({e})") from None

    pos = 0

    def take(n, what):
        nonlocal pos
        if pos + n > len(body):
            raise SceneError(f"{path}: mesh {shape_index} is truncated (reading {what})")
        out = body[pos:pos + n]
        pos += n
        return out

    (flags,) = struct.unpack("<I", take(4, "flags"))
    if version == 4:
        end = body.find(b"\0", pos)
        if end < 0:
            raise SceneError(f"{path}: mesh {shape_index} is truncated (reading its name)")
        pos = end + 1
    nv, nf = struct.unpack("<QQ", take(16, "counts"))
    real = np.dtype("<f8" if flags & _DOUBLE else "<f4")
    # Bounds first: a corrupt count must not allocate terabytes.
    need = nv * real.itemsize * (3 + 3 * bool(flags & _HAS_NORMALS) + 2 * bool(flags & _HAS_TEXCOORDS)
                                 + 3 * bool(flags & _HAS_COLORS)) + nf * 12
    if need > len(body) - pos:
        raise SceneError(f"{path}: mesh {shape_index} is truncated ({nv} vertices and {nf} triangles need "
                         f"{need} bytes, {len(body) - pos} left)")

    def reals(cols, what):
        return np.frombuffer(take(nv * cols * real.itemsize, what), real).reshape(nv, cols).astype(np.float32)

    vertices = reals(3, "positions")
    normals = reals(3, "normals") if flags & _HAS_NORMALS else None
    texcoords = reals(2, "texture coordinates") if flags & _HAS_TEXCOORDS else None
    if flags & _HAS_COLORS:
        reals(3, "colors")  # Mitsuba 3 drops a serialized mesh's vertex colours too (no attribute)
    faces = np.frombuffer(take(nf * 12, "faces"), "<u4").reshape(nf, 3).astype(np.int64)
    if nf == 0:
        raise SceneError(f"{path}: mesh {shape_index} has no faces")
    _check_arrays(path, vertices, normals, texcoords, faces, f"mesh {shape_index}: ")
    return MeshData(vertices, faces.astype(np.int32), normals, texcoords)


def write_serialized(path, meshes, *, face_normals: bool = False, double: bool = False) -> None:
    """Writes meshes as a Mitsuba `.serialized` file (version 4).

    Args:
      path: output file.
      meshes: a MeshData or a list of them (one compressed stream each,
        selected with `shape_index` when read).
      face_normals: set the flag that asks for face normals.
      double: store positions, normals and uvs in double precision.

    Mesh attributes are not written (the format's vertex colours, which
    Mitsuba 3 ignores, are not used).
    """
    import zlib

    if isinstance(meshes, MeshData):
        meshes = [meshes]
    real = "<f8" if double else "<f4"
    out, offsets, at = [], [], 0
    for k, m in enumerate(meshes):
        flags = (_DOUBLE if double else 0x1000) | (_FACE_NORMALS if face_normals else 0)
        flags |= (_HAS_NORMALS if m.normals is not None else 0) | (_HAS_TEXCOORDS if m.texcoords is not None else 0)
        parts = [struct.pack("<I", flags), f"mesh{k}".encode() + b"\0",
                 struct.pack("<QQ", m.num_vertices, m.num_faces), m.vertices.astype(real).tobytes()]
        parts += [a.astype(real).tobytes() for a in (m.normals, m.texcoords) if a is not None]
        parts.append(m.faces.astype("<u4").tobytes())
        chunk = struct.pack("<HH", _SERIALIZED_MAGIC, 4) + zlib.compress(b"".join(parts))
        offsets.append(at)
        at += len(chunk)
        out.append(chunk)
    out.append(struct.pack("<%dQ" % len(offsets), *offsets) + struct.pack("<I", len(offsets)))
    with open(os.fspath(path), "wb") as fh:
        fh.write(b"".join(out))
