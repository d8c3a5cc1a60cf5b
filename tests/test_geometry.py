"""Tests of the ray-tracing core: build_bvh, intersect, occluded.

Most checks compare the native kernels with `reference.brute_force`, a float64
Moeller-Trumbore over all rays x all triangles. Agreement is defined as:

* a ray agrees when both report the same prim (both -1 for a miss), or both
  hit with |t - t_ref| <= 1e-5 max(1, |t_ref|) (a tie, e.g. a ray through an
  edge shared by two triangles, where either face is a correct answer);
* at least 99.99 % of the rays of a test must agree;
* where the prims agree and hit, |x - x_ref| <= 1e-5 max(1, |x_ref|) for x in
  t, b1, b2. (For t this is relative beyond t = 1 and absolute below: with unit
  scale scenes and |d| ~ 1 a very short hit, t ~ 1e-3, is only as precise as the
  float32 positions, ~1e-7 absolute, not 1e-5 relative.) At grazing incidence
  these quantities are ill-conditioned: a rounding of the positions by
  delta = 2 eps scale moves the hit by delta / |cos| along the ray (cos between
  ray and face normal), so each ray's tolerance is the larger of the above and
  delta / (|cos| |d|) for t, delta / (|cos| h) for b1, b2 (h the smallest
  height of the face). For rays hitting at |cos| > ~0.2 this changes nothing.

Every query that goes through `trace` also checks that `occluded` equals
`intersect(...).prim >= 0` for the same rays and t_max, and the invariants of
the Hit encoding (misses: t = inf, b1 = b2 = 0; hits: 0 < t < t_max).
"""

from __future__ import annotations

import functools
import os
import sys
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrender as jr

sys.path.insert(0, os.path.dirname(__file__))
from meshes import (  # noqa: E402
    box,
    cube_unwelded,
    edges,
    face_normals,
    icosphere,
    octahedron,
    random_soup,
    torus,
)
from reference import (  # noqa: E402
    bounce_rays,
    brute_force,
    camera_rays,
    random_rays,
    surface_points,
)

F32_EPS = float(np.finfo(np.float32).eps)

# --------------------------------------------------------------------------
# Shared scenes and jit-compiled queries.

MESHES = {
    "icosphere": lambda: icosphere(3),
    "box": box,
    "torus": lambda: torus(1.0, 0.35, 32, 16),
    "cube_unwelded": cube_unwelded,
    "octahedron": octahedron,
    "soup": lambda: random_soup(1500, np.random.default_rng(1)),
    "soup_small": lambda: random_soup(5, np.random.default_rng(2), size=0.6),
    "single": lambda: (np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32),
                       np.array([[0, 1, 2]], np.int32)),
    # off-centre and larger, to exercise relative precision
    "icosphere_far": lambda: icosphere(2, radius=20.0, center=(60.0, -35.0, 12.5)),
}
CLOSED = ["icosphere", "box", "torus", "cube_unwelded", "octahedron"]
CONVEX = ["icosphere", "box", "cube_unwelded", "octahedron"]


METHODS = ["sah", "lbvh"]  # build_bvh(method=...): binned SAH and Karras LBVH


@functools.lru_cache(maxsize=None)
def scene(name, method="sah"):
    v, f = MESHES[name]()
    return v, f, jr.build_bvh(v, f, method=method)


_intersect = jax.jit(jr.intersect)
_occluded = jax.jit(jr.occluded)


@jax.jit
def _build_and_intersect(vertices, faces, origins, directions, t_max):
    return jr.intersect(jr.build_bvh(vertices, faces), vertices, faces, origins, directions, t_max)


def as_np(hit):
    return jr.Hit(*(np.asarray(x) for x in hit))


def check_invariants(hit, num_faces, t_max=None):
    t, prim, b1, b2 = hit
    miss = prim < 0
    assert t.dtype == np.float32 and b1.dtype == np.float32 and b2.dtype == np.float32
    assert prim.dtype == np.int32
    assert np.all(prim >= -1) and np.all(prim < num_faces)
    assert np.all(np.isposinf(t[miss])), "a miss must have t = +inf"
    assert np.all(b1[miss] == 0) and np.all(b2[miss] == 0), "a miss must have b1 = b2 = 0"
    th = t[~miss]
    assert np.all(np.isfinite(th) & (th > 0)), "hits must have 0 < t < inf"
    if t_max is not None:
        tm = np.broadcast_to(np.asarray(t_max, np.float32), t.shape)[~miss]
        assert np.all(th < tm), "hits must have t < t_max"
    tol = 1e-5
    assert np.all((b1[~miss] >= -tol) & (b2[~miss] >= -tol) & (b1[~miss] + b2[~miss] <= 1 + tol))


def trace(name_or_scene, origins, directions, t_max=None, *, check_occluded=True):
    """intersect (jit) + invariants + occluded consistency; numpy Hit."""
    v, f, acc = scene(name_or_scene) if isinstance(name_or_scene, str) else name_or_scene
    hit = as_np(_intersect(acc, v, f, origins, directions, t_max))
    check_invariants(hit, f.shape[0], t_max)
    if check_occluded:
        occ = np.asarray(_occluded(acc, v, f, origins, directions, t_max))
        assert occ.dtype == np.bool_
        np.testing.assert_array_equal(occ, hit.prim >= 0, err_msg="occluded != (prim >= 0)")
    return hit


def _describe(idx, hit, ref, origins, directions):
    lines = []
    for i in idx[:5]:
        lines.append(
            f"  ray {i}: o={origins[i].tolist()} d={directions[i].tolist()} "
            f"kernel(t={hit.t[i]!r}, prim={hit.prim[i]}, b=({hit.b1[i]}, {hit.b2[i]})) "
            f"ref(t={ref[0][i]!r}, prim={ref[1][i]}, b=({ref[2][i]:.7g}, {ref[3][i]:.7g}))")
    return "\n".join(lines)


def _conditioning(mesh, prim, origins, directions):
    """Per ray: (position rounding delta, |cos| of incidence, smallest face height)."""
    v, f = mesh
    tri = v[f[np.maximum(prim, 0)]].astype(np.float64)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    n = np.cross(e1, e2)
    area2 = np.linalg.norm(n, axis=1)
    d = directions.astype(np.float64)
    cos = np.abs(np.einsum("ij,ij->i", n, d)) / (area2 * np.linalg.norm(d, axis=1))
    longest = np.max(np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2), axis=1)
    scale = np.maximum(np.abs(tri).max(axis=(1, 2)), np.abs(origins).max(axis=1))
    return 2 * F32_EPS * scale, cos, area2 / longest


def assert_matches_reference(hit, ref, origins, directions, *, min_frac=0.9999, rtol=1e-5,
                             btol=1e-5, what="", mesh=None):
    """The agreement criterion of the module docstring (`mesh` = (v, f) enables
    the grazing-incidence allowance)."""
    t, prim, b1, b2 = hit
    rt, rp, rb1, rb2 = ref
    same = prim == rp
    both = (prim >= 0) & (rp >= 0)
    with np.errstate(invalid="ignore"):
        tie = both & (np.abs(t - rt) <= rtol * np.maximum(1, np.abs(rt)))
    agree = same | tie
    n = agree.size
    if n:
        frac = agree.mean()
        bad = np.nonzero(~agree)[0]
        assert frac >= min_frac, (
            f"{what}: {bad.size}/{n} rays disagree with the reference (agreement {frac:.6f})\n"
            + _describe(bad, hit, ref, origins, directions))
    cmp = same & (rp >= 0)
    t_tol = rtol * np.maximum(1, np.abs(rt[cmp]))
    b1_tol = btol * np.maximum(1, np.abs(rb1[cmp]))
    b2_tol = btol * np.maximum(1, np.abs(rb2[cmp]))
    if mesh is not None and cmp.any():
        delta, cos, h = _conditioning(mesh, rp[cmp], origins[cmp], directions[cmp])
        with np.errstate(divide="ignore"):
            t_tol = np.maximum(t_tol, delta / (cos * np.linalg.norm(directions[cmp], axis=1)))
            b1_tol = np.maximum(b1_tol, delta / (cos * h))
            b2_tol = np.maximum(b2_tol, delta / (cos * h))
    terr = np.abs(t[cmp] - rt[cmp]) / t_tol
    b1err = np.abs(b1[cmp] - rb1[cmp]) / b1_tol
    b2err = np.abs(b2[cmp] - rb2[cmp]) / b2_tol
    for name, err in (("t", terr), ("b1", b1err), ("b2", b2err)):
        if err.size and not np.all(err <= 1):
            worst = np.nonzero(cmp)[0][np.argsort(-err)[:5]]
            raise AssertionError(f"{what}: {name} error {err.max():.3g} x its tolerance on "
                                 f"{(err > 1).sum()} rays\n"
                                 + _describe(worst, hit, ref, origins, directions))
    return agree


def hit_points_consistent(v, f, hit, origins, directions, tol):
    """o + t d equals the barycentric combination of the hit face's vertices
    (to `tol`, or for grazing hits to the conditioning allowance)."""
    m = hit.prim >= 0
    tri = v[f[hit.prim[m]]].astype(np.float64)
    b1 = hit.b1[m].astype(np.float64)[:, None]
    b2 = hit.b2[m].astype(np.float64)[:, None]
    p_bary = (1 - b1 - b2) * tri[:, 0] + b1 * tri[:, 1] + b2 * tri[:, 2]
    p_ray = origins[m].astype(np.float64) + hit.t[m, None].astype(np.float64) * directions[m]
    err = np.linalg.norm(p_bary - p_ray, axis=1)
    delta, cos, _ = _conditioning((v, f), hit.prim[m], origins[m], directions[m])
    tol = np.maximum(tol, 4 * delta / cos)
    assert np.all(err <= tol), f"hit point mismatch {(err / tol).max()} x tolerance"


# --------------------------------------------------------------------------
# Sanity of the test helpers themselves.


@pytest.mark.parametrize("name", CLOSED)
def test_meshes_closed_welded_outward(name):
    v, f = MESHES[name]()
    assert v.dtype == np.float32 and f.dtype == np.int32 and f.shape[1] == 3
    _, welded = np.unique(v, axis=0, return_inverse=True)  # weld by position
    _, counts = edges(welded.reshape(-1)[f])
    assert np.all(counts == 2), "every edge of a closed mesh has two faces"
    if name != "cube_unwelded":
        assert np.array_equal(edges(f)[1], counts), "closed meshes are welded by index"
    if name in CONVEX:
        n = face_normals(v, f)
        c = v[f].astype(np.float64).mean(1) - v.astype(np.float64).mean(0)
        assert np.all(np.einsum("ij,ij->i", n, c) > 0), "normals point outward"


def test_mesh_generator_shapes():
    v, f = box()
    assert v.shape == (8, 3) and f.shape == (12, 3)
    v, f = cube_unwelded()
    assert v.shape == (24, 3) and f.shape == (12, 3)
    for s in range(6):  # two triangles per side share vertices, sides share none
        others = np.delete(f, [2 * s, 2 * s + 1], axis=0)
        assert not set(f[2 * s : 2 * s + 2].ravel()) & set(others.ravel())
    v, f = icosphere(2)
    assert f.shape == (320, 3) and v.shape == (162, 3)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, rtol=1e-6)
    v, f = torus(1.0, 0.3, 12, 6)
    assert v.shape == (72, 3) and f.shape == (144, 3)
    v, f = random_soup(10, np.random.default_rng(0))
    assert v.shape == (30, 3) and f.shape == (10, 3)


def test_reference_known_hits():
    v, f, _ = scene("single")
    o = np.array([[0.25, 0.25, 2], [0.25, 0.25, -2], [2, 2, 1], [0.5, 0.5, 1], [0, 0, 1]],
                 np.float32)
    d = np.array([[0, 0, -1], [0, 0, 2], [0, 0, -1], [0, 0, -1], [0, 0, -1]], np.float32)
    t, prim, b1, b2 = brute_force(v, f, o, d)
    np.testing.assert_array_equal(prim, [0, 0, -1, 0, 0])
    np.testing.assert_allclose(t, [2, 1, np.inf, 1, 1])
    np.testing.assert_allclose(b1, [0.25, 0.25, 0, 0.5, 0])
    np.testing.assert_allclose(b2, [0.25, 0.25, 0, 0.5, 0])
    t, prim, _, _ = brute_force(v, f, o, d, t_max=np.float32(1.5))
    np.testing.assert_array_equal(prim, [-1, 0, -1, 0, 0])


# --------------------------------------------------------------------------
# Agreement with the reference on random soups and closed meshes.


def _mixed_rays(v, seed, n_random=8000, res=48):
    """Two pinhole cameras (one with unnormalized directions) and incoherent
    random rays. Cameras sit ~2 scene radii from the centre: float32 barycentric
    precision is ~eps * distance / triangle size, which must stay below 1e-5."""
    rng = np.random.default_rng(seed)
    c = v.astype(np.float64).mean(0)
    r = np.linalg.norm(v - c, axis=1).max()
    o1, d1 = camera_rays(c + r * np.array([1.1, -1.45, 0.85]), c, res, res, fov_deg=70)
    o2, d2 = camera_rays(c + r * np.array([-0.2, 1.55, -1.15]), c + 0.1 * r, res, res, fov_deg=65,
                         normalize=False)
    o3, d3 = random_rays(n_random, rng, center=c, radius=1.3 * r, aim_radius=r)
    return np.concatenate([o1, o2, o3]), np.concatenate([d1, d2, d3])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["soup", "soup_small", "icosphere", "box", "torus",
                                  "cube_unwelded", "icosphere_far"])
def test_matches_reference(name, method):
    sc = scene(name, method)
    v, f, _ = sc
    o, d = _mixed_rays(v, seed=zlib.crc32(name.encode()) % 1000)
    hit = trace(sc, o, d)
    ref = brute_force(v, f, o, d)
    assert_matches_reference(hit, ref, o, d, what=name, mesh=(v, f))
    scale = np.abs(v).max()
    hit_points_consistent(v, f, hit, o, d, tol=1e-5 * scale * np.abs(d).max())
    assert (hit.prim >= 0).mean() > (0.05 if name == "soup_small" else 0.2)  # hits exercised


@pytest.mark.parametrize("method", METHODS)
def test_large_soup_parallel_build(method):
    """100k triangles: the builder's parallel binning (ranges >= 65536) and
    parallel subtree paths."""
    rng = np.random.default_rng(15)
    v, f = random_soup(100_000, rng, size=0.02)
    sc = (v, f, jr.build_bvh(v, f, method=method))
    o, d = random_rays(300, rng)
    hit = trace(sc, o, d)
    assert_matches_reference(hit, brute_force(v, f, o, d), o, d, min_frac=1.0, what="100k",
                             mesh=(v, f))


@pytest.mark.parametrize("method", METHODS)
def test_pathological_bvh_inputs(method):
    """Many identical triangles (no centroid extent: median splits) and a chain
    of nested triangles at scales 2^-k (a deep SAH tree)."""
    tri = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float64)
    v = np.tile(tri, (3000, 1)).astype(np.float32)
    f = np.arange(9000, dtype=np.int32).reshape(-1, 3)
    o = np.array([[0.2, 0.3, 1], [0.7, 0.7, 1], [0.1, 0.1, -2]], np.float32)
    d = np.array([[0.01, 0.02, -1], [0.01, 0.02, -1], [0.01, 0.02, 1]], np.float32)
    hit = trace((v, f, jr.build_bvh(v, f, method=method)), o, d)
    np.testing.assert_array_equal(hit.prim >= 0, [True, False, True])
    np.testing.assert_allclose(hit.t[[0, 2]], [1, 2], rtol=1e-6)
    k = np.arange(120)
    s = 2.0 ** -k
    v = (tri[None] * s[:, None, None] + np.array([0, 0, 1e-3]) * k[:, None, None])
    v = v.reshape(-1, 3).astype(np.float32)
    f = np.arange(len(v), dtype=np.int32).reshape(-1, 3)
    o = np.c_[0.25 * s, 0.25 * s, np.full(120, 5.0)].astype(np.float32)
    d = np.tile([[1e-7, 1e-7, -1]], (120, 1)).astype(np.float32)
    hit = trace((v, f, jr.build_bvh(v, f, method=method)), o, d)
    assert_matches_reference(hit, brute_force(v, f, o, d), o, d, min_frac=1.0, what="chain",
                             mesh=(v, f))
    assert np.all(hit.prim >= 0)


def test_unnormalized_directions_scale_t():
    v, f, _ = scene("icosphere")
    o, d = _mixed_rays(v, seed=5, n_random=2000, res=16)
    h1 = trace("icosphere", o, d)
    h3 = trace("icosphere", o, (4 * d).astype(np.float32))  # exact scaling by 4
    np.testing.assert_array_equal(h1.prim, h3.prim)
    m = h1.prim >= 0
    np.testing.assert_allclose(h3.t[m] * 4, h1.t[m], rtol=1e-6)
    np.testing.assert_allclose(h3.b1, h1.b1, atol=1e-6)
    np.testing.assert_allclose(h3.b2, h1.b2, atol=1e-6)


# --------------------------------------------------------------------------
# Watertightness: rays through shared edges and vertices.


# Rays with an exactly zero direction component whose origin lies on a BVH box
# plane of that axis: (lo - o) * (1 / 0) = NaN in the slab test. Before cef3aa1
# (safe reciprocal) such boxes were reported missed, so nearer hits were skipped
# (the far side was returned) and, with bdf5ca8, rays escaped closed meshes
# (octahedron, o = 0, d = (1, 0, 0)). The tests marked ZERO_COMPONENT guard it.
ZERO_COMPONENT = "zero direction components with the origin on a BVH box plane"


def _incidence(v, f):
    """Edge midpoints and vertices (float64) with the normals of all faces that
    touch them, matching vertices by position (so unwelded meshes work too).
    Returns points (P, 3) and normals (P, M, 3) padded with NaN."""
    _, key = np.unique(v, axis=0, return_inverse=True)
    key = key.reshape(-1)
    fk = key[f]
    n = face_normals(v, f)
    pos = {}
    for i, k in enumerate(key):
        pos.setdefault(int(k), v[i].astype(np.float64))
    items = {}
    for fi, (a, b, c) in enumerate(fk):
        for k in (a, b, c):
            items.setdefault(("v", int(k)), []).append(fi)
        for x, y in ((a, b), (b, c), (c, a)):
            items.setdefault(("e", min(x, y), max(x, y)), []).append(fi)
    pts, nrm = [], []
    m = max(len(x) for x in items.values())
    for k, faces_ in items.items():
        p = pos[k[1]] if k[0] == "v" else 0.5 * (pos[k[1]] + pos[k[2]])
        pts.append(p)
        nn = np.full((m, 3), np.nan)
        nn[: len(faces_)] = n[faces_]
        nrm.append(nn)
    return np.array(pts), np.array(nrm)


def _entering_directions(normals, k, rng, min_cos=0.25):
    """k unit directions per point with dot(d, n) <= -min_cos for every incident
    face normal n: rays that cross the surface transversally, inward."""
    mean = np.nanmean(normals, axis=1)
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    out = np.empty((normals.shape[0], k, 3))
    todo = np.ones((normals.shape[0], k), bool)
    for _ in range(200):
        d = -mean[:, None] + 0.5 * rng.normal(size=out.shape)
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        cos = np.einsum("pkc,pmc->pkm", d, np.nan_to_num(normals))
        cos = np.where(np.isnan(normals[:, None, :, 0]), -1.0, cos)
        ok = todo & np.all(cos <= -min_cos, axis=-1)
        out[ok] = d[ok]
        todo &= ~ok
        if not todo.any():
            return out
    raise RuntimeError("could not sample entering directions")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", CLOSED)
def test_no_leaks_through_edges_and_vertices_from_outside(name, method):
    """Rays aimed at every edge midpoint and every vertex of a closed mesh,
    entering transversally from outside, from 4 random directions each: none may
    miss, and the hit must be the reference's first hit (i.e. at the aimed point
    for convex meshes, not the far side)."""
    sc = scene(name, method)
    v, f, _ = sc
    rng = np.random.default_rng(7)
    pts, nrm = _incidence(v, f)
    d = _entering_directions(nrm, 4, rng)
    o = (pts[:, None] - 2.0 * d).reshape(-1, 3).astype(np.float32)
    d = d.reshape(-1, 3).astype(np.float32)
    hit = trace(sc, o, d)
    miss = np.nonzero(hit.prim < 0)[0]
    assert miss.size == 0, f"{miss.size} rays leaked through {name}\n" + _describe(
        miss, hit, brute_force(v, f, o, d), o, d)
    ref = brute_force(v, f, o, d)
    assert_matches_reference(hit, ref, o, d, min_frac=1.0, what=name, mesh=(v, f))
    if name in CONVEX:
        np.testing.assert_allclose(hit.t, 2.0, rtol=1e-5)
    # the same with t_max just beyond the first hit (BVH boxes culled by t_max)
    hit2 = trace(sc, o, d, (ref[0] * (1 + 1e-3)).astype(np.float32))
    assert np.all(hit2.prim >= 0), "leak with a finite t_max"
    np.testing.assert_allclose(hit2.t, hit.t, rtol=1e-6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["box", "cube_unwelded", "octahedron"])
def test_no_leaks_exact_edge_and_vertex_hits(name, method):
    """Meshes with dyadic vertices: origin and direction are chosen so that the
    ray passes *exactly* through the edge point or vertex (in exact arithmetic),
    the case where a non-watertight test can fail on both neighbours. Direction
    components along the edge are often exactly 0 (ZERO_COMPONENT)."""
    sc = scene(name, method)
    v, f, _ = sc
    rng = np.random.default_rng(11)
    pts, nrm = _incidence(v, f)
    # more points on each edge: quarter points (dyadic for these meshes)
    d = _entering_directions(nrm, 16, rng)
    d = np.round(d * 16) / 16
    cos = np.einsum("pkc,pmc->pkm", d / np.linalg.norm(d, axis=-1, keepdims=True),
                    np.nan_to_num(nrm))
    cos = np.where(np.isnan(nrm[:, None, :, 0]), -1.0, cos)
    keep = np.all(cos <= -0.1, axis=-1)
    o = pts[:, None] - 2.0 * d  # exact: dyadic arithmetic
    o, d = o[keep], (2.0 * d)[keep]
    assert o.shape[0] > 10 * pts.shape[0]
    o32, d32 = o.astype(np.float32), d.astype(np.float32)
    np.testing.assert_array_equal(o32.astype(np.float64), o)  # exactly representable
    np.testing.assert_array_equal(d32.astype(np.float64), d)
    hit = trace(sc, o32, d32)
    assert np.all(hit.prim >= 0), f"{(hit.prim < 0).sum()} exact edge/vertex rays leaked"
    np.testing.assert_allclose(hit.t, 1.0, rtol=1e-6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", CLOSED)
def test_rays_from_inside_through_edges_and_vertices(name, method):
    """From interior points outward through every edge midpoint and vertex:
    every ray must hit (a closed mesh has no gaps), at the reference's t. The
    interior points avoid the coordinate planes through the vertices; the mesh
    centre itself is tested below."""
    _check_rays_from_inside(name, method, centre=False)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", CONVEX)
def test_rays_from_centre_through_edges_and_vertices(name, method):
    """From the mesh centre (the origin) outward through every edge midpoint
    and vertex: every ray must hit. The icosphere's and octahedron's vertices
    lie on the coordinate planes, so many of these directions have exact zero
    components with the origin on BVH box planes (ZERO_COMPONENT)."""
    _check_rays_from_inside(name, method, centre=True)


def _check_rays_from_inside(name, method, centre):
    sc = scene(name, method)
    v, f, _ = sc
    pts, _ = _incidence(v, f)
    if centre:
        origins = [np.zeros_like(pts)]
    elif name == "torus":
        # points near the tube's core circle are inside; start near the core point
        # closest to each target (slightly off the coordinate planes)
        ang = np.arctan2(pts[:, 1], pts[:, 0]) + 0.0123
        origins = [np.stack([np.cos(ang), np.sin(ang), np.full_like(ang, 0.0321)], -1)]
    else:
        c = v.astype(np.float64).mean(0)
        origins = [np.broadcast_to(c + [0.0123, -0.0234, 0.0345], pts.shape),
                   np.broadcast_to(c + [0.1, -0.05, 0.2], pts.shape),
                   np.broadcast_to(c + [-0.3, 0.25, -0.1], pts.shape)]
    o = np.concatenate(origins).astype(np.float32)
    d = (np.concatenate([pts] * len(origins)) - o).astype(np.float32)
    hit = trace(sc, o, d)
    assert np.all(hit.prim >= 0), f"{(hit.prim < 0).sum()} rays from inside escaped {name}"
    ref = brute_force(v, f, o, d)
    assert_matches_reference(hit, ref, o, d, min_frac=1.0, what=name, mesh=(v, f))


def _axis_zero_vertex_rays(v, f, seed):
    """Rays aimed at the vertices with one direction component exactly 0, so
    the origin shares that coordinate with the vertex (and with the faces of
    the BVH boxes that end at the vertex), entering transversally."""
    rng = np.random.default_rng(seed)
    vn = np.zeros((len(v), 3))
    fn = face_normals(v, f)
    for k in range(3):
        np.add.at(vn, f[:, k], fn)
    vn /= np.linalg.norm(vn, axis=1, keepdims=True)
    os_, ds = [], []
    for ax in range(3):
        d = rng.normal(size=(len(v), 4, 3))
        d[..., ax] = 0
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        cos = np.einsum("vkc,vc->vk", d, vn)
        d = np.where(cos[..., None] > 0, -d, d)
        ok = np.abs(cos) > 0.3
        os_.append((v[:, None] - 3 * d)[ok])
        ds.append(d[ok])
    return np.concatenate(os_).astype(np.float32), np.concatenate(ds).astype(np.float32)




@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["icosphere", "torus"])
def test_zero_direction_component_rays_find_nearest_hit(name, method):
    """ZERO_COMPONENT: rays aimed at vertices with one direction component
    exactly 0 find the nearest hit, not the far side."""
    sc = scene(name, method)
    v, f, _ = sc
    o, d = _axis_zero_vertex_rays(v, f, seed=0)
    ref = brute_force(v, f, o, d)
    hit = trace(sc, o, d)
    assert_matches_reference(hit, ref, o, d, min_frac=1.0, what=name, mesh=(v, f))
    hit = trace(sc, o, d, (ref[0] * (1 + 1e-3)).astype(np.float32))
    assert np.all(hit.prim >= 0)


@pytest.mark.parametrize("method", METHODS)
def test_zero_direction_component_single_triangle(method):
    """ZERO_COMPONENT, minimal: one triangle with an edge on the plane x = 0 (its
    BVH box has lo.x = 0) and a ray in that plane (o.x = 0, d.x = +0) through the
    edge, hitting it at t = 1, whatever t_max (it used to miss with t_max = 10)."""
    v = np.array([[0, -1, 0], [0, 1, 0], [1, 0, 0]], np.float32)
    f = np.array([[0, 1, 2]], np.int32)
    sc = (v, f, jr.build_bvh(v, f, method=method))
    o = np.array([[0, 0, 1]] * 3, np.float32)
    d = np.array([[0, 0, -1], [0, 0, -3], [1e-30, 0, -1]], np.float32)
    for t_max in (None, np.float32(10)):
        hit = trace(sc, o, d, t_max)
        np.testing.assert_array_equal(hit.prim, 0)
        np.testing.assert_allclose(hit.t * [1, 3, 1], 1, rtol=1e-6)




@pytest.mark.parametrize("method", METHODS)
def test_signed_zero_direction_component_single_triangle(method):
    """Minimal reproducer: triangle (0,-1,0), (0,1,0), (1,0,0) (box lo.x = 0),
    o = (0, 0, 1): d = (0, 0, -1) hits at t = 1, d = (-0.0, 0, -1) misses; and
    mirrored, triangle (0,-1,0), (0,1,0), (-1,0,0) (box hi.x = 0): d = (-0.0, 0,
    -1) hits, d = (0, 0, -1) misses."""
    o = np.array([[0, 0, 1]] * 2, np.float32)
    d = np.array([[0, 0, -1], [-0.0, 0, -1]], np.float32)
    for x in (1, -1):
        v = np.array([[0, -1, 0], [0, 1, 0], [x, 0, 0]], np.float32)
        f = np.array([[0, 1, 2]], np.int32)
        hit = trace((v, f, jr.build_bvh(v, f, method=method)), o, d)
        np.testing.assert_array_equal(hit.prim, 0, err_msg=f"apex x = {x}")


@pytest.mark.parametrize("method", METHODS)
def test_zero_direction_component_ray_stays_in_closed_meshes(method):
    """ZERO_COMPONENT: from the centre of the closed octahedron along +x (through
    its vertex (1, 0, 0)), and from the tube's core point (1, 0, 0) of
    torus(1.0, 0.25, 8, 6) along -x (the inner wall is at t = 0.25, the far side
    of the torus at 1.75): no escape, nearest hit."""
    v, f = octahedron()
    sc = (v, f, jr.build_bvh(v, f, method=method))
    o = np.zeros((3, 3), np.float32)
    d = np.array([[1, 1e-30, 1e-30], [1, 0, 0], [0, 0, -1]], np.float32)
    hit = trace(sc, o, d)
    np.testing.assert_array_equal(hit.prim >= 0, True)
    np.testing.assert_allclose(hit.t, 1, rtol=1e-6)
    v, f = torus(1.0, 0.25, 8, 6)
    sc = (v, f, jr.build_bvh(v, f, method=method))
    o = np.array([[1, 0, 0], [1, 0, 0]], np.float32)
    d = np.array([[-1, 0, 0], [-1, 1e-30, 0]], np.float32)
    hit = trace(sc, o, d)
    np.testing.assert_allclose(hit.t, 0.25, rtol=1e-5)


# --------------------------------------------------------------------------
# Rays that start on surfaces.

SELF_EPS = 1e-4


def _check_surface_rays(name, side, n=2000, seed=0, method="sah"):
    """Rays leaving a random interior point p of face s (barycentrics >= 0.05).

    Because p is rounded to float32 it lies up to ~1 ulp off the plane of s, so
    a kernel without an epsilon may legitimately report s itself at a tiny t: a
    *self-hit*. The rule tested here:

    * s is never reported at t > SELF_EPS (= 1e-4); at t <= SELF_EPS it is a
      self-hit and allowed;
    * every other result (a miss, or a hit on another face) agrees with the
      reference that ignores s (`brute_force(..., exclude=s)`);
    * rays that self-hit are traced again from p + 1e-3 d and must agree with the
      reference (ignoring s) from there;
    * pointing into a closed mesh every ray hits (after that re-trace), and
      pointing out of a convex mesh every ray misses (or self-hits).
    """
    sc = scene(name, method)
    v, f, _ = sc
    rng = np.random.default_rng(seed)
    o, d, src = bounce_rays(v, f, n, rng, side=side)
    hit = trace(sc, o, d)
    selfhit = hit.prim == src
    assert np.all(hit.t[selfhit] <= SELF_EPS), "source face hit at t > 1e-4"
    ref = brute_force(v, f, o, d, exclude=src)
    rest = ~selfhit
    sub = lambda h, m: tuple(np.asarray(x)[m] for x in h)  # noqa: E731
    assert_matches_reference(jr.Hit(*sub(hit, rest)), sub(ref, rest), o[rest], d[rest],
                             what=f"{name} {side}", mesh=(v, f))
    o2 = (o[selfhit] + 1e-3 * d[selfhit]).astype(np.float32)
    d2 = d[selfhit]
    hit2 = trace(sc, o2, d2)
    ref2 = brute_force(v, f, o2, d2, exclude=src[selfhit])
    assert_matches_reference(hit2, ref2, o2, d2, min_frac=1.0, what=f"{name} {side} re-traced",
                             mesh=(v, f))
    if side == "in" and name in CLOSED:
        assert np.all(hit.prim[rest] >= 0) and np.all(hit2.prim >= 0), "inward ray escaped"
    if side == "out" and name in CONVEX:
        assert np.all(hit.prim[rest] < 0), "outward ray from a convex surface hit something"
    return selfhit.mean()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["icosphere", "box", "torus", "cube_unwelded", "soup"])
def test_rays_leaving_surface_same_side(name, method):
    _check_surface_rays(name, "out", seed=1, method=method)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["icosphere", "box", "torus", "cube_unwelded"])
def test_rays_from_surface_into_closed_mesh(name, method):
    _check_surface_rays(name, "in", seed=2, method=method)


def test_rays_from_exact_surface_points_box():
    """Origins exactly on the box's faces, edges and corners (representable):
    t = 0 is never a hit; outward rays miss, inward rays hit the far side at the
    exact distance."""
    name = "box"
    o = np.array([[0.25, -0.5, 1], [0.75, 0.5, 1], [1, 0.25, 1], [1, 1, 1], [-1, 0.5, -0.125],
                  [0.5, -1, -1]], np.float32)
    d_out = np.array([[0.125, 0.25, 1], [-0.5, 0.25, 0.75], [1, 0.5, 1], [1, 1, 1],
                      [-1, 0.5, 0.25], [0.25, -1, -1]], np.float32)
    hit = trace(name, o, d_out)
    np.testing.assert_array_equal(hit.prim, -1)
    d_in = np.array([[0, 0.5, -1], [0.25, 0, -1], [-1, -0.5, -1], [-1, -1, -1], [1, 0.25, -0.5],
                     [-0.5, 1, 1]], np.float32)
    hit = trace(name, o, d_in)
    v, f, _ = scene(name)
    ref = brute_force(v, f, o, d_in, t_min=1e-6)
    assert np.all(hit.prim >= 0)
    np.testing.assert_allclose(hit.t, ref[0], rtol=1e-6)


# --------------------------------------------------------------------------
# Grazing rays, rays in a face's plane, back faces.


@pytest.mark.parametrize("name", ["icosphere", "torus", "box", "soup"])
@pytest.mark.parametrize("angle", [1e-3, 1e-2, 0.1])
def test_grazing_rays(name, angle):
    """Rays meeting a face's interior at a small angle. Prims must agree with the
    reference as usual; t and the barycentrics are ill-conditioned here and get
    the grazing allowance of the module docstring (cos = sin(angle))."""
    v, f, _ = scene(name)
    rng = np.random.default_rng(int(angle * 1e4))
    p, src, _, _, n = surface_points(v, f, 600, rng, margin=0.1)
    tang = np.cross(n, rng.normal(size=n.shape))
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    side = rng.choice([-1, 1], size=(len(n), 1))  # +1: from outside the face's plane
    d = np.cos(angle) * tang - np.sin(angle) * n * side
    o = (p - 0.25 * d).astype(np.float32)
    d = d.astype(np.float32)
    hit = trace(name, o, d)
    ref = brute_force(v, f, o, d)
    assert_matches_reference(hit, ref, o, d, what=f"{name} {angle}", mesh=(v, f))
    # from outside its plane, the aimed face is reached first on a convex mesh
    if name in CONVEX:
        above = side[:, 0] > 0
        assert np.mean(hit.prim[above] == src[above]) > 0.999


def test_ray_in_axis_aligned_face_plane_misses_that_face():
    """Rays lying exactly in the plane of a box side (its normal component of d
    is 0, the origin on the plane) through that side's interior never report
    that side (the perpendicular sides may be hit where the ray crosses their
    edges); a lone triangle in the plane z = 0 is missed by rays in z = 0."""
    rng = np.random.default_rng(3)
    n = 300
    for name in ("box", "cube_unwelded"):
        v, f, _ = scene(name)
        nrm = face_normals(v, f)
        for axis in range(3):
            for sign in (-1.0, 1.0):
                side = np.nonzero(nrm[:, axis] == sign)[0]
                assert side.size == 2
                p = rng.uniform(-0.9, 0.9, (n, 3))
                p[:, axis] = sign
                d = rng.uniform(0.1, 1, (n, 3)) * rng.choice([-1, 1], (n, 3))
                d[:, axis] = 0
                o = (p - 3 * d).astype(np.float32)
                hit = trace(name, o, d.astype(np.float32))
                assert not np.isin(hit.prim, side).any(), f"{name}: in-plane side reported"
    v, f, _ = scene("single")
    p = np.c_[rng.uniform(0.05, 0.45, (n, 2)), np.zeros(n)]
    d = np.c_[rng.normal(size=(n, 2)), np.zeros(n)]
    hit = trace("single", (p - d).astype(np.float32), d.astype(np.float32))
    np.testing.assert_array_equal(hit.prim, -1)


def _general_in_plane_rays(n, rng):
    """Rays lying exactly in the plane x + y + z = 1 (dyadic origins and
    directions with d . (1, 1, 1) = 0 exactly), through interior points of the
    triangle (1,0,0), (0,1,0), (0,0,1), with no zero direction component."""
    a = rng.integers(1, 14, (n, 3)).astype(np.float64)
    p = a / a.sum(1, keepdims=True)
    p = np.round(p * 256) / 256
    p[:, 2] = 1 - p[:, 0] - p[:, 1]  # exactly in the plane, still interior
    assert np.all(p > 0)
    d = rng.integers(1, 9, (n, 3)).astype(np.float64) * rng.choice([-1, 1], (n, 3))
    d[:, 2] = -d[:, 0] - d[:, 1]
    d[d[:, 2] == 0, 1] *= 2
    d[:, 2] = -d[:, 0] - d[:, 1]
    assert np.all(d != 0)
    o = p - 2 * d
    o32, d32 = o.astype(np.float32), d.astype(np.float32)
    assert np.all(o32.astype(np.float64).sum(1) == 1) and np.all(d32.astype(np.float64).sum(1) == 0)
    return o32, d32




def test_ray_in_general_face_plane_misses_that_face():
    """Minimal reproducer: triangle (1,0,0), (0,1,0), (0,0,1), o = (-7.578125,
    10.2109375, -1.6328125), d = (4, -5, 1) (both exactly in x + y + z = 1)
    reports a hit at t = 1.9088542, b = (0.6667, 0.2708). On the octahedron that
    face must not be reported either."""
    rng = np.random.default_rng(3)
    o, d = _general_in_plane_rays(512, rng)
    v, f, _ = scene("octahedron")
    face = int(np.nonzero(np.all(face_normals(v, f) > 0, axis=1))[0][0])
    hit = trace("octahedron", o, d)
    oct_ok = not np.any(hit.prim == face)
    tri_v = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    tri_f = np.array([[0, 1, 2]], np.int32)
    single = (tri_v, tri_f, jr.build_bvh(tri_v, tri_f))
    hit = trace(single, o, d)
    one = trace(single, np.array([[-7.578125, 10.2109375, -1.6328125]], np.float32),
                np.array([[4, -5, 1]], np.float32))
    assert one.prim[0] == -1, f"in-plane ray hit: {one}"
    np.testing.assert_array_equal(hit.prim, -1)
    assert oct_ok


def test_back_faces_hit():
    """Triangles are two-sided: the same face is hit from both sides with the
    same barycentrics, regardless of winding."""
    v, f, _ = scene("single")
    rng = np.random.default_rng(4)
    b = rng.uniform(0.05, 0.45, (200, 2))
    p = np.c_[b[:, 0], b[:, 1], np.zeros(200)]
    d = rng.normal(size=(200, 3))
    d[:, 2] = np.abs(d[:, 2]) + 0.2
    o_front = (p + d).astype(np.float32)
    o_back = (p - d).astype(np.float32)
    hf = trace("single", o_front, (-d).astype(np.float32))
    hb = trace("single", o_back, d.astype(np.float32))
    for h in (hf, hb):
        np.testing.assert_array_equal(h.prim, 0)
        np.testing.assert_allclose(h.t, 1, rtol=1e-5)
        np.testing.assert_allclose(h.b1, b[:, 0], atol=1e-5)
        np.testing.assert_allclose(h.b2, b[:, 1], atol=1e-5)
    # reversed winding: same geometry, same hits
    fr = f[:, ::-1].copy()
    hr = trace((v, fr, jr.build_bvh(v, fr)), o_front, (-d).astype(np.float32))
    np.testing.assert_array_equal(hr.prim, 0)
    np.testing.assert_allclose(hr.t, hf.t, rtol=1e-6)


def test_back_faces_from_inside_closed_mesh():
    v, f, _ = scene("icosphere")
    rng = np.random.default_rng(5)
    o = (rng.uniform(-0.5, 0.5, (3000, 3))).astype(np.float32)
    d = rng.normal(size=(3000, 3)).astype(np.float32)
    hit = trace("icosphere", o, d)
    assert np.all(hit.prim >= 0)
    assert_matches_reference(hit, brute_force(v, f, o, d), o, d, what="inside", mesh=(v, f))


# --------------------------------------------------------------------------
# t_max.


@pytest.mark.parametrize("method", METHODS)
def test_t_max_limits_hits(method):
    name = "torus"
    sc = scene(name, method)
    v, f, _ = sc
    o, d = _mixed_rays(v, seed=9, n_random=6000, res=16)
    rng = np.random.default_rng(9)
    rt = brute_force(v, f, o, d)[0]
    # t_max well away (>= 1 %) from the first hit: below it or beyond it
    fac = np.where(rng.uniform(size=rt.shape) < 0.5, rng.uniform(0.3, 0.99, rt.shape),
                   rng.uniform(1.01, 2.0, rt.shape))
    t_max = np.where(np.isfinite(rt), rt * fac, rng.uniform(0.1, 10, rt.shape)).astype(np.float32)
    hit = trace(sc, o, d, t_max)
    ref = brute_force(v, f, o, d, t_max)
    assert_matches_reference(hit, ref, o, d, what="t_max", mesh=(v, f))
    assert (ref[1] < 0).sum() > 1000 and (ref[1] >= 0).sum() > 1000


def test_t_max_is_exclusive_and_special_values():
    v, f, _ = scene("box")
    o = np.array([[0.25, 0.5, 5]] * 6, np.float32)
    d = np.array([[0, 0, -1]] * 6, np.float32)
    d[:, :2] = [2.0**-20, 2.0**-21]
    t_exact = float(trace("box", o[:1], d[:1]).t[0])
    assert abs(t_exact - 4) < 1e-5
    four = np.float32(t_exact)
    t_max = np.array([four, np.nextafter(four, np.float32(np.inf)), np.inf, 0, -1, np.nan],
                     np.float32)
    hit = trace("box", o, d, t_max)
    np.testing.assert_array_equal(hit.prim >= 0, [False, True, True, False, False, False])
    # scalar (0-d) t_max broadcasts over the rays
    h = trace("box", o, d, np.float32(4.5))
    assert np.all(h.prim >= 0)
    h = trace("box", o, d, jnp.float32(3.5))
    assert np.all(h.prim < 0)
    # t_max = inf equals None
    h_none = trace("box", o, d)
    h_inf = trace("box", o, d, np.full(6, np.inf, np.float32))
    for a, b in zip(h_none, h_inf):
        np.testing.assert_array_equal(a, b)


def test_python_scalar_t_max():
    v, f, acc = scene("box")
    o = np.array([[0.25, 0.5, 5]], np.float32)
    d = np.array([[0.01, 0.02, -1]], np.float32)
    assert bool(jr.occluded(acc, v, f, o, d, 10.0)[0])


# --------------------------------------------------------------------------
# Bad input.


def test_non_finite_and_zero_rays_miss():
    v, f, _ = scene("icosphere")
    good_o = np.array([[0.01, 0.02, 5]], np.float32)
    good_d = np.array([[0.001, 0.002, -1]], np.float32)
    nan, inf = np.nan, np.inf
    bad_o = [[nan, 0, 5], [0, inf, 5], [-inf, 0, 5], [0, 0, 5], [0, 0, 5], [0, 0, 5], [0, 0, 5],
             [0, 0, 5], [0, 0, 0]]
    bad_d = [[0, 0, -1], [0, 0, -1], [0, 0, -1], [nan, 0, -1], [0, 0, -inf], [inf, inf, inf],
             [0, 0, 0], [-0.0, 0, -0.0], [0, 0, 0]]
    o = np.concatenate([good_o, np.array(bad_o, np.float32), good_o])
    d = np.concatenate([good_d, np.array(bad_d, np.float32), good_d])
    hit = trace("icosphere", o, d)
    assert hit.prim[0] >= 0 and hit.prim[-1] >= 0
    np.testing.assert_array_equal(hit.prim[1:-1], -1)
    np.testing.assert_array_equal(hit.t[1:-1], np.inf)
    np.testing.assert_array_equal(hit.b1[1:-1], 0)
    np.testing.assert_array_equal(hit.b2[1:-1], 0)


@pytest.mark.parametrize("method", METHODS)
def test_degenerate_triangles_never_hit(method):
    """Triangles with a repeated vertex or three equal vertices never hit, also
    for rays aimed exactly at their vertices; a valid triangle next to them still
    hits."""
    rng = np.random.default_rng(6)
    n = 200
    p = rng.uniform(-1, 1, (n, 3))
    q = p + rng.uniform(-0.3, 0.3, (n, 3))
    rep = np.stack([p, p, q], 1)
    same = np.stack([p, p, p], 1)
    perm = rng.permuted(np.tile([0, 1, 2], (n, 1)), axis=1)
    rep = np.take_along_axis(rep, perm[..., None], 1)
    good = np.array([[[-5, -5, 3], [5, -5, 3], [0, 5, 3]]], np.float64)
    tris = np.concatenate([rep, same, good]).astype(np.float32)
    v = tris.reshape(-1, 3)
    f = np.arange(len(v), dtype=np.int32).reshape(-1, 3)
    sc = (v, f, jr.build_bvh(v, f, method=method))
    aim = np.concatenate([v[:-3], tris[:-1].mean(1)]).astype(np.float64)  # degenerate ones
    aim = np.repeat(aim, 4, 0)
    o = (aim + rng.normal(size=aim.shape) * 2).astype(np.float32)
    d = (aim - o).astype(np.float32)
    hit = trace(sc, o, d)
    assert np.all((hit.prim < 0) | (hit.prim == len(f) - 1)), "a degenerate triangle was hit"
    ref = brute_force(v, f, o, d)
    assert_matches_reference(hit, ref, o, d, min_frac=1.0, what="degenerate", mesh=(v, f))
    h = trace(sc, np.array([[0.1, 0.2, 10]], np.float32), np.array([[0, 0.01, -1]], np.float32))
    assert h.prim[0] == len(f) - 1




def test_collinear_triangles_never_hit():
    """Minimal reproducer: v = [[0,0,0],[1,1,1],[2,2,2]], o = (-3,-2,-1),
    d = (3.5, 2.5, 1.5) (through (0.5, 0.5, 0.5)) hits at t = 1, b1 = 0.5."""
    v = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]], np.float32)
    f = np.array([[0, 1, 2]], np.int32)
    acc = jr.build_bvh(v, f)
    o = np.array([[-3, -2, -1]], np.float32)
    d = np.array([[3.5, 2.5, 1.5]], np.float32)
    assert int(jr.intersect(acc, v, f, o, d).prim[0]) == -1
    assert not bool(jr.occluded(acc, v, f, o, d)[0])


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_vertices_never_hit_and_do_not_break_others(method):
    v, f = icosphere(2)
    v = v.copy()
    v[5] = [np.nan, 0, 0]
    v[17] = [0, np.inf, 0]
    v[40] = [0, 0, -np.inf]
    bad_faces = np.nonzero(np.isin(f, [5, 17, 40]).any(axis=1))[0]
    assert bad_faces.size >= 15
    sc = (v, f, jr.build_bvh(v, f, method=method))
    rng = np.random.default_rng(8)
    o, d = random_rays(4000, rng, radius=2.0)
    # also aim at the healthy neighbours of the broken vertices
    aim = v[f[np.isin(f, [4, 6, 16, 18]).any(1)]].astype(np.float64).mean(1)
    o2 = (aim * 3).astype(np.float32)
    d2 = (aim - o2).astype(np.float32)
    o, d = np.concatenate([o, o2]), np.concatenate([d, d2])
    hit = trace(sc, o, d)
    assert not np.isin(hit.prim, bad_faces).any()
    assert_matches_reference(hit, brute_force(v, f, o, d), o, d, what="nan vertices", mesh=(v, f))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("num_vertices", [0, 5])
def test_empty_mesh(method, num_vertices):
    v = np.ones((num_vertices, 3), np.float32)
    f = np.zeros((0, 3), np.int32)
    acc = jr.build_bvh(v, f, method=method)
    assert acc.num_faces == 0
    o, d = random_rays(50, np.random.default_rng(0))
    hit = trace((v, f, acc), o, d)
    np.testing.assert_array_equal(hit.prim, -1)
    hit = as_np(_build_and_intersect(v, f, o, d, None))
    np.testing.assert_array_equal(hit.prim, -1)




def test_empty_mesh_gradients_are_zero():
    v = np.eye(3, dtype=np.float32)
    f = np.zeros((0, 3), np.int32)
    acc = jr.build_bvh(v, f)
    o = np.zeros((4, 3), np.float32)
    d = np.ones((4, 3), np.float32)
    g = jax.grad(lambda o_: jr.intersect(acc, v, f, o_, d).b1.sum())(o)
    np.testing.assert_array_equal(g, 0)


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4)])
def test_zero_rays(shape):
    v, f, acc = scene("icosphere")
    o = np.zeros(shape + (3,), np.float32)
    hit = jr.intersect(acc, v, f, o, o)
    for x, dt in zip(hit, (jnp.float32, jnp.int32, jnp.float32, jnp.float32)):
        assert x.shape == shape and x.dtype == dt
    occ = jr.occluded(acc, v, f, o, o, np.zeros(shape, np.float32))
    assert occ.shape == shape and occ.dtype == jnp.bool_
    hit = _intersect(acc, v, f, o, o, None)
    assert hit.t.shape == shape


def test_batch_shapes_preserved():
    v, f, acc = scene("icosphere")
    o, d = random_rays(24, np.random.default_rng(1))
    flat = as_np(jr.intersect(acc, v, f, o, d))
    hit = as_np(jr.intersect(acc, v, f, o.reshape(2, 3, 4, 3), d.reshape(2, 3, 4, 3)))
    for a, b in zip(hit, flat):
        assert a.shape == (2, 3, 4)
        np.testing.assert_array_equal(a.reshape(-1), b)
    one = as_np(jr.intersect(acc, v, f, o[0], d[0]))
    assert one.t.shape == () and one.prim == flat.prim[0]


def test_wrong_dtypes_raise_naming_the_parameter():
    v, f, acc = scene("box")
    o = np.zeros((4, 3), np.float32)
    d = np.ones((4, 3), np.float32)
    with pytest.raises(TypeError, match="vertices"):
        jr.build_bvh(v.astype(np.int32), f)
    with pytest.raises(TypeError, match="faces"):
        jr.build_bvh(v, f.astype(np.float32))
    with pytest.raises(TypeError, match="vertices"):
        jr.intersect(acc, v.astype(np.int32), f, o, d)
    with pytest.raises(TypeError, match="faces"):
        jr.intersect(acc, v, f.astype(np.float32), o, d)
    with pytest.raises(TypeError, match="origins"):
        jr.intersect(acc, v, f, o.astype(np.int32), d)
    with pytest.raises(TypeError, match="directions"):
        jr.intersect(acc, v, f, o, d.astype(np.int32))
    with pytest.raises(TypeError, match="t_max"):
        jr.intersect(acc, v, f, o, d, np.ones(4, np.int32))
    with pytest.raises(TypeError, match="origins"):
        jr.occluded(acc, v, f, o.astype(np.int32), d)
    with pytest.raises(TypeError, match="directions"):
        jr.occluded(acc, v, f, o, d.astype(bool))
    with pytest.raises(TypeError, match="accel"):
        jr.intersect((acc.nodes, acc.tris, acc.prim_ids), v, f, o, d)
    with pytest.raises(TypeError, match="accel"):
        jr.occluded(None, v, f, o, d)
    with pytest.raises(ValueError, match="accel"):
        jr.intersect(jr.Accel(acc.nodes.astype(jnp.float32), acc.tris, acc.prim_ids), v, f, o, d)
    # float64 and float16 inputs are fine (cast to float32)
    jr.intersect(acc, v.astype(np.float64), f.astype(np.int64), o.astype(np.float64),
                 d.astype(np.float16))


def test_wrong_shapes_raise_naming_the_parameter():
    v, f, acc = scene("box")
    o = np.zeros((4, 3), np.float32)
    d = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="vertices"):
        jr.build_bvh(v[:, :2], f)
    with pytest.raises(ValueError, match="vertices"):
        jr.build_bvh(v[None], f)
    with pytest.raises(ValueError, match="vertices"):
        jr.build_bvh(v.reshape(-1), f)
    with pytest.raises(ValueError, match="faces"):
        jr.build_bvh(v, f[:, :2])
    with pytest.raises(ValueError, match="faces"):
        jr.build_bvh(v, f.reshape(-1))
    with pytest.raises(ValueError, match="vertices"):
        jr.intersect(acc, np.zeros((8, 4), np.float32), f, o, d)
    with pytest.raises(ValueError, match="origins"):
        jr.intersect(acc, v, f, o[:, :2], d)
    with pytest.raises(ValueError, match="directions"):
        jr.intersect(acc, v, f, o, np.ones((4, 4), np.float32))
    with pytest.raises(ValueError, match="directions"):
        jr.intersect(acc, v, f, o, d[:3])
    with pytest.raises(ValueError, match="t_max"):
        jr.intersect(acc, v, f, o, d, np.ones(5, np.float32))
    with pytest.raises(ValueError, match="t_max"):
        jr.occluded(acc, v, f, o, d, np.ones((4, 1), np.float32))
    with pytest.raises(ValueError, match="origins"):
        jr.occluded(acc, v, f, np.zeros((4,), np.float32), d)
    # A BVH of another mesh would report that mesh's face indices.
    for query in (jr.intersect, jr.occluded):
        with pytest.raises(ValueError, match=rf"accel was built for {f.shape[0]} faces, but faces has 2"):
            query(acc, v, f[:2], o, d)


@pytest.mark.parametrize("bad_index", [-1, 8, 1000])
def test_out_of_range_faces_raise(bad_index):
    v, f, acc = scene("box")
    f = f.copy()
    f[7, 1] = bad_index
    with pytest.raises(ValueError, match=r"faces\[7\]"):
        jr.build_bvh(v, f)
    o = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"faces\[7\]"):
        jr.intersect(acc, v, f, o, o + 1)
    with pytest.raises(ValueError, match=r"faces\[7\]"):
        jr.occluded(acc, v, f, o, o + 1)


def test_out_of_range_faces_traced_raise_when_run():
    v, f, _ = scene("box")
    o = np.array([[0.1, 0.2, 5]], np.float32)
    d = np.array([[0.01, 0.02, -1]], np.float32)
    build = jax.jit(lambda v_, f_: jr.build_bvh(v_, f_).nodes)
    build(v, f).block_until_ready()  # fine with valid faces
    for bad in (-3, 8):
        fb = f.copy()
        fb[4, 2] = bad
        with pytest.raises(Exception, match=r"faces"):
            build(v, fb).block_until_ready()
        with pytest.raises(Exception):
            _build_and_intersect(v, fb, o, d, None).t.block_until_ready()


# --------------------------------------------------------------------------
# jit and vmap.


def _same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def vmap_scene():
    v, f, acc = scene("icosphere")
    rng = np.random.default_rng(10)
    o, d = random_rays(256, rng)
    t_max = rng.uniform(0.5, 4, 256).astype(np.float32)
    return v, f, acc, o, d, t_max


def test_jit_matches_eager(vmap_scene):
    v, f, acc, o, d, t_max = vmap_scene
    eager = jr.intersect(acc, v, f, o, d, t_max)
    _same(_intersect(acc, v, f, o, d, t_max), eager)
    _same(_build_and_intersect(v, f, o, d, t_max), eager)  # build_bvh inside jit
    occ = jr.occluded(acc, v, f, o, d, t_max)
    _same([_occluded(acc, v, f, o, d, t_max)], [occ])
    np.testing.assert_array_equal(occ, np.asarray(eager.prim) >= 0)
    # a BVH built under jit gives the same hits (the SAH builder's node numbering
    # depends on thread scheduling, so the node array itself may differ)
    acc_jit = jax.jit(jr.build_bvh)(v, f)
    _same([acc_jit.tris, acc_jit.prim_ids], [acc.tris, acc.prim_ids])
    _same(jr.intersect(acc_jit, v, f, o, d, t_max), eager)
    # LBVH: eager, under jit, and inside a jitted trace give the same hits
    build_lbvh = jax.jit(jr.build_bvh, static_argnames="method")
    acc_l = jr.build_bvh(v, f, method="lbvh")
    _same(jax.tree.leaves(build_lbvh(v, f, method="lbvh")), jax.tree.leaves(acc_l))
    hit_l = jr.intersect(acc_l, v, f, o, d, t_max)
    _same(_intersect(acc_l, v, f, o, d, t_max), hit_l)
    np.testing.assert_array_equal(np.asarray(jr.occluded(acc_l, v, f, o, d, t_max)),
                                  np.asarray(hit_l.prim) >= 0)
    with pytest.raises(ValueError, match="method"):
        jr.build_bvh(v, f, method="median")


def test_vmap_over_rays(vmap_scene):
    v, f, acc, o, d, t_max = vmap_scene
    eager = jr.intersect(acc, v, f, o, d, t_max)
    per_ray = lambda o_, d_, t_: jr.intersect(acc, v, f, o_, d_, t_)  # noqa: E731
    _same(jax.vmap(per_ray)(o, d, t_max), eager)
    _same(jax.jit(jax.vmap(per_ray))(o, d, t_max), eager)
    _same(jax.vmap(per_ray, in_axes=(1, 1, 0))(o.T, d.T, t_max), eager)
    out = jax.vmap(per_ray, in_axes=(0, 0, 0), out_axes=0)(o, d, t_max)
    _same(out, eager)
    nested = jax.vmap(jax.vmap(per_ray))(o.reshape(16, 16, 3), d.reshape(16, 16, 3),
                                         t_max.reshape(16, 16))
    _same([x.reshape(-1) for x in nested], eager)
    occ = jax.vmap(lambda o_, d_, t_: jr.occluded(acc, v, f, o_, d_, t_))(o, d, t_max)
    np.testing.assert_array_equal(occ, np.asarray(eager.prim) >= 0)


def test_vmap_over_camera_batches_shared_accel():
    v, f, acc = scene("torus")
    eyes = [(3, -2, 1.5), (-2.5, 2, 2), (0.5, 0.2, 3.5)]
    sets = [camera_rays(e, (0, 0, 0), 12, 10) for e in eyes]
    O = np.stack([s[0] for s in sets])  # (B, N, 3)
    D = np.stack([s[1] for s in sets])
    fn = lambda o_, d_: jr.intersect(acc, v, f, o_, d_)  # noqa: E731
    out = jax.jit(jax.vmap(fn))(O, D)
    out_eager = jax.vmap(fn)(O, D)
    for b in range(len(eyes)):
        ref = jr.intersect(acc, v, f, O[b], D[b])
        _same([x[b] for x in out], ref)
        _same([x[b] for x in out_eager], ref)
    occ = jax.vmap(lambda o_, d_: jr.occluded(acc, v, f, o_, d_))(O, D)
    np.testing.assert_array_equal(occ, np.asarray(out.prim) >= 0)
    # the shared accel is not mapped over: one kernel call on all B * N rays, no loop
    jaxpr = str(jax.make_jaxpr(jax.vmap(fn))(O, D))
    assert "while" not in jaxpr and jaxpr.count("jaxrender_intersect") == 1
    assert f"f32[{O.shape[0] * O.shape[1]}]" in jaxpr
    # (B, H, W, 3) image-shaped batches
    img = jax.vmap(fn)(O.reshape(3, 10, 12, 3), D.reshape(3, 10, 12, 3))
    _same([x.reshape(3, -1) for x in img], out)


def test_vmap_with_partially_batched_inputs(vmap_scene):
    v, f, acc, o, d, t_max = vmap_scene
    T = np.stack([t_max, 0.5 * t_max, np.full_like(t_max, np.inf)])
    out = jax.vmap(lambda t_: jr.intersect(acc, v, f, o, d, t_))(T)  # only t_max batched
    for b in range(3):
        _same([x[b] for x in out], jr.intersect(acc, v, f, o, d, T[b]))
    occ = jax.vmap(lambda t_: jr.occluded(acc, v, f, o, d, t_))(T)
    np.testing.assert_array_equal(occ, np.asarray(out.prim) >= 0)
    DD = np.stack([d, -d, 2 * d])
    out = jax.vmap(lambda d_: jr.intersect(acc, v, f, o, d_, t_max))(DD)  # only directions
    for b in range(3):
        _same([x[b] for x in out], jr.intersect(acc, v, f, o, DD[b], t_max))
    OO = np.stack([o, o + 0.1])
    out = jax.vmap(lambda o_: jr.intersect(acc, v, f, o_, d))(OO)  # only origins, no t_max
    for b in range(2):
        _same([x[b] for x in out], jr.intersect(acc, v, f, OO[b], d))
    ts = np.array([0.5, 1.5, np.inf], np.float32)  # scalar t_max per batch element
    out = jax.vmap(lambda t_: jr.intersect(acc, v, f, o, d, t_))(ts)
    for b in range(3):
        _same([x[b] for x in out], jr.intersect(acc, v, f, o, d, ts[b]))


def test_vmap_over_meshes_builds_per_mesh():
    v, f = icosphere(1)
    Vs = np.stack([v, 1.5 * v, v + 0.3]).astype(np.float32)
    o, d = random_rays(64, np.random.default_rng(12), radius=2.5)

    def one(vv):
        return jr.intersect(jr.build_bvh(vv, f), vv, f, o, d)

    out = jax.jit(jax.vmap(one))(Vs)
    for b in range(3):
        ref = jr.intersect(jr.build_bvh(Vs[b], f), Vs[b], f, o, d)
        _same([x[b] for x in out], ref)


# --------------------------------------------------------------------------
# Derivatives.


@pytest.fixture(scope="module")
def grad_scene():
    """icosphere(1) and rays that hit triangle interiors (barycentrics in
    [0.2, 0.6]) from outside, 0.5 to 1.5 away; plus their true hit data."""
    v, f = icosphere(1)
    rng = np.random.default_rng(13)
    n = 24
    prim = rng.choice(len(f), n, replace=False)
    b = rng.uniform(0.2, 0.4, (n, 2))
    tri = v[f[prim]].astype(np.float64)
    p = (1 - b.sum(1, keepdims=True)) * tri[:, 0] + b[:, :1] * tri[:, 1] + b[:, 1:] * tri[:, 2]
    nrm = face_normals(v, f)[prim]
    dirs = -nrm + 0.3 * rng.normal(size=(n, 3))
    dirs *= rng.uniform(0.7, 1.4, (n, 1)) / np.linalg.norm(dirs, axis=1, keepdims=True)
    o = (p - rng.uniform(0.5, 1.5, (n, 1)) * dirs).astype(np.float32)
    d = dirs.astype(np.float32)
    acc = jr.build_bvh(v, f)
    hit = as_np(jr.intersect(acc, v, f, o, d))
    np.testing.assert_array_equal(hit.prim, prim)  # the intended faces are hit first
    return v, f, acc, o, d


def _tbb(hit):
    return jnp.stack([hit.t, hit.b1, hit.b2])


def test_check_grads_vertices(grad_scene):
    v, f, _, o, d = grad_scene
    fn = jax.jit(lambda vv: _tbb(jr.intersect(jr.build_bvh(vv, f), vv, f, o, d)))
    check_grads(fn, (jnp.asarray(v),), order=1, modes=("fwd", "rev"), eps=1e-3, atol=2e-2,
                rtol=2e-2)


def test_check_grads_origins_directions(grad_scene):
    v, f, acc, o, d = grad_scene
    fo = jax.jit(lambda oo: _tbb(jr.intersect(acc, v, f, oo, d)))
    fd = jax.jit(lambda dd: _tbb(jr.intersect(acc, v, f, o, dd)))
    check_grads(fo, (jnp.asarray(o),), order=1, modes=("fwd", "rev"), eps=1e-3, atol=2e-2,
                rtol=2e-2)
    check_grads(fd, (jnp.asarray(d),), order=1, modes=("fwd", "rev"), eps=1e-3, atol=2e-2,
                rtol=2e-2)
    both = jax.jit(lambda oo, dd: _tbb(jr.intersect(acc, v, f, oo, dd)))
    check_grads(both, (jnp.asarray(o), jnp.asarray(d)), order=1, modes=("fwd", "rev"),
                eps=1e-3, atol=2e-2, rtol=2e-2)


def test_finite_differences_vertices(grad_scene):
    """Central differences of t, b1, b2 for every vertex coordinate (all
    perturbed meshes traced in one vmap, i.e. with per-mesh BVHs) against
    jacfwd and jacrev."""
    v, f, _, o, d = grad_scene
    fn = lambda vv: _tbb(jr.intersect(jr.build_bvh(vv, f), vv, f, o, d))  # noqa: E731
    eps = 1e-3
    V = v.shape[0]
    basis = np.eye(3 * V, dtype=np.float32).reshape(3 * V, V, 3) * eps
    plus = jax.jit(jax.vmap(fn))(v[None] + basis)
    minus = jax.jit(jax.vmap(fn))(v[None] - basis)
    fd = np.asarray((plus - minus) / (2 * eps))  # (3V, 3, N)
    fd = np.moveaxis(fd, 0, -1).reshape(3, -1, V, 3)
    jf = np.asarray(jax.jit(jax.jacfwd(fn))(v))  # (3, N, V, 3)
    jr_ = np.asarray(jax.jit(jax.jacrev(fn))(v))
    np.testing.assert_allclose(jf, fd, atol=3e-3, rtol=1e-2)
    np.testing.assert_allclose(jr_, jf, atol=1e-5, rtol=1e-5)
    # only the three vertices of each ray's face move its hit
    prim = np.asarray(jr.intersect(jr.build_bvh(v, f), v, f, o, d).prim)
    for i, p in enumerate(prim):
        others = np.setdiff1d(np.arange(V), f[p])
        assert np.all(jf[:, i, others] == 0)
        assert np.abs(jf[0, i, f[p]]).max() > 1e-3


def test_grad_jit_vmap_agree(grad_scene):
    v, f, acc, o, d = grad_scene

    def loss(vv, oo, dd):
        h = jr.intersect(acc, vv, f, oo, dd)
        return jnp.sum(h.t) + 2 * jnp.sum(h.b1) - jnp.sum(h.b2)

    g = jax.grad(loss, argnums=(0, 1, 2))(v, o, d)
    gj = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(v, o, d)
    for a, b in zip(g, gj):
        # Absolute slack in units of the largest entry: XLA:GPU contracts
        # the jitted products into FMAs, so an entry that is a difference
        # of larger terms moves by a few ulps of those terms (measured
        # 1.5e-6 on an entry of 3e-3 beside entries of 4.7, H100).
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(b).max())))
    per_ray = jax.jit(jax.vmap(jax.grad(lambda vv, oo, dd: loss(vv, oo[None], dd[None]),
                                        argnums=(0, 1, 2)), in_axes=(None, 0, 0)))(v, o, d)
    np.testing.assert_allclose(per_ray[0].sum(0), g[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(per_ray[1], g[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(per_ray[2], g[2], rtol=1e-5, atol=1e-6)
    grad_od = jax.grad(lambda oo, dd: loss(v, oo[None], dd[None]), argnums=(0, 1))
    pj = jax.jit(jax.vmap(grad_od))(o, d)
    np.testing.assert_allclose(pj[0], g[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pj[1], g[2], rtol=1e-5, atol=1e-6)


def test_jvp_vjp_dot_product(grad_scene):
    v, f, acc, o, d = grad_scene
    rng = np.random.default_rng(14)
    # include misses: their tangents must vanish and not disturb the identity
    o = np.concatenate([o, np.array([[5, 5, 5], [np.nan, 0, 0]], np.float32)])
    d = np.concatenate([d, np.array([[1, 0, 0], [0, 0, 1]], np.float32)])
    fn = jax.jit(lambda vv, oo, dd: _tbb(jr.intersect(acc, vv, f, oo, dd)))
    u = tuple(rng.normal(size=x.shape).astype(np.float32) for x in (v, o, d))
    w = rng.normal(size=(3, o.shape[0])).astype(np.float32)
    _, jvp_out = jax.jvp(fn, (v, o, d), u)
    _, vjp_fn = jax.vjp(fn, v, o, d)
    vjp_out = vjp_fn(jnp.asarray(w))
    lhs = float(jnp.sum(w * jvp_out))
    rhs = float(sum(jnp.sum(a * b) for a, b in zip(vjp_out, u)))
    assert np.isfinite(lhs) and abs(lhs - rhs) <= 1e-4 * max(1.0, abs(lhs))
    np.testing.assert_array_equal(np.asarray(jvp_out)[:, -2:], 0)
    np.testing.assert_array_equal(np.asarray(vjp_out[1])[-2:], 0)
    np.testing.assert_array_equal(np.asarray(vjp_out[2])[-2:], 0)


def test_misses_have_zero_gradients_even_with_nan_rays(grad_scene):
    v, f, acc, _, _ = grad_scene
    o = np.array([[0.01, 0.02, 5], [5, 5, 5], [np.nan, 0, 5], [0, np.inf, 5], [0, 0, 5],
                  [0, 0, 5]], np.float32)
    d = np.array([[0.001, 0.002, -1], [1, 0, 0], [0, 0, -1], [0, 0, -1], [0, 0, 0],
                  [np.nan, np.nan, np.nan]], np.float32)

    def loss(vv, oo, dd):
        t = jr.intersect(acc, vv, f, oo, dd).t
        return jnp.sum(jnp.where(jnp.isfinite(t), t, 0.0))

    gv, go, gd = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(v, o, d)
    for g in (gv, go, gd):
        assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(go[1:], 0)
    np.testing.assert_array_equal(gd[1:], 0)
    assert np.abs(go[0]).max() > 0
    touched = np.unique(f[int(jr.intersect(acc, v, f, o[:1], d[:1]).prim[0])])
    gv = np.asarray(gv)
    assert np.all(gv[np.setdiff1d(np.arange(len(v)), touched)] == 0)
    assert np.abs(gv[touched]).max() > 0
    # forward mode, and b1/b2 too
    jac = jax.jit(jax.jacfwd(lambda oo: _tbb(jr.intersect(acc, v, f, oo, d))))(o)
    assert np.all(np.isfinite(jac))
    np.testing.assert_array_equal(np.asarray(jac)[:, 1:], 0)
    # only misses: gradient exactly zero everywhere
    gv = jax.jit(jax.grad(loss))(v, o[1:], d[1:])
    np.testing.assert_array_equal(gv, 0)


def test_occluded_is_not_differentiated(grad_scene):
    v, f, acc, o, d = grad_scene
    g = jax.grad(lambda oo: jnp.sum(jr.occluded(acc, v, f, oo, d).astype(jnp.float32)))(o)
    np.testing.assert_array_equal(g, 0)


# --------------------------------------------------------------------------
# CPU / GPU agreement (only where a GPU is present).


def _gpu_devices():
    try:
        return jax.devices("gpu")
    except RuntimeError:
        return []


@pytest.mark.skipif(not _gpu_devices(), reason="no GPU device")
@pytest.mark.parametrize("name", ["icosphere", "torus", "box", "soup"])
def test_cpu_gpu_agree(name):
    from jaxrender.geometry import HAS_CUDA_KERNELS

    if not HAS_CUDA_KERNELS:
        pytest.skip("jaxrender was built without the CUDA kernels")
    cpu, gpu = jax.devices("cpu")[0], _gpu_devices()[0]
    v, f, _ = scene(name)
    o, d = _mixed_rays(v, seed=21, n_random=6000, res=32)
    rng = np.random.default_rng(21)
    t_max = np.where(rng.uniform(size=len(o)) < 0.3, rng.uniform(0.5, 5, len(o)), np.inf)
    t_max = t_max.astype(np.float32)
    pts, nrm = _incidence(v, f) if name != "soup" else (None, None)

    def run(device):
        put = lambda x: jax.device_put(x, device)  # noqa: E731
        vv, ff, oo, dd, tt = map(put, (v, f, o, d, t_max))
        acc = jax.jit(jr.build_bvh)(vv, ff)
        hit = as_np(jax.jit(jr.intersect)(acc, vv, ff, oo, dd, tt))
        occ = np.asarray(jax.jit(jr.occluded)(acc, vv, ff, oo, dd, tt))
        assert list(acc.nodes.devices())[0] == device
        return hit, occ

    hc, oc = run(cpu)
    hg, og = run(gpu)
    check_invariants(hg, f.shape[0], t_max)
    np.testing.assert_array_equal(og, hg.prim >= 0)
    ref = (hc.t.astype(np.float64), hc.prim, hc.b1.astype(np.float64), hc.b2.astype(np.float64))
    assert_matches_reference(hg, ref, o, d, what=f"gpu vs cpu {name}", mesh=(v, f))
    assert_matches_reference(hg, brute_force(v, f, o, d, t_max), o, d, what=f"gpu vs ref {name}",
                             mesh=(v, f))
    if name in CLOSED:
        # watertightness on the GPU too (FMA contraction can break it)
        dirs = _entering_directions(nrm, 2, np.random.default_rng(22))
        oo = (pts[:, None] - 2.0 * dirs).reshape(-1, 3).astype(np.float32)
        dd = dirs.reshape(-1, 3).astype(np.float32)
        with jax.default_device(gpu):
            acc = jr.build_bvh(v, f)
            hit = as_np(jr.intersect(acc, v, f, oo, dd))
        assert np.all(hit.prim >= 0), "rays leaked through shared edges on the GPU"


def test_corrupted_accel_is_memory_safe():
    """A hostile Accel (random node words, out-of-range links and counts, every
    link pointing back at the root) must never crash, read out of bounds or
    hang: traversal bounds-checks every link and caps node visits. The results
    are meaningless but well-formed. (Run under ASan/UBSan: see RESULTS.md.)"""
    rng = np.random.default_rng(7)
    v, f = icosphere(2)
    good = jr.build_bvh(v, f)
    o = (rng.normal(size=(300, 3)) * 3).astype(np.float32)
    d = rng.normal(size=(300, 3)).astype(np.float32)
    for trial in range(12):
        nodes = np.array(good.nodes)
        if trial % 3 == 0:
            nodes = rng.integers(-2**31, 2**31 - 1, size=nodes.shape, dtype=np.int64).astype(np.int32)
        elif trial % 3 == 1:
            nodes[:, 24:28] = rng.integers(-3, nodes.shape[0] + 3, size=(nodes.shape[0], 4))
            nodes[:, 28:32] = rng.integers(-3, 10, size=(nodes.shape[0], 4))
        else:
            nodes[:, 24:32] = 0  # every slot an interior link to the root: a cycle
        acc = jr.Accel(jnp.asarray(nodes), good.tris, good.prim_ids)
        hit = jr.intersect(acc, v, f, o, d)
        occ = jr.occluded(acc, v, f, o, d)
        prim = np.asarray(hit.prim)
        assert ((prim >= -1) & (prim < f.shape[0])).all()
        assert np.asarray(occ).dtype == np.bool_
