"""Tests of the shading math: microfacet distributions, Fresnel, and the
eval/pdf/sample functions of every BSDF kind (jaxrender.integrators).

References:
- Mitsuba 3 (scalar_rgb) itself: `mi.MicrofacetDistribution`, `mi.fresnel*`
  and the BSDF plugins evaluated at random (wi, wo, samples) with a
  hand-built SurfaceInteraction3f. Same formulas, float32 on both sides, so
  values agree to ~1e-5 relative; the tolerances below say where float
  rounding is amplified (grazing angles, a sampled direction fed back into a
  peaked lobe).
- Chi-square goodness of fit of each non-delta sampler against its pdf
  (tests/test_warp.py's machinery), weight == eval / pdf, and the Monte Carlo
  albedo: in [0, 1] and equal to Mitsuba's within its MC noise.
- Central finite differences for derivatives (float32, relative steps of
  1e-3, so tolerances are ~1e-3).
- Edge cases (normal incidence, grazing, below the horizon, alpha below the
  clamp, at it and 1): finite values and finite reverse-mode derivatives.

XLA compilation dominates the run time on a CPU, so each BSDF kind (with its
static options) is compiled a few times only (`Family`): functions of
per-point parameters with fixed batch sizes, shared by all tests.
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

from jaxrender.integrators import bsdf_math as bm
from jaxrender.integrators import fresnel as fr
from jaxrender.integrators.microfacet import Microfacet

sys.path.insert(0, os.path.dirname(__file__))
from test_warp import CHUNK, check_fit, sphere_chart  # noqa: E402

R = np.array([0.2, 0.5, 0.8], np.float32)
ETA_C = np.array([0.2, 0.9, 1.1], np.float32)  # a conductor's complex IOR
K_C = np.array([3.0, 2.5, 2.0], np.float32)
SPEC = np.array([0.9, 0.7, 1.0], np.float32)
TRANS = np.array([0.6, 1.0, 0.8], np.float32)
ONE = np.ones(3, np.float32)

B = 4096  # batch of the shared evaluation functions
N_SAMPLES = 1_000_000  # batch of the shared samplers


@pytest.fixture(scope="module")
def mi():
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    return mi


def unit(v):
    v = np.asarray(v, np.float64)
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def dir_from_angle(theta_deg, phi_deg=30.0):
    t, p = np.radians(theta_deg), np.radians(phi_deg)
    return unit([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)])


SPECIAL_DIRS = unit([
    [0, 0, 1], [0, 0, -1], [1, 0, 0], [0, 1, 0], [0.6, 0, 0.8], [-0.6, 0, 0.8],
    [0.6, 0, -0.8], [0.3, -0.4, 0.05], [0.3, 0.4, -0.05], [1, 1, 1e-3],
])


def random_inputs(seed, n=150):
    """Random (wi, wo, u1, u2) plus all pairs of special directions."""
    rng = np.random.default_rng(seed)
    wi, wo = unit(rng.normal(size=(n, 3))), unit(rng.normal(size=(n, 3)))
    si, so = np.meshgrid(np.arange(len(SPECIAL_DIRS)), np.arange(len(SPECIAL_DIRS)))
    wi = np.concatenate([wi, SPECIAL_DIRS[si.ravel()]])
    wo = np.concatenate([wo, SPECIAL_DIRS[so.ravel()]])
    u1 = rng.random(len(wi)).astype(np.float32)
    u2 = rng.random((len(wi), 2)).astype(np.float32)
    return wi, wo, u1, u2


# --------------------------------------------------------------------------
# Shared compiled functions.

# Which parameters of each kind are colours (per point (n, 3)); the others
# are scalars (per point (n,)), except roughplastic's tables (shared).
SPECTRAL = {
    "diffuse": (0,), "conductor": (0, 1, 2), "roughconductor": (2, 3, 4),
    "plastic": (0, 1), "roughplastic": (0, 1), "dielectric": (1, 2),
    "roughdielectric": (3, 4), "thindielectric": (1, 2),
}


def per_point(kind, params, n):
    """params broadcast to n points (the layout of the compiled functions)."""
    out = []
    for i, p in enumerate(params):
        if isinstance(p, bm.RoughPlasticTables):
            out.append(p)
        elif i in SPECTRAL[kind]:
            out.append(np.broadcast_to(np.asarray(p, np.float32), (n, 3)))
        else:
            out.append(np.broadcast_to(np.asarray(p, np.float32), (n,)))
    return tuple(out)


def pad(x, n):
    x = np.asarray(x)
    if len(x) == n:
        return x
    return np.concatenate([x, np.repeat(x[:1], n - len(x), 0)])


def _shape_of(kind, n):
    """Abstract per-point parameters of a kind (for ahead-of-time lowering)."""
    n_params = {"diffuse": 1, "conductor": 3, "roughconductor": 5, "plastic": 4,
                "roughplastic": 6, "dielectric": 3, "roughdielectric": 5, "thindielectric": 3}[kind]
    f32 = jnp.float32
    out = []
    for i in range(n_params):
        if kind == "roughplastic" and i == 5:
            out.append(bm.RoughPlasticTables(jax.ShapeDtypeStruct((64,), f32),
                                             jax.ShapeDtypeStruct((), f32)))
        else:
            out.append(jax.ShapeDtypeStruct((n, 3) if i in SPECTRAL[kind] else (n,), f32))
    return tuple(out)


def _sds(*shape):
    return jax.ShapeDtypeStruct(shape, jnp.float32)


COT_SHAPES = ((B, 3), (B,), (B, 3), (B, 3), (B,), (B,))


class Family:
    """The compiled functions of one BSDF kind with its static options, each
    lowered and compiled once, ahead of time, for fixed shapes."""

    def __init__(self, kind, kw, twosided=False):
        self.kind, self.kw, self.twosided = kind, dict(kw), twosided
        self.fns = bm.twosided(bm.BSDFS[kind]) if twosided else bm.BSDFS[kind]
        self.uses_grad = (kind, tuple(sorted(self.kw.items()))) in GRAD_FAMILIES and not twosided
        self._compiled = {}

    def outputs(self, params, wi, wo, u):
        f, kw = self.fns, self.kw
        return (f.eval(*params, wi, wo, **kw), f.pdf(*params, wi, wo, **kw),
                f.sample(*params, wi, u[:, 0], u[:, 1:], **kw))

    def _total(self, params, wi, wo, u, cot):
        ev, pdf, s = self.outputs(params, wi, wo, u)
        t = (jnp.sum(ev * cot[0]) + jnp.sum(pdf * cot[1]) + jnp.sum(s.weight * cot[2])
             + jnp.sum(s.wo * cot[3]) + jnp.sum(s.pdf * cot[4]) + jnp.sum(s.eta * cot[5]))
        return t, (ev, pdf, s)

    def _lower(self, which):
        k = self.kind
        if which == "grad":
            f = jax.value_and_grad(self._total, argnums=(0, 1, 2), has_aux=True)
            args = (_shape_of(k, B), _sds(B, 3), _sds(B, 3), _sds(B, 3),
                    [_sds(*c) for c in COT_SHAPES])
        elif which == "primal":
            f, args = self.outputs, (_shape_of(k, B), _sds(B, 3), _sds(B, 3), _sds(B, 3))
        elif which == "sampler":
            def f(p, wi, u):
                return self.fns.sample(*p, wi, u[:, 0], u[:, 1:], **self.kw)
            args = (_shape_of(k, N_SAMPLES), _sds(N_SAMPLES, 3), _sds(N_SAMPLES, 3))
        else:
            def f(p, wi, wo):
                return self.fns.pdf(*p, wi, wo, **self.kw)
            args = (_shape_of(k, CHUNK), _sds(CHUNK, 3), _sds(CHUNK, 3))
        return jax.jit(f).lower(*args).compile()

    def _fn(self, which):
        if which not in self._compiled:
            self._compiled[which] = self._lower(which)
        return self._compiled[which]

    def evaluate(self, params, wi, wo, u):
        """(eval, pdf, BSDFSample) at up to B points (numpy), through the
        gradient function where the family has one (one compilation)."""
        n = len(wi)
        args = (pad(wi, B), pad(wo, B), pad(u, B))
        if self.uses_grad:
            out = self.grad(params, *args, ZERO_COT)[0][1]
        else:
            out = self._fn("primal")(per_point(self.kind, params, B), *args)
        return jax.tree.map(lambda x: np.asarray(x)[:n], out)

    def grad(self, params, wi, wo, u, cot):
        """((total, (eval, pdf, sample)), grads w.r.t. (params, wi, wo)) at
        B points, total = sum of the outputs weighted by cot (6 arrays)."""
        return self._fn("grad")(per_point(self.kind, params, B), wi, wo, u, list(cot))

    def sample(self, params, wi, u):
        """BSDFSample for N_SAMPLES points (wi (3,) or per point)."""
        wi = np.broadcast_to(np.asarray(wi, np.float32), (N_SAMPLES, 3))
        return self._fn("sampler")(per_point(self.kind, params, N_SAMPLES), wi, u)

    def pdf_fn(self, params, wi):
        """wo (CHUNK, 3) -> pdf, for the chi-square machinery."""
        p = per_point(self.kind, params, CHUNK)
        wis = np.broadcast_to(np.asarray(wi, np.float32), (CHUNK, 3))
        return lambda wo: self._fn("pdf")(p, wis, wo)


@functools.lru_cache(maxsize=None)
def _family(kind, kw_items, twosided):
    return Family(kind, kw_items, twosided)


def family(kind, kw=None, twosided=False):
    return _family(kind, tuple(sorted((kw or {}).items())), twosided)


@functools.lru_cache(maxsize=None)
def _tables_fn(dist):
    return jax.jit(functools.partial(bm.roughplastic_tables, distribution=dist))


@functools.lru_cache(maxsize=None)
def tables(alpha, eta, dist):
    return _tables_fn(dist)(np.float32(alpha), np.float32(eta))


def rgb(v):
    return {"type": "rgb", "value": [float(x) for x in v]}


W_PLASTIC = float(bm.plastic_specular_sampling_weight(R.mean()))
W_PLASTIC_SPEC = float(bm.plastic_specular_sampling_weight(R.mean(), SPEC.mean()))

# name: (Mitsuba plugin dict, kind, static options, params). Roughplastic
# tables are ("tables", alpha, eta, distribution), computed on demand.
CASES = {
    "diffuse": (dict(type="diffuse", reflectance=rgb(R)), "diffuse", {}, (R,)),
    "conductor": (dict(type="conductor", eta=rgb(ETA_C), k=rgb(K_C),
                       specular_reflectance=rgb(SPEC)), "conductor", {}, (ETA_C, K_C, SPEC)),
    "conductor_mirror": (dict(type="conductor", material="none"), "conductor", {},
                         (0.0, 1.0, 1.0)),
    "roughconductor_beckmann_aniso": (
        dict(type="roughconductor", distribution="beckmann", alpha_u=0.2, alpha_v=0.4,
             eta=rgb(ETA_C), k=rgb(K_C)),
        "roughconductor", dict(distribution="beckmann"), (0.2, 0.4, ETA_C, K_C, 1.0)),
    "roughconductor_ggx": (
        dict(type="roughconductor", distribution="ggx", alpha=0.3, eta=rgb(ETA_C), k=rgb(K_C),
             specular_reflectance=rgb(SPEC)),
        "roughconductor", dict(distribution="ggx"), (0.3, 0.3, ETA_C, K_C, SPEC)),
    "roughconductor_ggx_aniso": (
        dict(type="roughconductor", distribution="ggx", alpha_u=0.45, alpha_v=0.15,
             eta=rgb(ETA_C), k=rgb(K_C)),
        "roughconductor", dict(distribution="ggx"), (0.45, 0.15, ETA_C, K_C, 1.0)),
    "plastic": (dict(type="plastic", int_ior=1.5, ext_ior=1.0, diffuse_reflectance=rgb(R)),
                "plastic", {}, (R, 1.0, 1.5, W_PLASTIC)),
    "plastic_nonlinear": (
        dict(type="plastic", int_ior=1.33, ext_ior=1.0, nonlinear=True,
             diffuse_reflectance=rgb(R), specular_reflectance=rgb(SPEC)),
        "plastic", dict(nonlinear=True), (R, SPEC, 1.33, W_PLASTIC_SPEC)),
    "roughplastic_beckmann": (
        dict(type="roughplastic", distribution="beckmann", alpha=0.3, int_ior=1.5,
             ext_ior=1.0, diffuse_reflectance=rgb(R)),
        "roughplastic", dict(distribution="beckmann"),
        (R, 1.0, 0.3, 1.5, W_PLASTIC, ("tables", 0.3, 1.5, "beckmann"))),
    "roughplastic_ggx_nonlinear": (
        dict(type="roughplastic", distribution="ggx", alpha=0.15, int_ior=1.33, ext_ior=1.0,
             nonlinear=True, diffuse_reflectance=rgb(R), specular_reflectance=rgb(SPEC)),
        "roughplastic", dict(distribution="ggx", nonlinear=True),
        (R, SPEC, 0.15, 1.33, W_PLASTIC_SPEC, ("tables", 0.15, 1.33, "ggx"))),
    "dielectric": (dict(type="dielectric", int_ior=1.5, ext_ior=1.0,
                        specular_reflectance=rgb(SPEC), specular_transmittance=rgb(TRANS)),
                   "dielectric", {}, (1.5, SPEC, TRANS)),
    "dielectric_inverted": (dict(type="dielectric", int_ior=1.0, ext_ior=1.4), "dielectric", {},
                            (1 / 1.4, 1.0, 1.0)),
    "roughdielectric_beckmann_aniso": (
        dict(type="roughdielectric", distribution="beckmann", alpha_u=0.2, alpha_v=0.35,
             int_ior=1.5, ext_ior=1.0, specular_reflectance=rgb(SPEC),
             specular_transmittance=rgb(TRANS)),
        "roughdielectric", dict(distribution="beckmann"), (0.2, 0.35, 1.5, SPEC, TRANS)),
    "roughdielectric_ggx": (
        dict(type="roughdielectric", distribution="ggx", alpha=0.3, int_ior=1.0, ext_ior=1.33),
        "roughdielectric", dict(distribution="ggx"), (0.3, 0.3, 1 / 1.33, 1.0, 1.0)),
    "thindielectric": (dict(type="thindielectric", int_ior=1.5, ext_ior=1.0,
                            specular_reflectance=rgb(SPEC), specular_transmittance=rgb(TRANS)),
                       "thindielectric", {}, (1.5, SPEC, TRANS)),
}
for _base in ("diffuse", "roughconductor_ggx", "plastic"):
    _d, _kind, _kw, _p = CASES[_base]
    CASES["twosided_" + _base] = (dict(type="twosided", material=_d), _kind, _kw, _p)


def case(name):
    """(Mitsuba dict, Family, params) of a named configuration."""
    d, kind, kw, params = CASES[name]
    params = tuple(tables(*p[1:]) if isinstance(p, tuple) and p[:1] == ("tables",) else p
                   for p in params)
    return d, family(kind, kw, name.startswith("twosided")), params


# --------------------------------------------------------------------------
# Microfacet distributions and Fresnel against Mitsuba.

MICROFACET_CASES = [
    ("beckmann", 0.3, 0.3), ("beckmann", 0.1, 0.5), ("beckmann", 1.0, 1.0),
    ("ggx", 0.3, 0.3), ("ggx", 0.5, 0.08), ("ggx", 1.0, 1.0),
]


@functools.lru_cache(maxsize=None)
def _microfacet_fn(dist):
    def f(alpha_u, alpha_v, wi, wi_up, m, u):
        d = Microfacet.create(dist, alpha_u, alpha_v)
        ms, pdf = d.sample(wi_up, u)
        return (d.D(m), d.G1(wi, m), d.G(wi, wi_up, m), d.pdf_visible(wi_up, m), ms, pdf,
                d.pdf_visible(wi_up, ms))

    return jax.jit(f)


@pytest.mark.parametrize("dist, au, av", MICROFACET_CASES)
def test_microfacet_matches_mitsuba(mi, dist, au, av):
    mtype = mi.MicrofacetType.Beckmann if dist == "beckmann" else mi.MicrofacetType.GGX
    ref = mi.MicrofacetDistribution(mtype, au, av, True)
    wi, m, _, u = random_inputs(zlib.crc32(dist.encode()) + int(au * 100))
    wi_up = np.where(wi[:, 2:] < 0, wi * [1, 1, -1], wi).astype(np.float32)
    D, G1, G, pdf, ms, spdf, pdf_ms = (np.asarray(x) for x in _microfacet_fn(dist)(
        np.float32(au), np.float32(av), wi, wi_up, m, u))
    V = mi.Vector3f
    rD = np.array([ref.eval(V(x)) for x in m])
    rG1 = np.array([ref.smith_g1(V(a), V(b)) for a, b in zip(wi, m)])
    rG = np.array([ref.G(V(a), V(b), V(c)) for a, b, c in zip(wi, wi_up, m)])
    rpdf = np.array([ref.pdf(V(a), V(b)) for a, b in zip(wi_up, m)])
    rs = [ref.sample(V(a), mi.Point2f(b)) for a, b in zip(wi_up, u)]
    rms = np.array([np.array(x[0]) for x in rs])
    rpdf_ms = np.array([x[1] for x in rs])
    np.testing.assert_allclose(D, rD, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(G1, rG1, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(G, rG, rtol=1e-5, atol=1e-7)
    # Mitsuba divides by wi.z: NaN at grazing wi, where ours gives 0.
    fin = np.isfinite(rpdf)
    np.testing.assert_allclose(pdf[fin], rpdf[fin], rtol=1e-5, atol=1e-7)
    assert np.all(pdf[~fin] == 0)
    # Sampled normals: Mitsuba's routine; float rounding (Beckmann: erf,
    # erfinv and three Newton steps) moves m by up to ~1e-5 at alpha = 1, and
    # the pdf at m by D's slope times that.
    live = wi_up[:, 2] > 0
    np.testing.assert_allclose(ms[live], rms[live], atol=3e-5 if dist == "beckmann" else 5e-6)
    np.testing.assert_allclose(spdf[live], pdf_ms[live], rtol=1e-6)
    np.testing.assert_allclose(pdf_ms[live], rpdf_ms[live], rtol=2e-3, atol=1e-6)


def test_fresnel_matches_mitsuba(mi):
    cos = np.concatenate([np.linspace(-1, 1, 101), [0.0, -0.0, 1e-7, -1e-7]]).astype(np.float32)
    etas = np.array([1.5, 1 / 1.5, 1.0, 2.4, 1.0003], np.float32)
    cos_c = np.linspace(0, 1, 51).astype(np.float32)
    conductors = np.array([[ETA_C, K_C], [np.zeros(3), np.ones(3)], [np.full(3, 1.5), np.zeros(3)]],
                          np.float32)

    @jax.jit
    def ours(cos, etas, cos_c, conductors):
        F, ct, eit, eti = fr.fresnel_dielectric(cos[None, :], etas[:, None])
        wi = jnp.stack([jnp.sqrt(jnp.maximum(1 - cos**2, 0)), 0 * cos, cos], -1)
        wt = fr.refract(wi[None], ct, eti)
        Fc = jax.vmap(lambda ek: fr.fresnel_conductor(cos_c, ek[0], ek[1]))(conductors)
        return F, ct, eit, eti, wt, Fc, fr.fresnel_diffuse_reflectance(etas)

    F, ct, eit, eti, wt, Fc, fdr = (np.asarray(x) for x in ours(cos, etas, cos_c, conductors))
    # XLA:GPU's division and contracted multiply-adds differ from Mitsuba's
    # scalar CPU arithmetic by a few ulps, which the cancellation in
    # 1 - (1 - cos_i^2) / eta^2 and cos_i - eta cos_t at grazing incidence
    # with eta = 1.0003 (and in the diffuse reflectance's polynomial there)
    # makes up to 3.5e-4.
    gpu = jax.default_backend() != "cpu"
    rtol_f = 1e-3 if gpu else 1e-5
    for i, eta in enumerate(etas):
        ref = np.array([mi.fresnel(float(c), float(eta)) for c in cos])
        np.testing.assert_allclose(F[i], ref[:, 0], rtol=rtol_f, atol=1e-6)
        np.testing.assert_allclose(ct[i], ref[:, 1], rtol=rtol_f, atol=1e-6)
        np.testing.assert_allclose(eit[i], ref[:, 2], rtol=1e-6)
        np.testing.assert_allclose(eti[i], ref[:, 3], rtol=1e-6)
        # Refracted directions are unit vectors.
        np.testing.assert_allclose(np.linalg.norm(wt[i][F[i] < 1], axis=-1), 1, atol=1e-5)
        np.testing.assert_allclose(fdr[i], mi.fresnel_diffuse_reflectance(float(eta)), rtol=1e-3 if gpu else 1e-6)
    for i, (eta, k) in enumerate(conductors):
        ref = np.array([[mi.fresnel_conductor(float(c), mi.Complex2f(float(e), float(kk)))
                         for e, kk in zip(eta, k)] for c in cos_c])
        np.testing.assert_allclose(Fc[i], ref, rtol=rtol_f, atol=1e-6)


# --------------------------------------------------------------------------
# BSDFs against Mitsuba's plugins.


def mitsuba_bsdf(mi, d, wi, wo, u1, u2, sample_only=False):
    """Mitsuba's eval, pdf and sample at each (wi, wo, u1, u2), in scalar mode."""
    bsdf = mi.load_dict(d)
    ctx = mi.BSDFContext()
    si = mi.SurfaceInteraction3f()
    si.n = mi.Normal3f(0, 0, 1)
    si.sh_frame = mi.Frame3f(si.n)
    si.uv = mi.Point2f(0.5, 0.5)
    out = {k: [] for k in ("eval", "pdf", "wo", "weight", "spdf", "eta", "flags")}
    for a, b, c, e in zip(wi, wo, u1, u2):
        si.wi = mi.Vector3f(a)
        if not sample_only:
            out["eval"].append(np.array(bsdf.eval(ctx, si, mi.Vector3f(b))))
            out["pdf"].append(bsdf.pdf(ctx, si, mi.Vector3f(b)))
        bs, w = bsdf.sample(ctx, si, float(c), mi.Point2f(e))
        out["wo"].append(np.array(bs.wo))
        out["weight"].append(np.array(w))
        out["spdf"].append(bs.pdf)
        out["eta"].append(bs.eta)
        out["flags"].append(int(bs.sampled_type))
    return {k: np.array(v) for k, v in out.items()}


def assert_close_rel(got, ref, rtol, atol, mask=None, what=""):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if mask is not None:
        got, ref = got[mask], ref[mask]
    bad = np.abs(got - ref) > rtol * np.abs(ref) + atol
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} of {bad.size} differ; worst got {got[bad][:4]} "
        f"ref {ref[bad][:4]}")


@pytest.mark.parametrize("name", list(CASES))
def test_bsdf_matches_mitsuba(mi, name):
    d, fam, params = case(name)
    wi, wo, u1, u2 = random_inputs(zlib.crc32(name.encode()))
    ref = mitsuba_bsdf(mi, d, wi, wo, u1, u2)
    ev, pdf, s = fam.evaluate(params, wi, wo, np.concatenate([u1[:, None], u2], 1))
    # Values: 1e-4 relative, plus a small absolute floor (Mitsuba fuses
    # multiply-adds, XLA may not; e.g. a transmitted half-vector from a
    # difference of nearly opposite vectors).
    assert_close_rel(ev, ref["eval"], 1e-4, 1e-6 * max(np.abs(ref["eval"]).max(), 1e-3),
                     what="eval")
    assert_close_rel(pdf, ref["pdf"], 1e-4, 1e-6 * max(ref["pdf"].max(), 1e-3), what="pdf")

    # Samples: compared where Mitsuba's weight is nonzero; where it is zero,
    # ours must be too (and we also zero the pdf of such invalid samples).
    valid = np.abs(ref["weight"]).sum(-1) > 0
    assert np.all(s.weight[~valid] == 0), "weight where Mitsuba's is 0"
    assert np.all(s.pdf[valid] > 0), "pdf == 0 on a valid sample"
    # Near grazing the sampled direction is rounded differently and G1 or the
    # half-vector Jacobian amplify it: 2e-3 there, 1e-4 elsewhere.
    graze = (np.abs(wi[:, 2]) < 0.05) | (np.abs(ref["wo"][:, 2]) < 0.05)
    tight = valid & ~graze
    assert_close_rel(s.wo, ref["wo"], 0, 2e-5, mask=tight, what="sampled wo")
    assert_close_rel(s.wo, ref["wo"], 0, 2e-3, mask=valid, what="sampled wo (grazing)")
    assert_close_rel(s.weight, ref["weight"], 1e-4, 1e-6, mask=tight, what="sample weight")
    assert_close_rel(s.weight, ref["weight"], 2e-3, 1e-5, mask=valid, what="weight (grazing)")
    # The pdf of a sampled direction in a peaked lobe moves with the lobe's
    # slope times the direction's rounding: 5e-4 (the pdf of one and the same
    # wo agrees to 1e-4, checked by `pdf` above).
    assert_close_rel(s.pdf, ref["spdf"], 5e-4, 1e-6, mask=tight, what="sample pdf")
    assert_close_rel(s.pdf, ref["spdf"], 3e-3, 1e-5, mask=valid, what="sample pdf (grazing)")
    np.testing.assert_allclose(s.eta[valid], ref["eta"][valid], rtol=1e-6)
    np.testing.assert_array_equal(s.flags[valid], ref["flags"][valid])


# --------------------------------------------------------------------------
# Sampling against the pdf (chi-square), weight == eval / pdf, albedo.

CHI2_CASES = [
    ("diffuse", 40, None),
    ("roughconductor_beckmann_aniso", 70, None),
    ("roughconductor_ggx_aniso", 85, None),
    ("roughconductor_ggx", 0, (1.0, 1.0, ETA_C, K_C, 1.0)),  # alpha = 1, normal incidence
    ("plastic", 45, None),
    ("roughplastic_beckmann", 60, None),
    ("roughplastic_ggx_nonlinear", 84, None),
    ("roughdielectric_beckmann_aniso", 130, None),  # from inside, beyond the critical angle
    ("roughdielectric_ggx", 95, None),  # grazing from inside
    ("roughdielectric_ggx", 20, (0.8, 0.6, 1.5, 1.0, 1.0)),
    ("twosided_roughconductor_ggx", 150, None),
]


@pytest.mark.parametrize("name, theta, params", CHI2_CASES)
def test_bsdf_sampling(mi, name, theta, params):
    d, fam, default = case(name)
    params = default if params is None else params
    wi = dir_from_angle(theta)
    key = jax.random.key(zlib.crc32(f"{name}{theta}".encode()))
    u = jax.random.uniform(key, (N_SAMPLES, 3), jnp.float32)
    s = jax.tree.map(np.asarray, fam.sample(params, wi, u))
    valid = (s.pdf > 0) & ~np.asarray(bm.is_delta(s.flags))
    check_fit(s.wo, valid, fam.pdf_fn(params, wi), sphere_chart, N_SAMPLES, gl_points=8)

    # weight == eval / pdf at sampled directions, and pdf == pdf(wo).
    idx = np.nonzero(valid)[0][:B]
    ev, pdf, _ = fam.evaluate(params, np.broadcast_to(wi, (len(idx), 3)), s.wo[idx],
                              np.zeros((len(idx), 3), np.float32))
    np.testing.assert_allclose(pdf, s.pdf[idx], rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(s.weight[idx] * pdf[:, None], ev, rtol=2e-4, atol=1e-6)

    # Albedo (mean weight; transmission counted with eta^2, which undoes the
    # radiance scaling): in [0, 1], and Mitsuba's, estimated from its own
    # samples, agrees within its MC noise.
    eta2 = np.where((s.flags & bm.TRANSMISSION) != 0, s.eta**2, 1)
    albedo = (s.weight.astype(np.float64) * eta2[:, None]).mean(0)
    assert np.all(albedo >= 0) and np.all(albedo <= 1 + 1e-3), albedo
    if params is default:
        n_ref = 2000
        ur = np.asarray(u[:n_ref])
        wis = np.repeat(wi[None], n_ref, 0)
        ref = mitsuba_bsdf(mi, d, wis, wis, ur[:, 0], ur[:, 1:], sample_only=True)
        ref_w = ref["weight"].astype(np.float64)
        sigma = np.sqrt(ref_w.var(0) / n_ref) + 1e-5
        ours = s.weight.astype(np.float64).mean(0)
        assert np.all(np.abs(ours - ref_w.mean(0)) < 5 * sigma), (ours, ref_w.mean(0))


def test_white_furnace():
    # A white diffuse surface reflects everything; a perfect-mirror rough
    # conductor (eta = 0, k = 1: F = 1) loses only what G1 masks: nothing at
    # normal incidence and low roughness, more at alpha = 1 and grazing;
    # neither exceeds 1.
    u = jax.random.uniform(jax.random.key(9), (N_SAMPLES, 3), jnp.float32)
    diffuse = family("diffuse")
    a = np.asarray(diffuse.sample((1.0,), dir_from_angle(80), u).weight).mean()
    assert abs(a - 1) < 1e-5
    for dist in ("beckmann", "ggx"):
        fam = family("roughconductor", dict(distribution=dist))
        for theta, alpha in ((0, 0.05), (80, 1.0)):
            s = fam.sample((alpha, alpha, 0.0, 1.0, 1.0), dir_from_angle(theta), u)
            a = np.asarray(s.weight, np.float64).mean(0)
            np.testing.assert_allclose(a, a[0])
            assert 0.3 < a[0] <= 1 + 1e-4, (theta, alpha, dist, a)
            if theta == 0:
                assert a[0] > 0.995


@pytest.mark.parametrize("name", ["dielectric", "dielectric_inverted", "thindielectric",
                                  "plastic", "conductor"])
def test_delta_lobes(name):
    _, fam, params = case(name)
    u = jax.random.uniform(jax.random.key(3), (N_SAMPLES, 3), jnp.float32)
    for theta in (0, 50, 89, 130, 170):
        wi = dir_from_angle(theta)
        s = jax.tree.map(np.asarray, fam.sample(params, wi, u))
        live = s.pdf > 0
        refl = (s.flags == bm.DELTA_REFLECTION) & live
        delta = np.asarray(bm.is_delta(s.flags)) & live
        # eval and pdf of a purely delta BSDF are 0, also at the delta
        # direction (plastic's diffuse base is not).
        if name != "plastic":
            ev, pdf, _ = fam.evaluate(params, np.broadcast_to(wi, (B, 3)), s.wo[:B],
                                      np.zeros((B, 3), np.float32))
            assert np.all(ev == 0) and np.all(pdf == 0)
        # Mirror directions; the thin sheet's Null lobe passes straight on.
        np.testing.assert_allclose(s.wo[refl], np.broadcast_to(wi * [-1, -1, 1], s.wo[refl].shape),
                                   atol=1e-6)
        if name == "thindielectric":
            through = delta & ~refl
            np.testing.assert_allclose(s.wo[through], np.broadcast_to(-wi, s.wo[through].shape))
        # The reflection lobe is chosen with the probability given as its pdf.
        cos_i = float(wi[2])
        if name.startswith("dielectric"):
            p = float(fr.fresnel_dielectric(cos_i, params[0])[0])
        elif name == "thindielectric":
            r = float(fr.fresnel_dielectric(abs(cos_i), params[0])[0])
            p = 2 * r / (1 + r)
        elif name == "plastic":
            f = float(fr.fresnel_dielectric(cos_i, params[2])[0])
            w = params[3]
            p = f * w / (f * w + (1 - f) * (1 - w)) if cos_i > 0 else 0.0
        else:
            p = 1.0 if cos_i > 0 else 0.0
        frac = refl.mean()
        assert abs(frac - p) < 5 * np.sqrt(p * (1 - p) / N_SAMPLES) + 1e-6, (theta, frac, p)
        np.testing.assert_allclose(s.pdf[refl], p, rtol=1e-5)
        if cos_i <= 0 and name in ("plastic", "conductor"):
            assert not live.any()  # one-sided: nothing from below


def test_thindielectric_null_transmission_matches_mitsuba(mi):
    d, _, (eta, spec, trans) = case("thindielectric")
    bsdf = mi.load_dict(d)
    wi = random_inputs(1)[0]
    si = mi.SurfaceInteraction3f()
    si.n = mi.Normal3f(0, 0, 1)
    si.sh_frame = mi.Frame3f(si.n)
    ref = []
    for w in wi:
        si.wi = mi.Vector3f(w)
        ref.append(np.array(bsdf.eval_null_transmission(si)))
    got = jax.jit(bm.null_transmission_thindielectric)(np.float32(eta), trans, wi)
    np.testing.assert_allclose(np.asarray(got), np.array(ref), rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------
# Derivatives against central differences; edge cases; jit/vmap.

# (configuration, indices of the parameters to differentiate, whether the
# sampled weight is smooth in them: no Fresnel- or probability-driven lobe
# choice depending on them, which would be discontinuous)
# Rough kinds are covered once each, with both microfacet samplers among
# them (Beckmann: roughconductor; GGX: roughplastic, roughdielectric): each
# such compilation costs seconds on a CPU.
GRAD_CASES = [
    ("diffuse", (0,), True),
    ("conductor", (0, 1, 2), True),
    ("roughconductor_beckmann_aniso", (0, 1, 2, 3, 4), True),
    ("plastic", (0, 2), False),
    ("roughplastic_ggx_nonlinear", (0, 1, 2, 3, 4), False),
    ("dielectric", (1, 2), True),
    ("roughdielectric_ggx", (0, 1, 2, 3, 4), False),
    ("thindielectric", (1, 2), True),
]


def _grad_inputs(seed):
    rng = np.random.default_rng(seed)
    # Directions away from grazing, on both sides.
    wi = unit(rng.normal(size=(B, 3)) * [1, 1, 0.6] + [0, 0, 1] * rng.choice([-1, 1], (B, 1)))
    wo = unit(rng.normal(size=(B, 3)) * [1, 1, 0.6] + [0, 0, 1] * rng.choice([-1, 1], (B, 1)))
    u = rng.random((B, 3)).astype(np.float32)
    cot = [rng.random(s).astype(np.float32) for s in ((B, 3), (B,), (B, 3), (B, 3), (B,), (B,))]
    return wi, wo, u, cot


def _weighted_per_point(outputs, cot):
    ev, pdf, s = (jax.tree.map(lambda x: np.asarray(x, np.float64), o) for o in outputs)
    return ((ev * cot[0]).sum(-1) + pdf * cot[1] + (s.weight * cot[2]).sum(-1)
            + (s.wo * cot[3]).sum(-1) + s.pdf * cot[4] + s.eta * cot[5])


@pytest.mark.parametrize("name, wrt, smooth_sample", GRAD_CASES)
def test_gradients_match_finite_differences(name, wrt, smooth_sample):
    # Per point, d/d param of c0 . eval + c1 pdf [+ c2 . sample weight]
    # (random c) against central differences of the same compiled function's
    # values (float32; step 1e-3 relative, 1e-4 absolute at least). Parameters
    # are per point, so one
    # shifted evaluation gives every point's difference quotient. 99 % of the
    # 4096 random configurations must agree to 1 %: the rest may straddle a
    # discontinuity of the BSDF (a microfacet orientation mask, total
    # internal reflection) within the step.
    _, fam, params = case(name)
    wi, wo, u, cot = _grad_inputs(zlib.crc32(name.encode()))
    if not smooth_sample:
        cot[2:] = [np.zeros_like(c) for c in cot[2:]]
    cot[3:] = [np.zeros_like(c) for c in cot[3:]]
    (_, outputs), grads = fam.grad(params, wi, wo, u, cot)
    assert np.all(np.isfinite(_weighted_per_point(outputs, cot)))
    for i in wrt:
        g_all = np.asarray(grads[0][i], np.float64)
        base = np.asarray(params[i], np.float32)
        if i in SPECTRAL[fam.kind]:
            base = np.broadcast_to(base, (3,)).copy()
        comps = [()] if base.ndim == 0 else [(c,) for c in range(3)]
        for c in comps:
            h = 1e-3 * max(float(np.abs(base[c])), 0.1)
            t = []
            for sign in (1, -1):
                p = list(params)
                b = base.copy()
                b[c] += sign * h
                p[i] = b
                t.append(_weighted_per_point(fam.grad(tuple(p), wi, wo, u, cot)[0][1], cot))
            fd = (t[0] - t[1]) / (2 * h)
            g = g_all[(slice(None),) + c]
            assert np.all(np.isfinite(g))
            # Float32 rounding of the values (~1e-6 relative after a few
            # dozen operations) is amplified by 1 / (2 h) in the quotient.
            noise = 1e-5 * (np.abs(t[0]) + np.abs(t[1])) / (2 * h)
            ok = np.abs(g - fd) <= 1e-2 * np.abs(fd) + noise + 1e-7
            assert ok.mean() >= 0.99, (name, i, c, ok.mean(), g[~ok][:3], fd[~ok][:3])
            # The derivative is not trivially zero where it should not be.
            assert np.abs(fd).max() == 0 or np.abs(g).max() > 0


EDGE_DIRS = unit([[0, 0, 1], [0, 0, -1], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0.6, 0, 0.8],
                  [-0.6, 0, 0.8], [0.6, 0, -0.8], [0, 0.6, -0.8], [1, 0, 1e-7]])
EDGE_U = np.array([0.0, 0.5, 1 - 2**-24], np.float32)
EDGE_FAMILIES = [
    ("diffuse", {}), ("conductor", {}), ("roughconductor", dict(distribution="beckmann")),
    ("plastic", {}), ("roughplastic", dict(distribution="ggx", nonlinear=True)),
    ("dielectric", {}), ("roughdielectric", dict(distribution="ggx")), ("thindielectric", {}),
]


def edge_params(kind, alpha):
    return {
        "diffuse": (R,),
        "conductor": (ETA_C, K_C, SPEC),
        "roughconductor": (alpha, alpha, ETA_C, K_C, SPEC),
        "plastic": (R, SPEC, 1.5, 0.6),
        "roughplastic": (R, SPEC, alpha, 1.5, 0.6, tables(0.3, 1.5, "ggx")),
        "dielectric": (1.5, SPEC, TRANS),
        "roughdielectric": (alpha, alpha, 1.5, SPEC, TRANS),
        "thindielectric": (1.5, SPEC, TRANS),
    }[kind]


@pytest.mark.parametrize("kind, kw", EDGE_FAMILIES)
def test_edge_cases_finite(kind, kw):
    # All pairs of edge directions (normal incidence, grazing in and out of
    # the plane, below the horizon, z = 1e-7), samples at 0, 1/2, 1 - 2^-24,
    # and alpha 1e-6 (below the clamp), 1e-4, 0.02 and 1 (per point): finite
    # values, nonnegative eval/pdf, unit sampled directions, and finite
    # reverse-mode derivatives with respect to parameters, wi, wo and u.
    fam = family(kind, kw)
    i, j = np.meshgrid(np.arange(len(EDGE_DIRS)), np.arange(len(EDGE_DIRS)), indexing="ij")
    ua, ub, uc = np.meshgrid(EDGE_U, EDGE_U, EDGE_U, indexing="ij")
    us = np.stack([ua.ravel(), ub.ravel(), uc.ravel()], -1)  # 27 triples
    n_pairs = i.size
    alphas = np.array([1e-6, 1e-4, 0.02, 1.0], np.float32)
    per_alpha = B // len(alphas)
    rng = np.random.default_rng(0)
    pick = rng.integers(0, n_pairs * len(us), per_alpha)
    pick[: n_pairs * 3] = np.arange(n_pairs * 3) * 9 % (n_pairs * len(us))  # every pair
    wi = np.tile(EDGE_DIRS[i.ravel()[pick // len(us)]], (len(alphas), 1))
    wo = np.tile(EDGE_DIRS[j.ravel()[pick // len(us)]], (len(alphas), 1))
    u = np.tile(us[pick % len(us)], (len(alphas), 1))
    alpha = np.repeat(alphas, per_alpha)
    cot = [np.ones(s, np.float32) for s in ((B, 3), (B,), (B, 3), (B, 3), (B,), (B,))]
    (total, (ev, pdf, s)), grads = fam.grad(edge_params(kind, alpha), wi, wo, u, cot)
    for leaf in jax.tree.leaves(((ev, pdf, s), grads)):
        leaf = np.asarray(leaf)
        if leaf.dtype.kind == "f":
            bad = ~np.isfinite(leaf)
            assert not bad.any(), np.argwhere(bad)[:3]
    assert np.all(np.asarray(ev) >= 0) and np.all(np.asarray(pdf) >= 0)
    spdf, swo = np.asarray(s.pdf), np.asarray(s.wo)
    assert np.all(spdf >= 0)
    np.testing.assert_allclose(np.linalg.norm(swo[spdf > 0], axis=-1), 1, atol=1e-4)


def test_batched_parameters_and_vmap():
    # Per-point parameters (as looked up from textures) agree with vmap over
    # points, and jit and vmap compose; per-point roughplastic tables (one
    # material per point) equal shared ones.
    rng = np.random.default_rng(2)
    n = 64
    wi, wo = unit(rng.normal(size=(n, 3))), unit(rng.normal(size=(n, 3)))
    alpha = rng.uniform(0.05, 0.8, n).astype(np.float32)
    refl = rng.random((n, 3)).astype(np.float32)
    f = functools.partial(bm.eval_roughconductor, distribution="ggx")
    t = tables(0.3, 1.5, "ggx")
    t_pp = bm.RoughPlasticTables(np.broadcast_to(np.asarray(t.external_transmittance), (n, 64)),
                                 np.broadcast_to(np.asarray(t.internal_reflectance), (n,)))
    g = functools.partial(bm.eval_roughplastic, distribution="ggx")

    @jax.jit
    def run(alpha, refl, wi, wo, t, t_pp):
        return (f(alpha, alpha, ETA_C, K_C, refl, wi, wo),
                jax.vmap(f, in_axes=(0, 0, None, None, 0, 0, 0))(alpha, alpha, ETA_C, K_C, refl,
                                                                  wi, wo),
                g(R, 1.0, alpha, 1.5, 0.6, t, wi, wo), g(R, 1.0, alpha, 1.5, 0.6, t_pp, wi, wo))

    batched, mapped, shared, pp = (np.asarray(x) for x in run(alpha, refl, wi, wo, t, t_pp))
    np.testing.assert_allclose(batched, mapped, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(shared, pp, rtol=1e-6, atol=1e-7)
    assert batched.shape == shared.shape == (n, 3) and np.any(batched > 0)


def test_roughplastic_table_derivative():
    # The tables' derivative w.r.t. alpha (forward mode) matches central
    # differences (Mitsuba does not differentiate them; the quadrature is
    # smooth in alpha. In eta it has kinks at the critical angle, where only
    # small steps converge, so eta is left to the Mitsuba comparisons).
    jvp = jax.jit(lambda a: jax.jvp(
        lambda a: bm.roughplastic_tables(a, 1.5, distribution="ggx"), (a,), (1.0,))[1])
    d = jvp(np.float32(0.3))
    h = 1e-2
    plus, minus = tables(0.3 + h, 1.5, "ggx"), tables(0.3 - h, 1.5, "ggx")
    for name in ("external_transmittance", "internal_reflectance"):
        fd = (np.asarray(getattr(plus, name)) - np.asarray(getattr(minus, name))) / (2 * h)
        np.testing.assert_allclose(np.asarray(getattr(d, name)), fd, rtol=5e-3, atol=1e-3)


ZERO_COT = [np.zeros(s, np.float32) for s in ((B, 3), (B,), (B, 3), (B, 3), (B,), (B,))]
# Families compiled with gradients (their values come from the same function).
GRAD_FAMILIES = {(CASES[n][1], tuple(sorted(CASES[n][2].items()))) for n, _, _ in GRAD_CASES} | {
    (k, tuple(sorted(kw.items()))) for k, kw in EDGE_FAMILIES}
