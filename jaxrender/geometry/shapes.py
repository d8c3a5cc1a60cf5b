"""Procedural triangle meshes (numpy, host side): built-in test geometry.

Each function returns (vertices float32 (V, 3), faces int32 (F, 3)) with
welded vertices and outward, counter-clockwise faces.
"""

from __future__ import annotations

import numpy as np


def icosphere(subdivisions: int = 3, radius: float = 1.0, center=(0.0, 0.0, 0.0)):
    """A closed sphere: an icosahedron subdivided `subdivisions` times (20 * 4^s faces).

    Vertices are placed in float64 and rounded to float32 once, so the twelve
    base vertices keep exact zero coordinates (axis-aligned rays through them
    hit edges and vertices exactly, which the watertightness tests rely on).
    """
    t = (1.0 + 5.0**0.5) / 2.0
    verts = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
             (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
             (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
             (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    v = [np.asarray(p, np.float64) / np.linalg.norm(p) for p in verts]
    f = faces
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def midpoint(a, b):
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = v[a] + v[b]
                v.append(m / np.linalg.norm(m))
                cache[key] = len(v) - 1
            return cache[key]

        new = []
        for a, b, c in f:
            ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        f = new
    v = np.asarray(v) * radius + np.asarray(center, np.float64)
    return v.astype(np.float32), np.asarray(f, np.int32)


def torus(major_radius: float = 1.0, minor_radius: float = 0.35, n_major: int = 48, n_minor: int = 24):
    """A closed torus around the z axis with n_major * n_minor * 2 faces."""
    u = np.arange(n_major) * (2 * np.pi / n_major)
    w = np.arange(n_minor) * (2 * np.pi / n_minor)
    uu, ww = np.meshgrid(u, w, indexing="ij")
    r = major_radius + minor_radius * np.cos(ww)
    v = np.stack([r * np.cos(uu), r * np.sin(uu), minor_radius * np.sin(ww)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n_major), np.arange(n_minor), indexing="ij")
    a = i * n_minor + j
    b = ((i + 1) % n_major) * n_minor + j
    c = ((i + 1) % n_major) * n_minor + (j + 1) % n_minor
    d = i * n_minor + (j + 1) % n_minor
    f = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return v.astype(np.float32), f.astype(np.int32)


def box(lo=(-1.0, -1.0, -1.0), hi=(1.0, 1.0, 1.0)):
    """A closed axis-aligned box: 8 shared vertices, 12 faces."""
    lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
    corners = np.array([[(hi if (k >> a) & 1 else lo)[a] for a in range(3)] for k in range(8)], np.float32)
    quads = [(0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5)]
    f = [tri for q in quads for tri in ((q[0], q[1], q[2]), (q[0], q[2], q[3]))]
    return corners, np.asarray(f, np.int32)


MESHES = {"sphere": icosphere, "torus": torus, "box": box}
