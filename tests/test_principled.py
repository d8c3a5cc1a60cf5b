"""principled (Mitsuba 3's Disney BSDF).

References: Mitsuba's own plugin point by point in scalar mode (eval, pdf,
sampled direction, weight and pdf at random directions and random numbers,
for parameter sets that switch every lobe on, textured parameters among
them), the sampler's mean weight against the integral of `eval`, central
finite differences for the derivatives, and Mitsuba's `traverse` for the
parameter names. The rendered image is compared with Mitsuba in
test_render.py (principled).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import mitsuba_bsdf_queries

import jaxrender as jr
from jaxrender.integrators.bsdfs import bsdf_triple

TEX = np.random.default_rng(7).uniform(0.05, 0.95, (4, 4, 3)).astype(np.float32)
TEX1 = np.random.default_rng(8).uniform(0.1, 0.9, (4, 4, 1)).astype(np.float32)

CASES = {
    "default": {},
    "metal": {"base_color": {"type": "rgb", "value": [0.9, 0.6, 0.3]}, "metallic": 0.8, "roughness": 0.3,
              "spec_tint": 0.4},
    "sheen_clearcoat": {"base_color": {"type": "rgb", "value": [0.2, 0.6, 0.3]}, "anisotropic": 0.7,
                        "roughness": 0.4, "sheen": 0.5, "sheen_tint": 0.6, "clearcoat": 0.7,
                        "clearcoat_gloss": 0.4},
    "glass": {"base_color": {"type": "rgb", "value": [0.9, 0.8, 0.7]}, "spec_trans": 0.7, "roughness": 0.2,
              "eta": 1.4, "flatness": 0.5, "metallic": 0.1},
    "all": {"base_color": {"type": "rgb", "value": [1.0, 0.5, 0.2]}, "metallic": 0.3, "specular": 0.6,
            "roughness": 0.25, "spec_tint": 0.4, "anisotropic": 0.5, "sheen": 0.3, "sheen_tint": 0.2,
            "clearcoat": 0.6, "clearcoat_gloss": 0.3, "spec_trans": 0.4, "flatness": 0.3,
            "main_specular_sampling_rate": 0.7, "clearcoat_sampling_rate": 2.0,
            "diffuse_reflectance_sampling_rate": 0.5},
    # Scalars read from textures: an RGB bitmap's luminance, a checkerboard
    # (whose eval_1 has its colours swapped in Mitsuba).
    "textured": {"base_color": {"type": "bitmap", "raw": True, "filter_type": "nearest", "data": TEX},
                 "roughness": {"type": "bitmap", "raw": True, "filter_type": "nearest", "data": TEX},
                 "metallic": {"type": "checkerboard", "color0": 0.1, "color1": 0.7},
                 "spec_trans": {"type": "bitmap", "raw": True, "filter_type": "nearest", "data": TEX1},
                 "sheen": 0.4, "clearcoat": 0.5},
}


THIN_CASES = {
    "thin_default": {},
    "thin_leaf": {"base_color": {"type": "rgb", "value": [0.3, 0.7, 0.2]}, "diff_trans": 0.8, "roughness": 0.4,
                  "sheen": 0.5, "sheen_tint": 0.5, "flatness": 0.4},
    "thin_all": {"base_color": {"type": "bitmap", "raw": True, "filter_type": "nearest", "data": TEX},
                 "spec_trans": 0.6, "roughness": 0.3, "eta": 1.33, "anisotropic": 0.5, "spec_tint": 0.4,
                 "diff_trans": 1.2, "specular_reflectance_sampling_rate": 0.5,
                 "diffuse_transmittance_sampling_rate": 2.0},
}


def _plugin(case):
    return ("principledthin", THIN_CASES[case]) if case in THIN_CASES else ("principled", CASES[case])


def _mitsuba_dict(mi, d):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and "data" in v:
            v = dict(v, data=mi.TensorXf(v["data"]))
        out[k] = v
    return out


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _inputs(n, seed):
    rng = np.random.default_rng(seed)
    wi = _unit(rng.normal(size=(n, 3)))
    wi[: 3 * n // 4, 2] = np.abs(wi[: 3 * n // 4, 2])  # most from the front
    wo = _unit(rng.normal(size=(n, 3)))
    wo[: n // 2, 2] = np.abs(wo[: n // 2, 2])
    # Near the mirror direction, where the specular lobes are.
    k = slice(n // 2, n // 2 + n // 8)
    wo[k] = _unit(wi[k] * np.array([-1, -1, 1]) + rng.normal(0, 0.05, wi[k].shape))
    # Texel centres: every point reads one texel of each bitmap exactly.
    uv = ((rng.integers(0, 4, (n, 2)) + 0.5) / 4).astype(np.float32)
    f = np.float32
    return wi.astype(f), wo.astype(f), uv, rng.uniform(size=n).astype(f), rng.uniform(size=(n, 2)).astype(f)


def _triple(spec, uv, plugin="principled"):
    scene = jr.load_dict({"type": "scene", "b": dict({"type": plugin}, **spec)})
    return bsdf_triple(scene.bsdfs[0], jnp.asarray(uv))


@pytest.mark.parametrize("case", sorted(CASES) + sorted(THIN_CASES))
def test_matches_mitsuba_plugin(case):
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    plugin, spec = _plugin(case)
    n = 96
    wi, wo, uv, u1, u2 = _inputs(n, len(case))
    b = mi.load_dict(dict({"type": plugin}, **_mitsuba_dict(mi, spec)))
    ref = mitsuba_bsdf_queries(mi, b, wi, wo, uv, u1, u2)

    t = _triple(spec, uv, plugin)
    ev = np.asarray(t.eval(jnp.asarray(wi), jnp.asarray(wo)))
    pdf = np.asarray(t.pdf(jnp.asarray(wi), jnp.asarray(wo)))
    s = t.sample(jnp.asarray(wi), jnp.asarray(u1), jnp.asarray(u2))
    scale = max(np.abs(ref["eval"]).max(), 1e-3)
    np.testing.assert_allclose(ev, ref["eval"], rtol=1e-4, atol=1e-5 * scale)
    # Both sides of the masks are exercised (a sheet that transmits
    # diffusely has no zero).
    assert (ref["eval"] > 0).any() and ((ref["eval"] == 0).any() or "diff_trans" in spec)
    # Mitsuba reports a pdf for a back-side wi of a BSDF without
    # transmission, whose value there is 0 and which `sample` never
    # returns; ours is 0 there.
    counted = pdf > 0
    back_only = ~counted & (ref["pdf"] > 0)
    assert not (ref["eval"][back_only] > 0).any() and (wi[back_only, 2] < 0).all()
    np.testing.assert_allclose(pdf[counted], ref["pdf"][counted], rtol=1e-4, atol=1e-6 * ref["pdf"].max())

    valid = ref["weight"].max(-1) > 0
    np.testing.assert_array_equal(np.asarray(s.weight).max(-1) > 0, valid)
    assert valid.sum() > n // 2
    got_wo = np.asarray(s.wo)[valid]
    np.testing.assert_allclose(got_wo, ref["wo"][valid], atol=2e-5)
    # Weights are eval / pdf: relative to the size of the weight, except at
    # grazing directions (|cos| < 1e-3) where eval is proportional to cos.
    ok = np.abs(got_wo[:, 2]) > 1e-3
    np.testing.assert_allclose(np.asarray(s.weight)[valid][ok], ref["weight"][valid][ok], rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(s.pdf)[valid], ref["spdf"][valid], rtol=2e-4)


@pytest.mark.parametrize("plugin", ["principled", "principledthin"])
@pytest.mark.parametrize("front", [True, False])
def test_sampling_reproduces_the_albedo(front, plugin):
    """The mean sample weight is the integral of eval over the sphere (so
    the pdf a sample reports is the density it was drawn from), for every
    lobe at once, from the front and from behind (principled: its
    transmission lobe; principledthin: the same on both sides)."""
    N = 1 << 19
    # Rough enough that a uniform estimate of the integral is not dominated
    # by a few samples in a narrow specular peak.
    spec = dict(CASES["all"] if plugin == "principled" else THIN_CASES["thin_all"], roughness=0.6)
    spec.pop("base_color")
    t = _triple(spec, np.full((N, 2), 0.5, np.float32), plugin)
    wi = jnp.broadcast_to(jnp.asarray(_unit(np.array([0.3, -0.2, 0.9 if front else -0.9])), jnp.float32), (N, 3))
    u = jax.random.uniform(jax.random.key(1), (N, 3))
    s = t.sample(wi, u[:, 0], u[:, 1:])
    v = jax.random.normal(jax.random.key(2), (N, 3))
    wo = v / jnp.linalg.norm(v, axis=-1, keepdims=True)
    integral = np.asarray(t.eval(wi, wo)).mean(0) * 4 * np.pi
    mean_weight = np.asarray(s.weight).mean(0)
    assert np.all(np.isfinite(np.asarray(s.weight)))
    assert integral.min() > 0.05
    np.testing.assert_allclose(mean_weight, integral, rtol=0.03)


def test_parameter_names_and_loader():
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    for plugin, spec, key in (("principled", CASES["all"], "specular"), ("principled", CASES["glass"], "eta"),
                              ("principledthin", THIN_CASES["thin_leaf"], "eta")):
        ours = jr.traverse(jr.load_dict({"type": "scene", "b": dict({"type": plugin, "id": "b"}, **spec)}))
        params = mi.traverse(mi.load_dict({"type": "scene", "b": dict({"type": plugin}, **spec)}))
        theirs = {k for k in params.keys() if params.flags(k) & int(mi.ParamFlags.NonDifferentiable) == 0}
        assert set(ours) == theirs
        assert key in {k.split(".")[1] for k in ours}
    s = jr.load_dict({"type": "scene", "b": {"type": "principled", "spec_trans": 0.5, "eta": 1.0}})
    assert float(s.bsdfs[0].eta) == pytest.approx(1.001)  # no refraction at eta = 1: Mitsuba's nudge
    s = jr.load_dict({"type": "scene", "b": {"type": "principled", "eta": 1.0}})
    assert float(s.bsdfs[0].eta) == 1.0

    def error(spec, *patterns):
        with pytest.raises(ValueError) as info:
            jr.load_dict({"type": "scene", "b": dict({"type": "principled", "__source__": "s.xml:3"}, **spec)})
        for p in ("s.xml:3",) + patterns:
            assert p in str(info.value)

    error({"eta": 1.5, "specular": 0.5}, '"eta"', '"specular"')
    error({"specular": 13.0}, '"specular"', "12.5")
    error({"roughness": 1.5}, '"roughness"', "[0.0, 1.0]")
    error({"eta": -1.0}, '"eta"')
    error({"main_specular_sampling_rate": 0.0, "clearcoat_sampling_rate": 0.0,
           "diffuse_reflectance_sampling_rate": 0.0}, "sampling rates")
    with pytest.raises(ValueError, match="diff_trans"):
        jr.load_dict({"type": "scene", "b": {"type": "principledthin", "diff_trans": 2.5}})


def test_derivatives_match_finite_differences():
    """d/dparam of the summed eval and pdf over random direction pairs, for
    every parameter, against central differences (masks do not move at
    these values: every lobe is on)."""
    n = 256
    wi, wo, uv, _, _ = _inputs(n, 3)
    scene = jr.load_dict({"type": "scene", "b": dict({"type": "principled", "id": "b"}, **CASES["all"])})
    params = jr.traverse(scene)

    @jax.jit
    def f(p):
        t = bsdf_triple(jr.replace(scene, p).bsdfs[0], jnp.asarray(uv))
        return jnp.sum(t.eval(wi, wo)) + 0.1 * jnp.sum(t.pdf(wi, wo))

    grads = jax.grad(f)(params)
    for name, value in params.items():
        g = np.asarray(grads[name])
        assert np.all(np.isfinite(g)), name
        v = np.random.default_rng(len(name)).normal(size=np.shape(value)).astype(np.float32)
        eps = 2e-3
        fd = (float(f(dict(params, **{name: value + eps * v}))) - float(f(dict(params, **{name: value - eps * v})))) / (2 * eps)
        np.testing.assert_allclose(np.sum(g * v), fd, rtol=0.03, atol=0.03 * abs(float(f(params))) * 1e-2,
                                   err_msg=name)


def test_albedo_aov_is_the_base_color():
    from jaxrender.integrators.aov import _diffuse_reflectance

    scene = jr.load_dict({"type": "scene", "b": dict({"type": "principled"}, **CASES["textured"])})
    uv = jnp.asarray(_inputs(8, 0)[2])
    got = np.asarray(_diffuse_reflectance(scene.bsdfs[0], uv))
    texel = TEX[(np.asarray(uv)[:, 1] * 4).astype(int), (np.asarray(uv)[:, 0] * 4).astype(int)]
    np.testing.assert_allclose(got, texel, rtol=1e-6)


# --------------------------------------------------------------------------
# Derivatives through `render`: one principled plane filling the view, lit
# by a point light only (emitter sampling, so no parameter changes a
# sampling decision and same-key central differences are deterministic;
# see test_grad.py). Every lobe is on, the anisotropic one needs tangents.

PLANE = """<scene version="3.0.0">
  <sensor type="perspective"><float name="fov" value="30"/>
    <transform name="to_world"><lookat origin="0, 0, 4" target="0, 0, 0" up="0, 1, 0"/></transform>
    <film type="hdrfilm"><integer name="width" value="16"/><integer name="height" value="16"/></film></sensor>
  <emitter type="point"><point name="position" x="0.5" y="-0.9" z="2.9"/><rgb name="intensity" value="6, 5, 4"/></emitter>
  <emitter type="point"><point name="position" x="-0.4" y="1.5" z="-2.4"/><rgb name="intensity" value="8, 8, 8"/></emitter>
  <shape type="rectangle"><transform name="to_world"><scale value="4"/><rotate z="1" angle="30"/><rotate x="1" angle="-65"/></transform>
    <bsdf type="principled" id="p"><rgb name="base_color" value="0.9, 0.3, 0.1"/><float name="metallic" value="0.3"/>
      <float name="specular" value="0.6"/><float name="roughness" value="0.35"/><float name="spec_tint" value="0.4"/>
      <float name="anisotropic" value="0.5"/><float name="sheen" value="0.8"/><float name="sheen_tint" value="0.2"/>
      <float name="clearcoat" value="0.6"/><float name="clearcoat_gloss" value="0.3"/><float name="spec_trans" value="0.4"/>
      <float name="flatness" value="0.3"/></bsdf></shape>
</scene>"""


def test_render_derivatives_match_finite_differences():
    from test_grad import DIRECT_NEE, _assert_matches, _close_over

    scene = jr.load_string(PLANE)
    params = {k: v for k, v in jr.traverse(scene).items() if k.startswith("p.")}
    fn = _close_over(scene, DIRECT_NEE, 2, "grad")
    key = jax.random.key(0)
    loss, grad = fn(params, key)
    loss = float(loss)
    assert len(params) == 12  # 11 textures and specular
    # Larger steps where the loss moves little (all are smooth here).
    steps = {"p.sheen_tint.value": 0.1, "p.clearcoat_gloss.value": 0.05, "p.anisotropic.value": 0.03,
             "p.spec_tint.value": 0.05}
    for name, value in params.items():
        v = np.ones(np.shape(value), np.float32) if np.ndim(value) == 0 else np.array([1.0, 0.5, 0.3], np.float32)
        eps = steps.get(name, 0.01)
        hi = float(fn(dict(params, **{name: value + eps * v}), key)[0])
        lo = float(fn(dict(params, **{name: value - eps * v}), key)[0])
        fd = (hi - lo) / (2 * eps)
        ad = float(np.sum(np.asarray(grad[name], np.float64) * v))
        # Smooth in every parameter here: 2% (float32 and O(eps^2)).
        _assert_matches(name, ad, fd, eps * fd, loss, 0.02)
