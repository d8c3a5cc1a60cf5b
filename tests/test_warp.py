"""Tests of jaxrender.integrators.warp: sample warps, frames, the piecewise
constant 2D distribution and MIS weights.

Every warp is checked three ways: against Mitsuba 3's `mi.warp` at random
samples (same formulas, so equal up to float rounding); by a chi-square
goodness-of-fit test of its samples against its pdf (Mitsuba/pbrt style, 1e6
samples in 50 x 50 cells, cells with an expected count below 5 pooled, p-value
> 0.01 with a fixed seed); and by the pdf integrating to 1. Derivatives must
be finite at the singular points of each map.

The chi-square machinery (`chi2_test`, `sphere_chart`) is reused by
tests/test_bsdf_math.py.
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import gammaincc

from jaxrender.integrators import warp

N_SAMPLES = 1_000_000
N_CELLS = 50
P_MIN = 0.01
GL_POINTS = 6  # Gauss-Legendre points per cell and axis for expected counts


# --------------------------------------------------------------------------
# Chi-square goodness of fit.
#
# A "chart" maps the sampled domain to the unit square: `to_unit(x) -> (a, b)`
# and back, `from_unit(a, b) -> x` (numpy), with `jacobian(a, b)` the domain
# measure per unit (a, b) area (solid angle for directions). Expected counts
# are N * integral over each cell of pdf(from_unit) * jacobian, by
# Gauss-Legendre quadrature; observed counts histogram the valid samples.
# `pdf` is called on fixed-size chunks of points (CHUNK, dim), so a jitted
# pdf compiles once.

CHUNK = 1 << 16


class Chart:
    def __init__(self, to_unit, from_unit, jacobian):
        self.to_unit, self.from_unit, self.jacobian = to_unit, from_unit, jacobian


def _sphere_to_unit(v):
    v = np.asarray(v, np.float64)
    a = (np.clip(v[..., 2], -1, 1) + 1) / 2
    b = np.arctan2(v[..., 1], v[..., 0]) / (2 * np.pi)
    return a, np.where(b < 0, b + 1, b)


def _sphere_from_unit(a, b):
    z = 2 * a - 1
    r = np.sqrt(np.maximum(1 - z * z, 0))
    phi = 2 * np.pi * b
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


# Directions: cell edges uniform in cos(theta) (so the horizon is a cell
# edge) and phi; d(omega) = d(cos theta) d(phi) = 4 pi da db.
sphere_chart = Chart(_sphere_to_unit, _sphere_from_unit, lambda a, b: 4 * np.pi)


def eval_in_chunks(fn, points):
    """fn on (CHUNK, dim) float32 pieces of points (M, dim) -> (M,) float64."""
    points = np.asarray(points, np.float32)
    out = np.empty(len(points))
    for s in range(0, len(points), CHUNK):
        c = points[s:s + CHUNK]
        n = len(c)
        if n < CHUNK:
            c = np.concatenate([c, np.repeat(c[:1], CHUNK - n, 0)])
        out[s:s + n] = np.asarray(fn(c), np.float64)[:n]
    return out


def _cell_integrals(pdf, chart, cells, n_cells, points):
    """Integrals of pdf * jacobian over the given cells (k, 2) of the chart,
    each by a points x points Gauss-Legendre rule."""
    x, w = np.polynomial.legendre.leggauss(points)
    x, w = (x + 1) / 2, w / 2
    a = (cells[:, 0:1] + x[None, :]) / n_cells  # (k, points)
    b = (cells[:, 1:2] + x[None, :]) / n_cells
    aa = np.broadcast_to(a[:, :, None], (len(cells), points, points))
    bb = np.broadcast_to(b[:, None, :], (len(cells), points, points))
    pts = chart.from_unit(aa, bb)
    vals = eval_in_chunks(pdf, pts.reshape(-1, pts.shape[-1])).reshape(aa.shape)
    vals = vals * chart.jacobian(aa, bb) * np.outer(w, w)[None]
    return vals.sum(axis=(1, 2)) / n_cells**2


def expected_counts(pdf, chart, n_samples, n_cells=N_CELLS, gl_points=GL_POINTS):
    """(n_cells, n_cells) expected sample counts: n_samples times the pdf
    integrated over each cell (cells indexed [a, b]).

    Gauss-Legendre per cell, refined where the pdf is not smooth inside a
    cell (e.g. the support of a lobe ending mid-cell): cells where the rule
    and one with twice the points disagree are integrated again with 16
    times the points.
    """
    ia, ib = np.meshgrid(np.arange(n_cells), np.arange(n_cells), indexing="ij")
    cells = np.stack([ia.ravel(), ib.ravel()], -1)
    coarse = _cell_integrals(pdf, chart, cells, n_cells, gl_points)
    fine = _cell_integrals(pdf, chart, cells, n_cells, 2 * gl_points)
    rough = np.nonzero(np.abs(coarse - fine) > np.maximum(1e-3 * fine, 0.05 / n_samples))[0]
    if len(rough):
        fine[rough] = _cell_integrals(pdf, chart, cells[rough], n_cells, 16 * gl_points)
    return fine.reshape(n_cells, n_cells) * n_samples


def observed_counts(points, valid, chart, n_cells=N_CELLS):
    a, b = chart.to_unit(np.asarray(points)[np.asarray(valid)])
    ia = np.clip((a * n_cells).astype(np.int64), 0, n_cells - 1)
    ib = np.clip((b * n_cells).astype(np.int64), 0, n_cells - 1)
    return np.bincount(ia * n_cells + ib, minlength=n_cells * n_cells).reshape(n_cells, n_cells)


def chi2_test(observed, expected, min_expected=5.0):
    """Pearson's chi-square test with low-expectation cells pooled
    (Mitsuba's chi2 scheme). Returns (p_value, message)."""
    obs = np.asarray(observed, np.float64).ravel()
    exp = np.asarray(expected, np.float64).ravel()
    bad = (exp <= 0) & (obs > 0)
    if bad.any():
        return 0.0, f"{int(bad.sum())} cells with samples but zero expected count"
    order = np.argsort(exp)
    obs, exp = obs[order], exp[order]
    low = exp < min_expected
    pooled_obs, pooled_exp = obs[low].sum(), exp[low].sum()
    obs, exp = list(obs[~low]), list(exp[~low])
    if pooled_exp > 0:
        obs.append(pooled_obs)
        exp.append(pooled_exp)
    obs, exp = np.asarray(obs), np.asarray(exp)
    stat = float(np.sum((obs - exp) ** 2 / exp))
    dof = len(exp) - 1
    p = float(gammaincc(dof / 2, stat / 2))
    return p, f"chi2 = {stat:.1f}, dof = {dof}, p = {p:.3g}"


def check_fit(points, valid, pdf, chart, n_samples, gl_points=GL_POINTS):
    """Asserts the chi-square fit and that the pdf's integral equals the
    fraction of valid samples; returns the pdf's integral. `pdf` maps
    (CHUNK, dim) float32 points to densities."""
    exp = expected_counts(pdf, chart, n_samples, gl_points=gl_points)
    obs = observed_counts(points, valid, chart)
    p, msg = chi2_test(obs, exp)
    assert p > P_MIN, msg
    integral = exp.sum() / n_samples
    frac = obs.sum() / n_samples
    # Binomial noise of the valid fraction (4 sigma) plus quadrature error.
    tol = 4 * np.sqrt(max(frac * (1 - frac), 1e-6) / n_samples) + 2e-3
    assert abs(integral - frac) < tol, (integral, frac)
    return integral


def uniform_samples(seed, n=N_SAMPLES, dim=2):
    return jax.random.uniform(jax.random.key(seed), (n, dim), jnp.float32)


# --------------------------------------------------------------------------
# Warps against Mitsuba.


def _mitsuba():
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    return mi


def _edge_samples():
    edges = np.array([0.0, 0.5, 1 - 2**-24, 0.25, 0.75, 1e-7], np.float32)
    return np.stack(np.meshgrid(edges, edges), -1).reshape(-1, 2)


def _test_samples(n=200):
    u = np.random.default_rng(7).random((n, 2)).astype(np.float32)
    return np.concatenate([u, _edge_samples()])


@pytest.mark.parametrize(
    "name, ours, theirs",
    [
        ("disk_concentric", warp.square_to_uniform_disk_concentric, "square_to_uniform_disk_concentric"),
        ("triangle", warp.square_to_uniform_triangle, "square_to_uniform_triangle"),
        ("sphere", warp.square_to_uniform_sphere, "square_to_uniform_sphere"),
        ("hemisphere", warp.square_to_uniform_hemisphere, "square_to_uniform_hemisphere"),
        ("cosine_hemisphere", warp.square_to_cosine_hemisphere, "square_to_cosine_hemisphere"),
    ],
)
def test_warp_matches_mitsuba(name, ours, theirs):
    mi = _mitsuba()
    u = _test_samples()
    got = np.asarray(jax.jit(ours)(u))
    fn = getattr(mi.warp, theirs)
    ref = np.array([np.array(fn(mi.Point2f(*x))) for x in u])
    np.testing.assert_allclose(got[:, :2], ref[:, :2], atol=2e-6, rtol=0)
    if got.shape[-1] == 3:
        # z = sqrt(1 - x^2 - y^2) amplifies the rounding of x^2 + y^2 (Mitsuba
        # fuses it into an FMA) near the horizon: compare z^2.
        np.testing.assert_allclose(got[:, 2] ** 2, ref[:, 2] ** 2, atol=2e-6, rtol=0)
    pdf_ours = np.asarray(getattr(warp, theirs + "_pdf")(ref.astype(np.float32)))
    pdf_fn = getattr(mi.warp, theirs + "_pdf")
    vec = mi.Point2f if got.shape[-1] == 2 else mi.Vector3f
    pdf_ref = np.array([pdf_fn(vec(*x)) for x in ref])
    np.testing.assert_allclose(pdf_ours, pdf_ref, rtol=1e-6, atol=1e-6)


def test_cone_matches_mitsuba():
    mi = _mitsuba()
    u = _test_samples()
    cone = jax.jit(lambda u, c: (warp.square_to_uniform_cone(u, c),
                                 warp.square_to_uniform_cone_pdf(jnp.asarray([0.0, 0, 1]), c)))
    for cos_cutoff in (0.9, 0.2, -0.5):
        got, pdf = (np.asarray(x) for x in cone(u, np.float32(cos_cutoff)))
        ref = np.array([np.array(mi.warp.square_to_uniform_cone(mi.Point2f(*x), cos_cutoff))
                        for x in u])
        np.testing.assert_allclose(got, ref, atol=2e-6, rtol=0)
        np.testing.assert_allclose(
            pdf, mi.warp.square_to_uniform_cone_pdf(mi.Vector3f(0, 0, 1), cos_cutoff), rtol=1e-6)


def test_frame_matches_mitsuba():
    mi = _mitsuba()
    rng = np.random.default_rng(3)
    n = rng.normal(size=(300, 3))
    # z = -0.0: flipped normals of walls parallel to z (the frame was not
    # orthonormal there until z's sign was taken by its sign bit).
    special = [[0, 0, 1], [0, 0, -1], [1, 0, 0], [0, 1, 0], [-0.0, 0, -1], [0, -0.0, 1],
               [1e-8, 0, -1], [0.6, -0.8, -0.0], [0.6, -0.8, 0.0], [-1, 0, -0.0], [0, -1, -0.0]]
    n = np.concatenate([n, special]).astype(np.float32)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    s, t, nn = (np.asarray(x) for x in jax.jit(warp.make_frame)(n))
    for i in range(len(n)):
        rs, rt = mi.coordinate_system(mi.Vector3f(n[i]))
        np.testing.assert_allclose(s[i], np.array(rs), atol=1e-6)
        np.testing.assert_allclose(t[i], np.array(rt), atol=1e-6)
    # Orthonormal and right-handed; to_local and to_world are inverses.
    np.testing.assert_allclose(np.cross(s, t), nn, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(s, axis=-1), 1, atol=1e-5)
    np.testing.assert_allclose(np.einsum("ij,ij->i", s, nn), 0, atol=1e-5)
    v = rng.normal(size=n.shape).astype(np.float32)

    @jax.jit
    def roundtrip(n, v):
        frame = warp.make_frame(n)
        local = warp.to_local(frame, v)
        return local, warp.to_world(frame, local)

    local, back = roundtrip(n, v)
    np.testing.assert_allclose(np.asarray(local)[:, 2], np.einsum("ij,ij->i", v, n), atol=1e-5)
    np.testing.assert_allclose(np.asarray(back), v, atol=1e-5)


# --------------------------------------------------------------------------
# Chi-square fits.


def _disk_from_unit(a, b):
    r = np.sqrt(a)
    return np.stack([r * np.cos(2 * np.pi * b), r * np.sin(2 * np.pi * b)], -1)


def _disk_to_unit(p):
    p = np.asarray(p, np.float64)
    b = np.arctan2(p[:, 1], p[:, 0]) / (2 * np.pi)
    return np.sum(p * p, -1), np.where(b < 0, b + 1, b)


# Polar chart (r^2, phi / 2 pi): dA = r dr dphi = pi da db.
disk_chart = Chart(_disk_to_unit, _disk_from_unit, lambda a, b: np.pi)


def _tri_from_unit(a, b):
    # b1 = 1 - sqrt(1 - a), b2 = b sqrt(1 - a): dA = 1/2 da db.
    s = np.sqrt(1 - a)
    return np.stack([1 - s, b * s], -1)


def _tri_to_unit(p):
    p = np.asarray(p, np.float64)
    s = 1 - p[:, 0]
    return 1 - s * s, np.where(s > 0, p[:, 1] / np.where(s > 0, s, 1), 0)


tri_chart = Chart(_tri_to_unit, _tri_from_unit, lambda a, b: 0.5)


@pytest.mark.parametrize(
    "name, sample, pdf, chart",
    [
        ("sphere", warp.square_to_uniform_sphere, warp.square_to_uniform_sphere_pdf, sphere_chart),
        ("hemisphere", warp.square_to_uniform_hemisphere, warp.square_to_uniform_hemisphere_pdf,
         sphere_chart),
        ("cosine_hemisphere", warp.square_to_cosine_hemisphere,
         warp.square_to_cosine_hemisphere_pdf, sphere_chart),
        # cos_cutoff on a cell edge of the chart (-1 + 0.04 k).
        ("cone", lambda u: warp.square_to_uniform_cone(u, 0.52),
         lambda v: warp.square_to_uniform_cone_pdf(v, 0.52), sphere_chart),
        ("wide_cone", lambda u: warp.square_to_uniform_cone(u, -0.6),
         lambda v: warp.square_to_uniform_cone_pdf(v, -0.6), sphere_chart),
        ("disk_concentric", warp.square_to_uniform_disk_concentric,
         warp.square_to_uniform_disk_concentric_pdf, disk_chart),
        ("triangle", warp.square_to_uniform_triangle, warp.square_to_uniform_triangle_pdf,
         tri_chart),
    ],
)
def test_warp_chi2(name, sample, pdf, chart):
    u = uniform_samples(zlib.crc32(name.encode()))
    pts = jax.jit(sample)(u)
    integral = check_fit(pts, np.ones(len(u), bool), jax.jit(pdf), chart, len(u))
    np.testing.assert_allclose(integral, 1, atol=2e-3)


# --------------------------------------------------------------------------
# PiecewiseConstant2D.


def _env_data():
    # 10 x 25 texels (their edges fall on the 50 x 50 chi-square cells), a
    # smooth bump, a bright spot, a zero row and a zero column.
    h, w = 10, 25
    y, x = np.mgrid[0:h, 0:w]
    data = 0.2 + np.exp(-((x - 17) ** 2 / 20 + (y - 3) ** 2 / 4))
    data[6, 4] = 40.0
    data[8, :] = 0
    data[:, 11] = 0
    return data.astype(np.float32)


unit_chart = Chart(lambda p: (np.asarray(p)[:, 0], np.asarray(p)[:, 1]),
                   lambda a, b: np.stack([a, b], -1), lambda a, b: 1.0)


def test_piecewise_constant_2d_chi2():
    data = _env_data()
    dist = jax.jit(warp.PiecewiseConstant2D.build)(data)
    u = uniform_samples(11)
    # Chart cells are indexed [a, b] = [u, v]: a runs along the width.
    uv, pdf = jax.jit(lambda d, u: d.sample(u))(dist, u)
    uv, pdf = np.asarray(uv), np.asarray(pdf)
    assert np.all((uv >= 0) & (uv < 1))
    np.testing.assert_allclose(pdf, np.asarray(jax.jit(dist.pdf)(uv)), rtol=1e-6)
    integral = check_fit(uv, np.ones(len(u), bool), jax.jit(dist.pdf), unit_chart, len(u),
                         gl_points=2)
    np.testing.assert_allclose(integral, 1, atol=1e-4)
    # No sample lands in a zero texel.
    col = (uv[:, 0] * 25).astype(int)
    row = (uv[:, 1] * 10).astype(int)
    assert not np.any(data[row, col] == 0)


def test_piecewise_constant_2d_pdf():
    data = _env_data()
    dist = jax.jit(warp.PiecewiseConstant2D.build)(data)
    np.testing.assert_allclose(np.asarray(dist.pdf_table), data / data.mean(), rtol=1e-5)
    # Texel centres, borders, outside.
    uv = np.array([[0.5 / 25, 0.5 / 10], [1.0, 1.0], [0.0, 0.0], [-0.1, 0.5], [0.5, 1.2]],
                  np.float32)
    p = np.asarray(jax.jit(dist.pdf)(uv))
    np.testing.assert_allclose(p[:3], [data[0, 0] / data.mean(), data[-1, -1] / data.mean(),
                                       data[0, 0] / data.mean()], rtol=1e-5)
    np.testing.assert_array_equal(p[3:], 0)
    # Extreme samples stay inside [0, 1)^2 and in nonzero texels.
    edge = np.array([[0, 0], [1 - 2**-24, 1 - 2**-24], [0, 1 - 2**-24], [0.5, 0.0]], np.float32)
    uv_e, pdf_e = (np.asarray(x) for x in jax.jit(lambda d, u: d.sample(u))(dist, edge))
    assert np.all((uv_e >= 0) & (uv_e < 1)) and np.all(pdf_e > 0)
    # Uniform fallback when everything is zero.
    uvz, pz = jax.jit(lambda u: warp.PiecewiseConstant2D.build(jnp.zeros((4, 3))).sample(u))(
        uniform_samples(1, n=1000))
    np.testing.assert_allclose(np.asarray(pz), 1)
    assert np.all(np.isfinite(np.asarray(uvz)))
    # Derivative of the pdf w.r.t. the data: pdf = d00 n / sum(d).
    g = jax.jit(jax.grad(lambda d: warp.PiecewiseConstant2D.build(d).pdf(uv[:1])[0]))(
        jnp.asarray(data))
    n = data.size
    expected = -data[0, 0] / data.sum() ** 2 * n * np.ones_like(data)
    expected[0, 0] += n / data.sum()
    np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="shape"):
        warp.PiecewiseConstant2D.build(np.ones(5, np.float32))


# --------------------------------------------------------------------------
# Derivatives at the singular points, MIS.


def test_warp_gradients_finite():
    u = jnp.asarray(_edge_samples())
    fns = [
        warp.square_to_uniform_disk_concentric,
        warp.square_to_uniform_triangle,
        warp.square_to_uniform_sphere,
        warp.square_to_uniform_hemisphere,
        warp.square_to_cosine_hemisphere,
        lambda u: warp.square_to_uniform_cone(u, 0.3),
    ]

    @jax.jit
    def all_grads(u):
        out = []
        for f in fns:
            out.append(jax.vmap(jax.jacfwd(f))(u))
            out.append(jax.grad(lambda u: jnp.sum(f(u)))(u))
        out.append(jax.grad(lambda c: jnp.sum(warp.square_to_uniform_cone(u, c)))(1.0))
        n = jnp.asarray([[0, 0, 1], [0, 0, -1], [1, 0, 0], [-0.0, 0, -1]], jnp.float32)
        out.append(jax.grad(lambda n: sum(jnp.sum(x) for x in warp.make_frame(n)))(n))
        return out

    for g in all_grads(u):
        assert np.all(np.isfinite(np.asarray(g)))


def test_mis_heuristics():
    a = jnp.asarray([1.0, 0.0, 0.0, 2.0, jnp.inf, 1e30, 1e-20])
    b = jnp.asarray([1.0, 1.0, 0.0, 1.0, 3.0, 1e30, 0.0])
    np.testing.assert_allclose(np.asarray(warp.power_heuristic(a, b)),
                               [0.5, 0, 0, 0.8, 1, 0.5, 1], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(warp.balance_heuristic(a, b)),
                               [0.5, 0, 0, 2 / 3, 1, 0.5, 1], rtol=1e-6)
    grads = jax.jit(lambda a, b: [jax.grad(lambda a, b: jnp.sum(h(a, b)), argnums=(0, 1))(a, b)
                                  for h in (warp.power_heuristic, warp.balance_heuristic)])(a, b)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))
    # Weights of two strategies sum to 1.
    rng = np.random.default_rng(0)
    pa, pb = rng.random(100), rng.random(100)
    np.testing.assert_allclose(np.asarray(warp.power_heuristic(pa, pb) + warp.power_heuristic(pb, pa)), 1,
                               rtol=1e-6)


def test_luminance_matches_mitsuba():
    mi = _mitsuba()
    rgb = np.random.default_rng(4).random((20, 3)).astype(np.float32) * 3
    ref = np.array([mi.luminance(mi.Color3f(*c)) for c in rgb])
    np.testing.assert_allclose(np.asarray(jax.jit(warp.luminance)(rgb)), ref, rtol=1e-6)


def test_sincos_matches_libm_and_differentiates():
    """`sincos` (polynomials, used by the warps instead of XLA's libm calls)
    is within 2 float32 ulps of 1 of the double-precision sine and cosine
    for |x| <= 1e4, gives NaN for non-finite x, and has the derivatives
    (cos, -sin)."""
    from jaxrender.integrators._math import sincos

    x = np.concatenate([np.linspace(-20, 20, 400_001), np.linspace(-1e4, 1e4, 200_001),
                        np.pi / 4 * np.arange(-16, 17), [0.0, -0.0]]).astype(np.float32)
    s, c = jax.jit(sincos)(x)
    x64 = x.astype(np.float64)
    assert np.abs(np.asarray(s) - np.sin(x64)).max() < 2 * 2.0**-23
    assert np.abs(np.asarray(c) - np.cos(x64)).max() < 2 * 2.0**-23
    bad = sincos(jnp.array([np.inf, -np.inf, np.nan], jnp.float32))
    assert np.isnan(np.asarray(bad)).all()
    xs = jnp.array([-7.0, -1.0, 0.3, 2.5, 40.0], jnp.float32)
    _, (ds, dc) = jax.jvp(sincos, (xs,), (jnp.ones_like(xs),))
    np.testing.assert_allclose(ds, np.cos(np.asarray(xs, np.float64)), atol=3e-7)
    np.testing.assert_allclose(dc, -np.sin(np.asarray(xs, np.float64)), atol=3e-7)
    gs = jax.grad(lambda x: sincos(x)[0] + 2 * sincos(x)[1])(jnp.float32(1.1))
    np.testing.assert_allclose(gs, np.cos(1.1) - 2 * np.sin(1.1), rtol=1e-6)


@pytest.mark.parametrize("size", [1, 5, 32, 33, 1000])
def test_search_cdf_matches_searchsorted(size):
    """`search_cdf` (compare-all up to 32 entries, an unrolled binary search
    above) equals numpy's searchsorted(side="right"), ties and ends included."""
    from jaxrender.integrators._math import search_cdf

    rng = np.random.default_rng(size)
    cdf = np.cumsum(rng.random(size)).astype(np.float32)
    cdf[size // 2:size // 2 + 2] = cdf[size // 2]  # a zero-width interval
    u = np.concatenate([rng.random(500) * cdf[-1] * 1.1, cdf, [0.0, -1.0, cdf[-1]]]).astype(np.float32)
    got = jax.jit(search_cdf)(jnp.asarray(cdf), jnp.asarray(u))
    np.testing.assert_array_equal(got, np.searchsorted(cdf, u, side="right"))


@pytest.mark.parametrize("rows", [1, 3, 8, 9, 20])
def test_take_row_matches_indexing(rows):
    """The small-table lookup of area-light sampling equals table[index] in
    value and in its gradient with respect to the table."""
    from jaxrender.integrators.lights import _take_row

    rng = np.random.default_rng(rows)
    table = jnp.asarray(rng.random((rows, 3)), jnp.float32)
    index = jnp.asarray(rng.integers(0, rows, 257), jnp.int32)
    np.testing.assert_array_equal(_take_row(table, index), table[index])
    w = jnp.asarray(rng.random((257, 3)), jnp.float32)
    g1 = jax.grad(lambda t: jnp.sum(_take_row(t, index) * w))(table)
    g2 = jax.grad(lambda t: jnp.sum(t[index] * w))(table)
    np.testing.assert_allclose(g1, g2, rtol=1e-6, atol=1e-6)


def test_sincos_float64_keeps_double_precision():
    """Under x64, `sincos` of float64 input is as accurate as numpy's."""
    from jaxrender.integrators._math import sincos

    with jax.enable_x64(True):
        x = jnp.asarray(np.linspace(-50, 50, 1001), jnp.float64)
        s, c = sincos(x)
        assert s.dtype == jnp.float64
        np.testing.assert_allclose(s, np.sin(np.asarray(x)), atol=1e-14)
        np.testing.assert_allclose(c, np.cos(np.asarray(x)), atol=1e-14)
