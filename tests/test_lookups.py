"""Tests of the texture and emitter lookups (jaxrender.scene.textures /
jaxrender.scene.emitters): values against Mitsuba 3.9.1 (scalar_rgb) live
where it is installed and against tests/data/scenes/expected.json always;
derivatives against finite differences and by hand; jit and vmap.

Every lookup runs jitted (`*_j` below), as the integrators run them: eager
JAX would compile each primitive on its own, which costs more than the tests.

Tolerances: Mitsuba computes the same float32 formulas in a different order
(fused multiply-adds, its own acos/atan2), so bilinear lookups agree to a few
ulps of the largest texel (VAL); nearest lookups and checkerboards agree
exactly, texel and cell boundaries included; spot falloffs to 2e-5 relative
(acos near 1 is ill-conditioned).
"""

from __future__ import annotations

import functools
import json
import math
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrender.scene as js
from jaxrender.scene.emitters import (
    delta_light_incident,
    emitter_direction,
    emitter_position,
    environment_direction,
    environment_uv,
    eval_area_light,
    eval_constant,
    eval_environment,
    eval_infinite,
    point_light_incident,
    spot_light_falloff,
    spot_light_incident,
)
from jaxrender.scene.textures import eval_texture, eval_texture_1, eval_texture_mean, transform_uv

VAL = 2e-6
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



def _jit(f):
    """f jitted, its results as numpy arrays (so that the tests' indexing and
    arithmetic compile nothing)."""
    g = jax.jit(f)
    return functools.wraps(f)(lambda *args: jax.tree.map(np.asarray, g(*args)))


tex_j = _jit(eval_texture)
tex1_j = _jit(eval_texture_1)
mean_j = _jit(eval_texture_mean)
uvmap_j = _jit(transform_uv)
env_j = _jit(eval_environment)
inf_j = _jit(eval_infinite)
const_j = _jit(eval_constant)
uv_j = _jit(environment_uv)
dir_j = _jit(environment_direction)
delta_j = _jit(delta_light_incident)
falloff_j = _jit(spot_light_falloff)
area_j = _jit(eval_area_light)
position_j = _jit(emitter_position)
direction_j = _jit(emitter_direction)


# --------------------------------------------------------------------------
# Helpers


@pytest.fixture(scope="module")
def mi():
    mitsuba = pytest.importorskip("mitsuba")
    mitsuba.set_variant("scalar_rgb")
    mitsuba.set_log_level(mitsuba.LogLevel.Error)
    return mitsuba


@functools.lru_cache(maxsize=None)
def _expected():
    with open(os.path.join(ROOT, "tests", "data", "scenes", "expected.json")) as f:
        return json.load(f)


@functools.lru_cache(maxsize=None)
def _load(rel):
    import jaxrender

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jaxrender.load_file(os.path.join(ROOT, rel))


def _one(kind, d):
    """Our object for a plugin dict: a texture (as a diffuse reflectance) or
    an emitter."""
    if kind == "texture":
        sc = js.load_dict({"type": "scene", "s": {"type": "rectangle", "bsdf": {"type": "diffuse", "reflectance": d}}})
        return sc.bsdfs[0].reflectance
    return js.load_dict({"type": "scene", "e": d}).emitters[0]


def _mitsuba_dict(mi, d):
    out = dict(d)
    for k in ("to_world", "to_uv"):
        if k in out:
            out[k] = mi.ScalarTransform4f(np.asarray(out[k], np.float64).tolist())
    if "data" in out:
        if out["type"] == "envmap":
            out["bitmap"] = mi.Bitmap(np.asarray(out.pop("data"), np.float32))
        else:
            out["data"] = mi.TensorXf(np.asarray(out["data"], np.float32))
    return out


def _si(mi, uv=(0.0, 0.0), wi=(0.0, 0.0, 1.0)):
    import drjit as dr

    si = dr.zeros(mi.SurfaceInteraction3f)
    si.uv = mi.Point2f(*[float(x) for x in uv])
    si.wi = mi.Vector3f(*[float(x) for x in wi])
    return si


def _mi_eval_texture(mi, tex, uvs, channels):
    if channels == 1:
        return np.array([[tex.eval_1(_si(mi, uv))] for uv in uvs])
    return np.array([np.array(tex.eval(_si(mi, uv))) for uv in uvs])


def _mi_eval_env(mi, e, dirs):
    # eval() gives the radiance arriving from -si.wi (make_expected.py's rule).
    return np.array([np.array(e.eval(_si(mi, wi=-np.asarray(d, np.float64)))) for d in dirs])


def _rotate(axis, degrees):
    """Mitsuba's rotate (4, 4), in numpy (test_scene checks js.rotate)."""
    a = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    t = np.deg2rad(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    m = np.eye(4)
    m[:3, :3] = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k
    return m.astype(np.float32)


def _affine(translate=(0, 0, 0), scale=(1, 1, 1)):
    m = np.diag([*scale, 1.0])
    m[:3, 3] = translate
    return m.astype(np.float32)


def _uv_grid():
    """uvs inside and outside [0, 1]^2, many exactly on texel boundaries and
    centres of a 5 x 3 image, and random ones."""
    g = np.stack(np.meshgrid(np.arange(-10, 21) / 10, np.arange(-6, 13) / 6), -1).reshape(-1, 2)
    r = np.random.default_rng(0).uniform(-2.5, 3.5, (150, 2))
    extra = [[0.5, 0.5], [0.5, 0.1], [0.1, 0.5], [1.0, 0.5], [-0.5, 0.0]]  # checkerboard cell edges
    return np.concatenate([g, r, extra]).astype(np.float32)


UVS = _uv_grid()
IMG = np.random.default_rng(1).random((3, 5, 3)).astype(np.float32)
TO_UV = _rotate([0, 0, 1], 30.0) @ _affine(translate=(0.5, 0.25, 0)) @ _affine(scale=(2, 3, 1))
TO_UV3 = TO_UV[np.ix_([0, 1, 3], [0, 1, 3])]
EYE3 = np.eye(3, dtype=np.float32)
EYE4 = np.eye(4, dtype=np.float32)


def _diffuse_texture(bsdf):
    """The texture Mitsuba's eval_diffuse_reflectance reads."""
    if isinstance(bsdf, js.TwoSided):
        bsdf = bsdf.brdf[0]
    return bsdf.diffuse_reflectance if hasattr(bsdf, "diffuse_reflectance") else bsdf.reflectance


def _check_fd(f, x, g, eps, tol, seed=4):
    """A gradient g of f at x against a central difference of f along a
    random direction."""
    x = np.asarray(x, np.float32)
    g = np.asarray(g)
    assert g.shape == x.shape and np.all(np.isfinite(g))
    v = np.random.default_rng(seed).normal(size=x.shape).astype(np.float32)
    fd = (float(f(x + eps * v)) - float(f(x - eps * v))) / (2 * eps)
    np.testing.assert_allclose(np.sum(g * v), fd, rtol=tol, atol=tol)


# --------------------------------------------------------------------------
# Textures


@pytest.mark.parametrize("path", ["tests/data/scenes/plugins_v3_a.xml", "tests/data/scenes/plugins_v3_b.xml"])
def test_textures_match_expected_json(path):
    sc = _load(path)
    shapes = {s.id: s for s in sc.shapes}
    cases = _expected()[path]["textures"]
    assert cases
    for sid, case in cases.items():
        tex = _diffuse_texture(sc.bsdfs[shapes[sid].bsdf])
        got = np.asarray(tex_j(tex, np.asarray(case["uv"], np.float32)))
        want = np.asarray(case["value"])
        np.testing.assert_allclose(np.broadcast_to(got, want.shape), want, rtol=2e-6, atol=2e-7, err_msg=sid)


@pytest.mark.parametrize("filter_type", ["nearest", "bilinear"])
@pytest.mark.parametrize("wrap_mode", ["repeat", "mirror", "clamp"])
def test_bitmap_matches_mitsuba(mi, wrap_mode, filter_type):
    for channels in (1, 3):
        for to_uv in (EYE4, TO_UV):
            d = {"type": "bitmap", "data": IMG[..., :channels], "raw": True, "wrap_mode": wrap_mode,
                 "filter_type": filter_type, "to_uv": to_uv}
            want = _mi_eval_texture(mi, mi.load_dict(_mitsuba_dict(mi, d)), UVS, channels)
            got = np.asarray(tex_j(_one("texture", d), UVS))
            assert got.shape == (len(UVS), channels)
            if filter_type == "nearest" and to_uv is EYE4:
                np.testing.assert_array_equal(got, want)  # texel boundaries included
            else:
                np.testing.assert_allclose(got, want, atol=5e-6, err_msg=f"{channels} {to_uv[0, 0]}")


def test_bitmap_conventions_by_hand():
    img = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
    tex = js.BitmapTexture(data=img, to_uv=EYE3, filter_type="nearest")
    # Row 0 is v in [0, 1/3) (no v flip); texel (i, j) covers [j/4, (j+1)/4) x [i/3, (i+1)/3).
    uv = np.array([[0.0, 0.0], [0.25, 0.0], [0.0, 1 / 3], [0.99, 0.99], [-0.01, 0.0], [1.0, 1.0]], np.float32)
    np.testing.assert_array_equal(tex_j(tex, uv)[..., 0], [0, 1, 4, 11, 3, 0])
    np.testing.assert_array_equal(tex_j(tex.replace(wrap_mode="mirror"), uv)[..., 0], [0, 1, 4, 11, 0, 11])
    np.testing.assert_array_equal(tex_j(tex.replace(wrap_mode="clamp"), uv)[..., 0], [0, 1, 4, 11, 0, 11])
    # Bilinear: texel centres at ((j + 0.5) / W, (i + 0.5) / H); at u = 0 (the
    # edge) repeat blends the first and last columns, clamp and mirror repeat
    # the first.
    bil = tex.replace(filter_type="bilinear")
    uv = np.array([[0.125, 1 / 6], [0.375, 0.5], [0.25, 1 / 6], [0.0, 1 / 6], [0.0, 1 / 6], [0.0, 1 / 6]],
                  np.float32)
    np.testing.assert_allclose(tex_j(bil, uv)[..., 0], [0, 5, 0.5, 1.5, 1.5, 1.5], atol=1e-6)
    np.testing.assert_allclose(tex_j(bil.replace(wrap_mode="clamp"), uv)[3:, 0], [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(tex_j(bil.replace(wrap_mode="mirror"), uv)[3:, 0], [0, 0, 0], atol=1e-6)
    # to_uv applies first: u' = 2 u + 0.25.
    shift = np.array([[2.0, 0, 0.25], [0, 1, 0], [0, 0, 1]], np.float32)
    uv = np.array([[0.0, 0.0], [0.3, 0.0], [0.5, 0.2]], np.float32)
    np.testing.assert_array_equal(tex_j(tex.replace(to_uv=shift), uv)[:2, 0], [1, 3])
    np.testing.assert_allclose(uvmap_j(shift, uv)[2], [1.25, 0.2])
    with pytest.raises(ValueError, match="uv"):
        eval_texture(tex, np.zeros((4, 1)))
    # Extra columns (a render's mesh attributes) do not change the lookup.
    np.testing.assert_array_equal(eval_texture(tex, np.concatenate([uv, np.ones((3, 2), np.float32)], 1)),
                                  eval_texture(tex, uv))


def test_checkerboard_matches_mitsuba(mi):
    for d in ({"type": "checkerboard"},
              {"type": "checkerboard", "to_uv": TO_UV},
              {"type": "checkerboard", "color0": {"type": "rgb", "value": [0.3, 0.2, 0.1]}, "color1": 0.7},
              {"type": "checkerboard", "color0": {"type": "rgb", "value": [1, 0, 0]},
               "color1": {"type": "rgb", "value": [0, 1, 0]}, "to_uv": _affine(scale=(4, 2, 1))}):
        want = _mi_eval_texture(mi, mi.load_dict(_mitsuba_dict(mi, d)), UVS, 3)
        got = np.asarray(tex_j(_one("texture", d), UVS))
        np.testing.assert_array_equal(np.broadcast_to(got, want.shape), want.astype(np.float32), err_msg=str(d))


def test_scalar_lookups_match_mitsubas_eval_1(mi):
    """eval_texture_1 is Mitsuba's `eval_1` (what roughness, blend weights,
    opacities and principled's scalars read): luminance of an RGB bitmap
    (raw or not), the channel mean of an rgb constant, and a checkerboard
    with its colours the other way round from `eval` (Mitsuba's own
    asymmetry, which a checkerboard mask in a Mitsuba scene relies on)."""
    cases = [
        {"type": "bitmap", "data": IMG, "raw": True, "to_uv": TO_UV},
        {"type": "bitmap", "data": IMG, "raw": False},
        {"type": "bitmap", "data": IMG[..., :1], "raw": True, "filter_type": "nearest"},
        {"type": "checkerboard", "color0": 0.0, "color1": 1.0, "to_uv": _affine(scale=(4, 4, 1))},
        {"type": "checkerboard", "color0": {"type": "rgb", "value": [0.3, 0.2, 0.1]}, "color1": 0.7,
         "to_uv": TO_UV},
    ]
    for d in cases:
        mt = mi.load_dict(_mitsuba_dict(mi, d))
        want = np.array([mt.eval_1(_si(mi, uv)) for uv in UVS], np.float32)
        got = np.asarray(tex1_j(_one("texture", d), UVS))
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=5e-6, err_msg=str(d))
    # Constants, as the loader stores them (a float, an rgb).
    for value in (0.3, [0.2, 0.5, 0.9]):
        mt = mi.load_dict({"type": "rgb", "value": value} if isinstance(value, list) else
                          {"type": "uniform", "value": value})
        tex = js.ConstantTexture(value=np.asarray(value, np.float32))
        np.testing.assert_allclose(np.asarray(tex1_j(tex, UVS[:3])), mt.eval_1(_si(mi, UVS[0])), rtol=1e-6)
    # The asymmetry by hand: color0 where eval gives color1.
    chk = js.CheckerboardTexture(color0=np.float32(0.0), color1=np.float32(1.0), to_uv=EYE3)
    uv = np.array([[0.25, 0.25], [0.75, 0.25]], np.float32)
    np.testing.assert_array_equal(np.asarray(tex_j(chk, uv))[:, 0], [0, 1])
    np.testing.assert_array_equal(np.asarray(tex1_j(chk, uv)), [1, 0])


def test_checkerboard_constant_and_means_by_hand():
    chk = js.CheckerboardTexture(color0=np.float32(0.4), color1=np.array([1.0, 2.0, 3.0], np.float32), to_uv=EYE3)
    uv = np.array([[0.1, 0.1], [0.6, 0.1], [0.5, 0.5], [0.6, 0.6], [-0.1, 0.1]], np.float32)
    got = np.asarray(tex_j(chk, uv))
    assert got.shape == (5, 3)  # a scalar and an rgb color: rgb
    # color0 on [0, 0.5]^2 and [0.5, 1]^2 (cell edges belong to the lower cell)
    np.testing.assert_allclose(got[:, 1], [0.4, 2, 0.4, 0.4, 2], rtol=1e-7)
    c = js.ConstantTexture(value=np.float32(0.25))
    assert tex_j(c, np.zeros((2, 4, 2), np.float32)).shape == (2, 4, 1)
    rgb = js.ConstantTexture(value=np.array([1.0, 2.0, 3.0], np.float32))
    np.testing.assert_array_equal(tex_j(rgb, np.zeros((7, 2), np.float32)), np.tile([1, 2, 3], (7, 1)))
    np.testing.assert_allclose(mean_j(chk), [0.7, 1.2, 1.7], rtol=1e-6)
    np.testing.assert_allclose(mean_j(c), [0.25])
    np.testing.assert_allclose(mean_j(js.BitmapTexture(data=IMG, to_uv=EYE3)), IMG.mean(axis=(0, 1)), rtol=1e-6)


def test_bitmap_mean_matches_mitsuba(mi):
    d = {"type": "bitmap", "data": IMG, "raw": True}
    # Mitsuba's Texture::mean of an rgb bitmap is the luminance of the mean texel.
    lum = np.asarray(mean_j(_one("texture", d))) @ np.array([0.212671, 0.715160, 0.072169])
    np.testing.assert_allclose(lum, mi.load_dict(_mitsuba_dict(mi, d)).mean(), rtol=1e-5)


@pytest.mark.parametrize("wrap_mode, filter_type", [("repeat", "bilinear"), ("mirror", "nearest"),
                                                     ("clamp", "bilinear")])
def test_texture_gradients_match_finite_differences(wrap_mode, filter_type):
    uv = np.array([[0.31, 0.42], [0.9, 0.05], [-0.27, 1.33], [0.61, 0.77]], np.float32)
    w = np.random.default_rng(3).normal(size=(4, 3)).astype(np.float32)
    tex = js.BitmapTexture(data=IMG, to_uv=TO_UV3, filter_type=filter_type, wrap_mode=wrap_mode)

    @jax.jit
    def loss(data, to_uv, uv):
        return jnp.sum(eval_texture(tex.replace(data=data, to_uv=to_uv), uv) * w)

    g_data, g_to_uv, g_uv = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(IMG, TO_UV3, uv)
    # texels: the lookup is linear in them
    _check_fd(lambda x: loss(x, TO_UV3, uv), IMG, g_data, 1e-2, 2e-3)
    if filter_type == "bilinear":
        # uv and to_uv (these uvs are away from texel centres, where bilinear has kinks)
        _check_fd(lambda x: loss(IMG, TO_UV3, x), uv, g_uv, 1e-3, 2e-2)
        _check_fd(lambda x: loss(IMG, x, uv), TO_UV3, g_to_uv, 1e-3, 2e-2)
    else:  # piecewise constant
        assert np.all(np.asarray(g_uv) == 0) and np.all(np.asarray(g_to_uv) == 0)


def test_checkerboard_and_constant_gradients():
    uv = np.array([[0.31, 0.42], [0.9, 0.05], [-0.27, 1.33], [0.61, 0.77]], np.float32)
    w = np.random.default_rng(3).normal(size=(4, 3)).astype(np.float32)
    chk = js.CheckerboardTexture(color0=np.array([0.1, 0.2, 0.3], np.float32), color1=np.float32(0.7), to_uv=EYE3)
    g0, g1 = jax.jit(jax.grad(lambda a, b: jnp.sum(eval_texture(chk.replace(color0=a, color1=b), uv) * w),
                              argnums=(0, 1)))(chk.color0, chk.color1)
    same = (uv % 1 > 0.5)[:, 0] == (uv % 1 > 0.5)[:, 1]
    np.testing.assert_allclose(g0, np.sum(w[same], axis=0), rtol=1e-6)
    np.testing.assert_allclose(g1, np.sum(w[~same]), rtol=1e-6)
    c = js.ConstantTexture(value=np.float32(0.5))
    g = jax.jit(jax.grad(lambda v: jnp.sum(eval_texture(c.replace(value=v), uv))))(c.value)
    assert float(g) == 4


def test_textures_jit_and_vmap():
    tex = js.BitmapTexture(data=IMG, to_uv=TO_UV3, wrap_mode="mirror")
    uv = UVS[:40].reshape(5, 8, 2)
    ref = np.asarray(tex_j(tex, uv))
    assert ref.shape == (5, 8, 3)
    np.testing.assert_allclose(ref.reshape(-1, 3), tex_j(tex, UVS[:40]), rtol=1e-6)  # leading axes
    np.testing.assert_allclose(jax.jit(jax.vmap(eval_texture, in_axes=(None, 0)))(tex, uv), ref, rtol=1e-5)
    # vmap over textures: a batch of images (and their to_uv)
    batch = tex.replace(data=np.stack([IMG, 2 * IMG]), to_uv=np.stack([TO_UV3, TO_UV3]))
    out = jax.jit(jax.vmap(eval_texture, in_axes=(0, None)))(batch, uv)
    np.testing.assert_allclose(out, np.stack([ref, 2 * ref]), rtol=1e-5)


# --------------------------------------------------------------------------
# Environment and constant emitters


@pytest.mark.parametrize("path, eid", [("tests/data/scenes/plugins_v3_b.xml", "env"),
                                       ("tests/data/scenes/psdr_v05.xml", "env"),
                                       ("tests/data/scenes/plugins_v3_c.xml", "sky")])
def test_infinite_emitters_match_expected_json(path, eid):
    sc = _load(path)
    emitter = sc.emitters[sc.ids[eid][1]]
    cases = _expected()[path]["emitters"][eid]["radiance_towards"]
    dirs = np.asarray([c["dir"] for c in cases], np.float32)
    want = np.asarray([c["radiance"] for c in cases])
    if isinstance(emitter, js.EnvironmentMap):
        got = np.asarray(env_j(emitter, dirs))
        # float32 rounding of the bilinear weights (u W is ~1e-6 off), times
        # the brightest texel (the sun, 50)
        atol = 4e-7 * emitter.data.shape[1] * float(np.max(emitter.data) * emitter.scale)
    else:
        got = np.asarray(const_j(emitter, dirs))
        atol = 0
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=atol)
    np.testing.assert_array_equal(inf_j(emitter, dirs), got)


def _directions(n=200, seed=0):
    d = np.random.default_rng(seed).normal(size=(n, 3))
    axes = [[0, 1, 0], [0, -1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, 0, -1], [1e-6, 1, 0], [0, -1, 1e-6],
            [-1e-7, -1, 0], [1, 1, 0], [0, 1, -1], [-1, 0, 1e-7]]
    d = np.concatenate([d, np.asarray(axes, np.float64)])
    return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)


DIRS = _directions()
ENVMAPS = [
    {"type": "envmap", "data": np.random.default_rng(5).random((4, 6, 3))},
    {"type": "envmap", "data": np.random.default_rng(6).random((3, 5, 3)), "scale": 0.7,
     "to_world": _rotate([0, 1, 0], 90.0)},
    {"type": "envmap", "data": np.random.default_rng(7).random((8, 16, 3)) * 4, "scale": 1.5,
     "to_world": _rotate([1, 2, 3], 37.0)},
]


@pytest.mark.parametrize("d", ENVMAPS, ids=["plain", "rot_y", "rot_xyz"])
def test_envmap_matches_mitsuba(mi, d):
    want = _mi_eval_env(mi, mi.load_dict(_mitsuba_dict(mi, d)), DIRS)
    env = _one("emitter", d)
    got = np.asarray(env_j(env, DIRS))
    # the poles, the axes and the seam u = 0 included
    np.testing.assert_allclose(got, want, atol=VAL * np.abs(want).max())
    if "to_world" not in d:  # both poles were looked up exactly
        t = np.asarray(uv_j(env, DIRS)[0])[:, 1]
        assert np.any(t == 0) and np.any(t == 1)


def test_envmap_sampling_geometry_matches_mitsuba(mi):
    """Mitsuba's sampled directions map to uv and back; its sample weight is
    eval / pdf; the factor is 1 / (2 pi^2 sin theta) of the local direction."""
    import drjit as dr

    d = ENVMAPS[2]
    ours = _one("emitter", d)
    e = mi.load_dict(_mitsuba_dict(mi, d))
    it = dr.zeros(mi.Interaction3f)
    dirs, radiance = [], []
    for s in np.random.default_rng(8).random((len(DIRS), 2)):  # as many as DIRS: shares compiled code
        ds, weight = e.sample_direction(it, mi.Point2f(*s))
        dirs.append(np.array(ds.d))
        radiance.append(np.array(weight) * ds.pdf)
    dirs = np.asarray(dirs, np.float32)
    uv, factor = uv_j(ours, dirs)
    assert np.all((uv >= 0) & (uv <= 1)) and np.all(uv[:, 0] < 1)
    back, factor2 = dir_j(ours, uv)
    np.testing.assert_allclose(back, dirs, atol=3e-6)
    np.testing.assert_allclose(factor2, factor, rtol=1e-4)
    np.testing.assert_allclose(env_j(ours, dirs), radiance, atol=VAL * np.max(radiance))
    local = dirs @ d["to_world"][:3, :3]
    np.testing.assert_allclose(factor, 1 / (2 * math.pi**2 * np.hypot(local[:, 0], local[:, 2])), rtol=1e-5)


def test_environment_uv_direction_by_hand_and_jacobian():
    env = js.EnvironmentMap(data=np.ones((4, 8, 3), np.float32), scale=np.float32(1), to_world=EYE4)
    dirs = np.array([[0, 0, -1], [1, 0, 0], [0, 0, 1], [-1, 0, 0], [0, 1, 0], [0, -1, 0]], np.float32)
    uv, factor = uv_j(env, dirs)
    np.testing.assert_allclose(uv, [[0, 0.5], [0.25, 0.5], [0.5, 0.5], [0.75, 0.5], [0, 0], [0, 1]], atol=1e-7)
    np.testing.assert_allclose(factor[:4], 1 / (2 * math.pi**2), rtol=1e-6)
    assert np.all(np.isfinite(factor)) and factor[4] > 1e5  # sin theta clamped at 2^-24
    # factor = 1 / |d(direction)/du x d(direction)/dt| (the area element), under a rotation
    rot = env.replace(to_world=_rotate([1, 2, 3], 37.0))
    u = np.random.default_rng(9).uniform(0.02, 0.98, (10, 2)).astype(np.float32)
    u[-1] = [0.3, 0.0]  # a pole: finite derivatives
    jac, jac_factor = jax.jit(jax.vmap(jax.jacfwd(lambda x: environment_direction(rot, x))))(u)
    assert np.all(np.isfinite(jac)) and np.all(np.isfinite(jac_factor))
    area = np.linalg.norm(np.cross(jac[:, :, 0], jac[:, :, 1]), axis=-1)
    directions, factor = dir_j(rot, u)
    np.testing.assert_allclose(factor[:-1], 1 / area[:-1], rtol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=-1), 1, rtol=1e-6)
    np.testing.assert_allclose(uv_j(rot, directions)[0][:-1], u[:-1], atol=2e-6)


def test_envmap_gradients_match_finite_differences_and_are_nan_free():
    d = ENVMAPS[1]
    env = _one("emitter", d)
    # random directions (off the texel centres, where bilinear has kinks) and
    # the two poles of to_world's frame (a rotation about y keeps them)
    dirs = np.concatenate([DIRS[:30], [[0, 1, 0], [0, -1, 0]]]).astype(np.float32)
    rng = np.random.default_rng(2)
    w = rng.normal(size=dirs.shape).astype(np.float32)
    w_uv = rng.normal(size=(len(dirs), 2)).astype(np.float32)

    @jax.jit
    def loss(data, scale, angle, dirs):
        e = env.replace(data=data, scale=scale, to_world=js.rotate([0, 1, 0], angle))
        uv, factor = environment_uv(e, dirs)
        return jnp.sum(eval_environment(e, dirs) * w) + jnp.sum(uv * w_uv) + 1e-2 * jnp.sum(factor[:30])

    data, scale, angle = np.asarray(env.data), np.float32(0.7), np.float32(90.0)
    g_data, g_scale, g_angle, g_dirs = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(data, scale, angle, dirs)
    _check_fd(lambda x: loss(x, scale, angle, dirs), data, g_data, 1e-2, 2e-3)  # linear in data
    _check_fd(lambda x: loss(data, x, angle, dirs), scale, g_scale, 1e-2, 2e-3)  # and in scale
    _check_fd(lambda x: loss(data, scale, x, dirs), angle, g_angle, 5e-2, 2e-2)  # to_world (degrees)
    # the directions, off the poles; at the poles finite, zero across them
    g_dirs = np.asarray(g_dirs)
    assert np.all(np.isfinite(g_dirs))
    np.testing.assert_array_equal(g_dirs[30:, [0, 2]], 0)
    mask = np.arange(len(dirs))[:, None] < 30
    _check_fd(lambda x: loss(data, scale, angle, dirs + mask * x), np.zeros_like(dirs), g_dirs * mask, 1e-3, 2e-2)


def test_envmap_jit_and_vmap():
    env = _one("emitter", ENVMAPS[2])
    dirs = DIRS.reshape(53, 4, 3)
    ref = np.asarray(env_j(env, DIRS)).reshape(dirs.shape)  # (compiled for the Mitsuba test too)
    np.testing.assert_allclose(jax.jit(jax.vmap(eval_environment, in_axes=(None, 0)))(env, dirs), ref, rtol=1e-5)
    batch = env.replace(scale=np.array([1.5, 3.0], np.float32), data=np.stack([env.data, env.data]),
                        to_world=np.stack([env.to_world, env.to_world]))
    out = jax.jit(jax.vmap(eval_environment, in_axes=(0, None)))(batch, dirs)
    np.testing.assert_allclose(out, np.stack([ref, 2 * ref]), rtol=1e-5)


def test_constant_and_area_emitters():
    sky = js.ConstantEmitter(radiance=js.ConstantTexture(value=np.float32(2.0)))
    np.testing.assert_array_equal(const_j(sky, np.zeros((3, 5, 3), np.float32)), np.full((3, 5, 3), 2.0))
    g = jax.jit(jax.grad(lambda v: jnp.sum(eval_constant(sky.replace(radiance=js.ConstantTexture(value=v)),
                                                         np.ones((4, 3), np.float32)))))(np.float32(2.0))
    assert float(g) == 12
    area = js.AreaLight(radiance=js.BitmapTexture(data=IMG[..., :1], to_uv=EYE3), shape=0)
    uv = np.array([[0.1, 0.2], [0.7, 0.4]], np.float32)
    out = np.asarray(area_j(area, uv, np.array([0.5, -0.5], np.float32)))
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out[0], np.broadcast_to(np.asarray(tex_j(area.radiance, uv))[0], 3))
    np.testing.assert_array_equal(out[1], 0)  # back side


# --------------------------------------------------------------------------
# Delta lights


@pytest.mark.parametrize("path", ["tests/data/scenes/plugins_v3_a.xml", "tests/data/scenes/plugins_v3_b.xml"])
def test_delta_light_frames_match_expected_json(path):
    sc = _load(path)
    checked = 0
    for eid, want in _expected()[path]["emitters"].items():
        if want["type"] not in ("PointLight", "SpotLight", "DirectionalEmitter"):
            continue
        light = sc.emitters[sc.ids[eid][1]]
        if "position" in want:
            np.testing.assert_allclose(position_j(light), want["position"], atol=1e-6)
            checked += 1
        if "direction" in want:
            np.testing.assert_allclose(direction_j(light), want["direction"], atol=1e-6)
            checked += 1
    assert checked >= 1


DELTA_LIGHTS = [
    {"type": "point", "position": [1, 2, 3], "intensity": {"type": "rgb", "value": [1, 2, 3]}},
    {"type": "point", "to_world": _affine(translate=(-1, 0.5, 0))},
    {"type": "spot"},
    {"type": "spot", "cutoff_angle": 30.0, "beam_width": 10.0, "intensity": {"type": "rgb", "value": [1, 2, 3]},
     "to_world": _affine(translate=(0.3, 0.2, 0.1)) @ _rotate([1, -1, 0], 50.0)},
    {"type": "spot", "cutoff_angle": 60.0, "beam_width": 0.0,
     "to_world": _affine(translate=(0, 1, 0)) @ _affine(scale=(1, 2, 1))},
    {"type": "spot", "cutoff_angle": 30.0, "beam_width": 30.0},
    {"type": "spot", "cutoff_angle": 20.0, "beam_width": 25.0},
    {"type": "directional", "direction": [1, 2, 3], "irradiance": {"type": "rgb", "value": [1, 2, 3]}},
    {"type": "directional", "direction": [0, -1, 0]},
]
POINTS = (np.random.default_rng(10).normal(size=(300, 3)) * 2).astype(np.float32)


@pytest.mark.parametrize("d", DELTA_LIGHTS, ids=lambda d: d["type"] + str(len(d)))
def test_delta_lights_match_mitsuba(mi, d):
    """(wi, dist, value) against Mitsuba's sample_direction (direction, distance,
    weight) and eval_direction, at points all around (spots: inside the beam,
    in the falloff ring and outside)."""
    import drjit as dr

    if d["type"] == "spot" and d.get("beam_width", 0) > d.get("cutoff_angle", 20):
        # Mitsuba accepts a beam wider than the cutoff (a hard cone); our
        # loader may refuse it, the lookup follows Mitsuba.
        light = js.SpotLight(intensity=js.ConstantTexture(value=np.float32(1)),
                             cutoff_angle=np.float32(d["cutoff_angle"]), beam_width=np.float32(d["beam_width"]),
                             to_world=EYE4)
    else:
        light = _one("emitter", d)
    e = mi.load_dict(_mitsuba_dict(mi, d))
    wi, dist, value = (np.asarray(x) for x in delta_j(light, POINTS))
    want_d, want_dist, want_w, want_eval = [], [], [], []
    for p in POINTS:
        it = dr.zeros(mi.Interaction3f)
        it.p = mi.Point3f(*p.astype(np.float64))
        ds, weight = e.sample_direction(it, mi.Point2f(0.5, 0.5))
        want_d.append(np.array(ds.d))
        want_dist.append(ds.dist)
        want_w.append(np.array(weight))
        want_eval.append(np.array(e.eval_direction(it, ds)))
    want_w = np.asarray(want_w)
    np.testing.assert_allclose(wi, want_d, atol=1e-6)
    if d["type"] == "directional":
        assert np.all(np.isinf(dist))  # Mitsuba: beyond the scene's bounding sphere
    else:
        np.testing.assert_allclose(dist, want_dist, rtol=1e-6)
        np.testing.assert_allclose(want_eval, want_w, rtol=1e-6)  # eval_direction = the weight (pdf 1)
    np.testing.assert_allclose(value, want_w, rtol=2e-5, atol=1e-6 * want_w.max())
    if d["type"] == "spot" and d.get("beam_width", 1.0) < d.get("cutoff_angle", 20.0):
        falloff = want_w[:, 0] * np.asarray(want_dist) ** 2 / float(np.ravel(light.intensity.value)[0])
        assert np.any((falloff > 0) & (falloff < 0.999))  # the falloff ring was tested


def test_spot_falloff_by_hand_and_gradients():
    spot = js.SpotLight(intensity=js.ConstantTexture(value=np.float32(1)), cutoff_angle=np.float32(30),
                        beam_width=np.float32(10), to_world=EYE4)
    angles = np.deg2rad(np.array([0, 5, 10, 15, 20, 25, 29.9, 30, 40, 90, 180], np.float64))
    dirs = np.stack([np.sin(angles), np.zeros_like(angles), np.cos(angles)], -1).astype(np.float32)
    # linear in the angle between beam_width and cutoff_angle (not a smoothstep)
    np.testing.assert_allclose(falloff_j(spot, dirs), [1, 1, 1, 0.75, 0.5, 0.25, 0.005, 0, 0, 0, 0], atol=2e-5)

    def loss(cutoff, beam, m, x):
        s = spot.replace(cutoff_angle=cutoff, beam_width=beam, to_world=m)
        return jnp.sum(spot_light_incident(s, x)[2])

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))
    # at r = 2 along the falloff curve, plus one point at the light and one behind it
    pts = np.concatenate([dirs * 2, [[0, 0, 0], [0, 0, -1]]]).astype(np.float32)
    gc, gb, gm, gx = grad(spot.cutoff_angle, spot.beam_width, EYE4, pts)
    for x in (gc, gb, gm, gx):
        assert np.all(np.isfinite(x))
    # in the ring (15, 20, 25 and 29.9 degrees), angles in degrees:
    # dF/dc = (t - b) / (c - b)^2, dF/db = (c - t) / (c - b)^2; 3 channels / r^2
    np.testing.assert_allclose(gc, 3 / 4 * (5 + 10 + 15 + 19.9) / 400, rtol=1e-3)
    np.testing.assert_allclose(gb, 3 / 4 * (15 + 10 + 5 + 0.1) / 400, rtol=1e-3)
    # beam_width == cutoff_angle: a hard cone, NaN-free derivatives
    hard = spot.replace(beam_width=np.float32(30))
    np.testing.assert_array_equal(falloff_j(hard, dirs), [1] * 7 + [0] * 4)
    for x in grad(hard.cutoff_angle, hard.beam_width, EYE4, pts):
        assert np.all(np.isfinite(x))


def test_point_and_directional_by_hand_and_gradients():
    pl = js.PointLight(intensity=js.ConstantTexture(value=np.float32(4)), position=np.array([0.0, 2, 0], np.float32))
    wi, dist, value = delta_j(pl, np.zeros((2, 3), np.float32))
    np.testing.assert_allclose(wi, [[0, 1, 0]] * 2)
    np.testing.assert_allclose(dist, [2, 2])
    np.testing.assert_allclose(value, np.ones((2, 3)))

    def loss(position, x):
        return jnp.sum(point_light_incident(pl.replace(position=position), x)[2])

    gp, gx = jax.jit(jax.grad(loss, argnums=(0, 1)))(pl.position, np.array([[0, 0, 0], [0, 2, 0]], np.float32))
    np.testing.assert_allclose(gp, [0, -3, 0], rtol=1e-6)  # d(3 * 4 / y^2)/dy at y = 2; 0 at the light
    assert np.all(np.isfinite(gx))
    vm = jax.jit(jax.vmap(point_light_incident, in_axes=(None, 0)))(pl, np.zeros((5, 2, 3), np.float32))
    assert vm[2].shape == (5, 2, 3)
    sun = js.DirectionalLight(irradiance=js.ConstantTexture(value=np.array([1.0, 2, 3], np.float32)),
                              to_world=_rotate([1, 0, 0], 90.0))
    np.testing.assert_allclose(direction_j(sun), [0, -1, 0], atol=1e-7)
    wi, dist, value = delta_j(sun, np.zeros((4, 3), np.float32))
    np.testing.assert_allclose(wi, [[0, 1, 0]] * 4, atol=1e-7)
    assert np.all(np.isinf(dist))
    np.testing.assert_array_equal(value, [[1, 2, 3]] * 4)
    with pytest.raises(TypeError, match="delta light"):
        delta_light_incident(js.ConstantEmitter(radiance=js.ConstantTexture(value=np.float32(1))), POINTS)


_MANY_BSDFS = """<scene version="3.0.0">
  <bsdf type="diffuse" id="a"><rgb name="reflectance" value="0.2, 0.4, 0.6"/></bsdf>
  <bsdf type="diffuse" id="b"><rgb name="reflectance" value="0.7, 0.1, 0.3"/></bsdf>
  <bsdf type="diffuse" id="c">
    <texture type="checkerboard" name="reflectance">
      <rgb name="color0" value="0.1, 0.2, 0.3"/><rgb name="color1" value="0.9, 0.8, 0.7"/>
    </texture>
  </bsdf>
  <bsdf type="roughconductor" id="d"><float name="alpha" value="0.1"/></bsdf>
  <bsdf type="roughconductor" id="e"><float name="alpha" value="0.4"/></bsdf>
  <bsdf type="diffuse" id="f"><rgb name="reflectance" value="0.5, 0.5, 0.1"/></bsdf>
  <shape type="rectangle"><ref id="a"/></shape>
</scene>"""


@pytest.mark.parametrize("textured", [False, True])
def test_scene_bsdfs_give_each_point_its_own_bsdf(textured):
    """SceneBSDFs evaluates each kind once with every point's own parameters
    (textured or not): eval, pdf, sample and the gradient with respect to one
    BSDF's reflectance equal those of that BSDF evaluated alone."""
    import jaxrender as jr
    from jaxrender.integrators.bsdfs import SceneBSDFs, bsdf_triple
    from jaxrender.integrators.warp import square_to_uniform_hemisphere

    scene = jr.load_string(_MANY_BSDFS)
    if not textured:  # drop the checkerboard: every diffuse is then untextured
        scene = scene.replace(bsdfs=tuple(b if i != 2 else scene.bsdfs[0] for i, b in enumerate(scene.bsdfs)))
    n = 64
    rng = np.random.default_rng(3)
    index = jnp.asarray(rng.integers(-1, len(scene.bsdfs), n), jnp.int32)
    uv = jnp.asarray(rng.random((n, 2)), jnp.float32)
    wi = square_to_uniform_hemisphere(jnp.asarray(rng.random((n, 2)), jnp.float32))
    wo = square_to_uniform_hemisphere(jnp.asarray(rng.random((n, 2)), jnp.float32))
    u1 = jnp.asarray(rng.random(n), jnp.float32)
    u2 = jnp.asarray(rng.random((n, 2)), jnp.float32)

    together = SceneBSDFs(scene, uv, index)
    ev, pdf, bs = together.eval(wi, wo), together.pdf(wi, wo), together.sample(wi, u1, u2)
    for k in range(n):
        i = int(index[k])
        if i < 0:
            continue
        alone = bsdf_triple(scene.bsdfs[i], uv[k:k + 1])
        sl = slice(k, k + 1)
        np.testing.assert_allclose(ev[sl], alone.eval(wi[sl], wo[sl]), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(pdf[sl], alone.pdf(wi[sl], wo[sl]), rtol=1e-6, atol=1e-7)
        one = alone.sample(wi[sl], u1[sl], u2[sl])
        np.testing.assert_allclose(bs.wo[sl], one.wo, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(bs.weight[sl], one.weight, rtol=1e-6, atol=1e-7)

    def total(value, which):
        b = scene.bsdfs[which]
        s = scene.replace(bsdfs=tuple(x if j != which else b.replace(reflectance=b.reflectance.replace(value=value))
                                      for j, x in enumerate(scene.bsdfs)))
        return jnp.sum(SceneBSDFs(s, uv, index).eval(wi, wo))

    for which in (0, 1, 5):
        g = jax.grad(total)(scene.bsdfs[which].reflectance.value, which)
        m = np.asarray(index) == which
        expect = np.sum(np.asarray(bsdf_triple(scene.bsdfs[which].replace(
            reflectance=js.ConstantTexture(jnp.ones(3, jnp.float32))), uv).eval(wi, wo))[m], axis=0)
        np.testing.assert_allclose(g, expect, rtol=1e-5, atol=1e-6)
