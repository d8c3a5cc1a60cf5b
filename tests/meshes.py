"""Small test meshes as numpy arrays: (vertices float32 (V, 3), faces int32 (F, 3)).

All closed meshes are welded (neighbouring triangles share vertex indices, so
shared edges are bit-identical) and consistently wound with outward normals
(counter-clockwise seen from outside).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "icosphere", "box", "torus", "random_soup", "cube_unwelded", "octahedron", "edges",
    "face_normals",
]


def _as_mesh(vertices, faces):
    return np.ascontiguousarray(vertices, np.float32), np.ascontiguousarray(faces, np.int32)


# The package's own generator (placed in float64, rounded once to float32).
from jaxrender.geometry.shapes import icosphere  # noqa: E402


def box(lo=(-1.0, -1.0, -1.0), hi=(1.0, 1.0, 1.0)):
    """Closed axis-aligned box: 8 welded vertices, 12 triangles."""
    lo = np.asarray(lo, np.float64)
    hi = np.asarray(hi, np.float64)
    # vertex i has bit 0 -> x, bit 1 -> y, bit 2 -> z at hi.
    v = np.array([[hi[0] if i & 1 else lo[0], hi[1] if i & 2 else lo[1], hi[2] if i & 4 else lo[2]]
                  for i in range(8)])
    quads = [
        (0, 2, 3, 1),  # z = lo (normal -z)
        (4, 5, 7, 6),  # z = hi (+z)
        (0, 1, 5, 4),  # y = lo (-y)
        (2, 6, 7, 3),  # y = hi (+y)
        (0, 4, 6, 2),  # x = lo (-x)
        (1, 3, 7, 5),  # x = hi (+x)
    ]
    faces = []
    for a, b, c, d in quads:
        faces += [(a, b, c), (a, c, d)]
    return _as_mesh(v, faces)


def cube_unwelded():
    """Unit cube [-1, 1]^3 like Mitsuba's cube: 24 vertices (4 per side), 12
    triangles; triangles of different sides share no vertex index (the two
    triangles of a side share their diagonal)."""
    v8, f12 = box()
    verts, faces = [], []
    for s in range(6):
        a, b, c = f12[2 * s]
        _, _, d = f12[2 * s + 1]
        base = len(verts)
        verts += [v8[a], v8[b], v8[c], v8[d]]
        faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    return _as_mesh(verts, faces)


def octahedron():
    """Closed octahedron |x| + |y| + |z| = 1: 6 welded vertices, 8 triangles.
    Its face planes (x +- y +- z = 1) hold many exactly representable points."""
    v = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float64)
    faces = []
    for sx, ix in ((1, 0), (-1, 1)):
        for sy, iy in ((1, 2), (-1, 3)):
            for sz, iz in ((1, 4), (-1, 5)):
                # counter-clockwise seen from outside iff sx * sy * sz > 0
                faces.append((ix, iy, iz) if sx * sy * sz > 0 else (ix, iz, iy))
    return _as_mesh(v, faces)


def torus(R: float = 1.0, r: float = 0.35, n_major: int = 32, n_minor: int = 16):
    """Welded, closed torus around the z axis: 2 * n_major * n_minor triangles."""
    i, j = np.meshgrid(np.arange(n_major), np.arange(n_minor), indexing="ij")
    u = 2 * np.pi * i / n_major
    w = 2 * np.pi * j / n_minor
    x = (R + r * np.cos(w)) * np.cos(u)
    y = (R + r * np.cos(w)) * np.sin(u)
    z = r * np.sin(w)
    v = np.stack([x, y, z], -1).reshape(-1, 3)
    idx = lambda a, b: (a % n_major) * n_minor + (b % n_minor)  # noqa: E731
    faces = []
    for a in range(n_major):
        for b in range(n_minor):
            p00, p10, p11, p01 = idx(a, b), idx(a + 1, b), idx(a + 1, b + 1), idx(a, b + 1)
            faces += [(p00, p10, p11), (p00, p11, p01)]
    return _as_mesh(v, faces)


def random_soup(n: int, rng: np.random.Generator, size: float = 0.25, extent: float = 1.0):
    """n independent random triangles (3n vertices, no sharing) with centres
    uniform in [-extent, extent]^3, random orientations, and vertices `size` *
    U(0.6, 1) from their centre at angles 120 +- 30 degrees apart (so no slivers:
    every angle >= ~15 degrees; float32 barycentrics stay well conditioned)."""
    c = rng.uniform(-extent, extent, (n, 1, 3))
    gaps = rng.uniform(np.pi / 2, 5 * np.pi / 6, (n, 2))
    ang = np.cumsum(np.c_[rng.uniform(0, 2 * np.pi, n), gaps], axis=1)
    rad = size * rng.uniform(0.6, 1.0, (n, 3))
    local = np.stack([rad * np.cos(ang), rad * np.sin(ang), np.zeros((n, 3))], -1)  # (n, 3, 3)
    q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))  # random orthonormal frames
    v = c + np.einsum("nij,nkj->nki", q, local)
    return _as_mesh(v.reshape(-1, 3), np.arange(3 * n).reshape(n, 3))


def edges(faces):
    """Unique undirected edges (E, 2) and, for closed welded meshes, a check
    that every edge has exactly two incident faces."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.sort(e, axis=1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    return uniq, counts


def face_normals(vertices, faces):
    """Unit normals (F, 3) in float64, from the winding (v1 - v0) x (v2 - v0)."""
    v = np.asarray(vertices, np.float64)[faces]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    return n / np.linalg.norm(n, axis=1, keepdims=True)
