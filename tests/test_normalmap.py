"""normalmap (Mitsuba 3's): the nested BSDF in a frame read from a texture.

References: Mitsuba's own plugin, evaluated point by point in scalar mode
(eval, pdf and sample at random uvs, directions and random numbers, over a
bitmap of random normals), and the sampler's mean weight against the
integral of `eval` (uniform-sphere Monte Carlo). The image is compared with
Mitsuba in test_render.py (normalmap).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import mitsuba_bsdf_queries

import jaxrender as jr
from jaxrender.integrators.bsdfs import bsdf_triple

RES = 4


def _normals(seed=0):
    """A (RES, RES, 3) raw normal map: tilted normals up to ~50 degrees, and
    one texel lying almost in the surface (grazing perturbations)."""
    rng = np.random.default_rng(seed)
    n = rng.normal(0, 0.5, (RES, RES, 3))
    n[..., 2] = np.abs(n[..., 2]) + 0.6
    n[0, 0] = [0.99, 0.1, 0.05]
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return ((n + 1) / 2).astype(np.float32)


NESTED = {
    "diffuse": {"type": "diffuse", "reflectance": {"type": "rgb", "value": [0.2, 0.5, 0.8]}},
    "roughconductor": {"type": "roughconductor", "alpha": 0.3, "distribution": "ggx"},
    "anisotropic": {"type": "roughconductor", "alpha_u": 0.1, "alpha_v": 0.4, "distribution": "beckmann"},
    "roughplastic": {"type": "roughplastic", "alpha": 0.2},
}


def _inputs(n, seed):
    rng = np.random.default_rng(seed)

    def unit(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    wi = unit(rng.normal(size=(n, 3)))
    wi[:, 2] = np.abs(wi[:, 2]) + 0.05
    wi = unit(wi)
    wo = unit(rng.normal(size=(n, 3)))
    wo[: n // 2, 2] = np.abs(wo[: n // 2, 2])  # most above the horizon
    wo = unit(wo)
    # Texel centres (nearest filtering): every point reads one texel exactly.
    ij = rng.integers(0, RES, (n, 2))
    uv = (ij + 0.5) / RES
    return wi.astype(np.float32), wo.astype(np.float32), uv.astype(np.float32), \
        rng.uniform(size=n).astype(np.float32), rng.uniform(size=(n, 2)).astype(np.float32)


@pytest.mark.parametrize("nested", sorted(NESTED))
def test_normalmap_matches_mitsuba(nested):
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    data = _normals()
    spec = {"type": "normalmap", "nested": NESTED[nested],
            "normalmap": {"type": "bitmap", "raw": True, "filter_type": "nearest"}}
    n = 64
    wi, wo, uv, u1, u2 = _inputs(n, len(nested))

    b = mi.load_dict(dict(spec, normalmap=dict(spec["normalmap"], data=mi.TensorXf(data))))
    ref = mitsuba_bsdf_queries(mi, b, wi, wo, uv, u1, u2)

    # Ours, with the same texels in a bitmap texture of the scene loader.
    scene = jr.load_dict({"type": "scene", "b": dict(spec, normalmap=dict(spec["normalmap"], data=data))})
    t = bsdf_triple(scene.bsdfs[0], jnp.asarray(uv))
    ev = np.asarray(t.eval(jnp.asarray(wi), jnp.asarray(wo)))
    pdf = np.asarray(t.pdf(jnp.asarray(wi), jnp.asarray(wo)))
    s = t.sample(jnp.asarray(wi), jnp.asarray(u1), jnp.asarray(u2))
    scale = max(np.abs(ref["eval"]).max(), 1e-3)
    np.testing.assert_allclose(ev, ref["eval"], rtol=2e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(pdf, ref["pdf"], rtol=2e-4, atol=1e-5 * max(ref["pdf"].max(), 1e-3))
    assert (ref["eval"] > 0).any() and (ref["eval"] == 0).any()  # both sides of the mask are exercised
    valid = ref["weight"].max(-1) > 0
    np.testing.assert_array_equal(np.asarray(s.weight).max(-1) > 0, valid)
    np.testing.assert_allclose(np.asarray(s.wo)[valid], ref["wo"][valid], atol=2e-5)
    np.testing.assert_allclose(np.asarray(s.weight)[valid], ref["weight"][valid], rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(s.pdf)[valid], ref["spdf"][valid], rtol=2e-4)


def test_normalmap_sampling_reproduces_the_albedo():
    """Mean sample weight = the integral of eval (which also checks that
    the pdf a sample reports is the density it was drawn from)."""
    N = 1 << 17
    data = _normals(3)
    scene = jr.load_dict({"type": "scene", "b": {
        "type": "normalmap", "nested": NESTED["roughconductor"],
        "normalmap": {"type": "bitmap", "raw": True, "filter_type": "nearest", "data": data}}})
    t = bsdf_triple(scene.bsdfs[0], jnp.full((N, 2), 1.5 / RES, jnp.float32))
    wi = jnp.broadcast_to(jnp.asarray([0.3, -0.2, 0.93], jnp.float32), (N, 3))
    wi = wi / jnp.linalg.norm(wi, axis=-1, keepdims=True)
    u = jax.random.uniform(jax.random.key(1), (N, 3))
    s = t.sample(wi, u[:, 0], u[:, 1:])
    v = jax.random.normal(jax.random.key(2), (N, 3))
    wo = v / jnp.linalg.norm(v, axis=-1, keepdims=True)
    albedo = np.asarray(jnp.mean(t.eval(wi, wo), 0) * 4 * np.pi)
    assert albedo.min() > 0.2
    np.testing.assert_allclose(np.asarray(jnp.mean(s.weight, 0)), albedo, rtol=0.03)


def test_normalmap_loader_names_and_errors():
    data = _normals()
    scene = jr.load_dict({"type": "scene", "wood": {
        "type": "normalmap", "nested": NESTED["diffuse"],
        "normalmap": {"type": "bitmap", "raw": True, "data": data}}})
    names = set(jr.traverse(scene))
    assert {"wood.normalmap.data", "wood.nested_bsdf.reflectance.value"} <= names
    assert isinstance(scene.bsdfs[0], jr.NormalMap)
    with pytest.raises(jr.SceneError, match="normalmap"):
        jr.load_dict({"type": "scene", "b": {"type": "normalmap", "nested": NESTED["diffuse"]}})
    with pytest.raises(jr.SceneError, match="one nested BSDF"):
        jr.load_dict({"type": "scene", "b": {"type": "normalmap", "normalmap": 0.5}})


def test_normalmap_texels_are_differentiable():
    """d(render)/d(texel) against central differences of the render."""
    data = _normals(5)
    xml_scene = {
        "type": "scene",
        "integrator": {"type": "direct"},
        "sensor": {"type": "perspective", "fov": 30, "to_world": jr.look_at([0, 0, 4], [0, 0, 0], [0, 1, 0]),
                   "film": {"type": "hdrfilm", "width": 8, "height": 8}, "sampler": {"type": "independent", "sample_count": 16}},
        "plane": {"type": "rectangle", "bsdf": {"type": "normalmap", "nested": NESTED["roughconductor"],
                                                  "normalmap": {"type": "bitmap", "raw": True, "data": data}}},
        "light": {"type": "point", "position": [1, 1, 2], "intensity": {"type": "rgb", "value": [10, 10, 10]}},
    }
    scene = jr.load_dict(xml_scene)
    name = "plane.bsdf.normalmap.data"
    params = jr.traverse(scene)
    assert name in params, sorted(params)

    def loss(x):
        return jnp.sum(jr.render(jr.replace(scene, {name: x}), seed=0))

    x0 = params[name]
    g = jax.grad(loss)(x0)
    direction = jax.random.normal(jax.random.key(3), x0.shape) * 0.02
    eps = 0.5
    fd = (loss(x0 + eps * direction) - loss(x0 - eps * direction)) / (2 * eps)
    assert abs(float(jnp.vdot(g, direction)) - float(fd)) <= 0.05 * abs(float(fd)) + 1e-4


def test_tangent_frame_follows_the_surface():
    """Turning an anisotropic floor about its own normal changes the image
    only through the shading frame's tangent (dp_du): the derivative of the
    render with respect to that turn (through the surface interaction's
    dp_du) against central differences of renders with the same samples.
    The floor reaches beyond the view, so no edge moves."""
    floor = {"type": "rectangle", "to_world": jr.scale(20) @ jr.rotate([1, 0, 0], -90),
             "bsdf": {"type": "roughconductor", "alpha_u": 0.05, "alpha_v": 0.4, "distribution": "ggx"}}
    scene = jr.load_dict({
        "type": "scene", "integrator": {"type": "direct"},
        "sensor": {"type": "perspective", "fov": 40, "to_world": jr.look_at([0, 2, 3], [0, 0, 0], [0, 1, 0]),
                   "film": {"type": "hdrfilm", "width": 12, "height": 8},
                   "sampler": {"type": "independent", "sample_count": 32}},
        "floor": floor,
        "light": {"type": "point", "position": [0.5, 1.5, 0.5], "intensity": {"type": "rgb", "value": [5, 5, 5]}},
    })
    m0 = jr.traverse(scene)["floor.to_world"]

    def image(theta):
        c, s = jnp.cos(theta), jnp.sin(theta)
        turn = jnp.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], jnp.float32)
        return jr.render(jr.replace(scene, {"floor.to_world": m0 @ turn}), seed=3, boundary=False)

    theta, eps = 0.4, 0.02
    img, d_img = jax.jvp(image, (jnp.float32(theta),), (jnp.float32(1.0),))
    fd = (image(theta + eps) - image(theta - eps)) / (2 * eps)
    assert float(jnp.abs(fd).mean()) > 0.05 * float(img.mean())  # the turn matters
    err = float(jnp.abs(d_img - fd).mean() / jnp.abs(fd).mean())
    assert err < 0.05, err


def _heights(seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (RES, RES, 1)).astype(np.float32)


@pytest.mark.parametrize("nested", ["diffuse", "roughconductor"])
@pytest.mark.parametrize("channels", [1, 3])
def test_bumpmap_matches_mitsuba(nested, channels):
    """bumpmap against Mitsuba's plugin at random uvs (bilinear lookups,
    so the height's gradient varies within texels), on a flat surface
    whose dp/du, dp/dv are the frame's s and t."""
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    data = _heights(channels)
    if channels == 3:
        data = np.concatenate([data, _heights(7), _heights(9)], -1)
    spec = {"type": "bumpmap", "scale": 0.3, "nested": NESTED[nested],
            "height": {"type": "bitmap", "raw": True}}
    n = 64
    wi, wo, _, u1, u2 = _inputs(n, channels + len(nested))
    uv = np.random.default_rng(4).uniform(0.05, 0.95, (n, 2)).astype(np.float32)

    b = mi.load_dict(dict(spec, height=dict(spec["height"], data=mi.TensorXf(data))))
    ctx = mi.BSDFContext()
    si = mi.SurfaceInteraction3f()
    si.n = mi.Normal3f(0, 0, 1)
    si.sh_frame = mi.Frame3f(si.n)
    si.dp_du, si.dp_dv = mi.Vector3f(1, 0, 0), mi.Vector3f(0, 1, 0)
    ref = {k: [] for k in ("eval", "pdf", "weight")}
    for k in range(n):
        si.uv = mi.Point2f(uv[k])
        si.wi = mi.Vector3f(wi[k])
        ref["eval"].append(np.array(b.eval(ctx, si, mi.Vector3f(wo[k]))))
        ref["pdf"].append(b.pdf(ctx, si, mi.Vector3f(wo[k])))
        ref["weight"].append(np.array(b.sample(ctx, si, float(u1[k]), mi.Point2f(u2[k]))[1]))
    ref = {k: np.array(v) for k, v in ref.items()}

    scene = jr.load_dict({"type": "scene", "b": dict(spec, height=dict(spec["height"], data=data))})
    t = bsdf_triple(scene.bsdfs[0], jnp.asarray(uv))
    ev = np.asarray(t.eval(jnp.asarray(wi), jnp.asarray(wo)))
    pdf = np.asarray(t.pdf(jnp.asarray(wi), jnp.asarray(wo)))
    w = np.asarray(t.sample(jnp.asarray(wi), jnp.asarray(u1), jnp.asarray(u2)).weight)
    assert (ref["eval"] > 0).sum() > n // 4
    np.testing.assert_allclose(ev, ref["eval"], rtol=1e-3, atol=1e-5 * np.abs(ref["eval"]).max())
    np.testing.assert_allclose(pdf, ref["pdf"], rtol=1e-3, atol=1e-5 * ref["pdf"].max())
    np.testing.assert_allclose(w, ref["weight"], rtol=1e-3, atol=1e-5)


def test_bumpmap_loader_names_and_errors():
    scene = jr.load_dict({"type": "scene", "bumpy": {
        "type": "bumpmap", "scale": 2.0, "nested": NESTED["diffuse"],
        "h": {"type": "bitmap", "raw": True, "data": _heights()}}})
    b = scene.bsdfs[0]
    assert isinstance(b, jr.BumpMap) and b.scale == 2.0
    names = set(jr.traverse(scene))
    assert {"bumpy.nested_texture.data", "bumpy.nested_bsdf.reflectance.value"} <= names
    with pytest.raises(jr.SceneError, match="one nested texture"):
        jr.load_dict({"type": "scene", "b": {"type": "bumpmap", "nested": NESTED["diffuse"]}})
