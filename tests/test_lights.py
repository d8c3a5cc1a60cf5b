"""Emitter sampling of the integrators, against its own pdf (chi-square) and
analytic values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import rel_mae
from scipy import stats

import jaxrender as jr
from jaxrender.integrators.interaction import prepare_scene
from jaxrender.integrators.lights import sample_emitter

QUAD = """<scene version="3.0.0">
  <shape type="rectangle" id="lamp">
    <transform name="to_world"><scale x="2" y="1" z="1"/><rotate x="1" angle="90"/><translate y="3"/></transform>
    <emitter type="area"><rgb name="radiance" value="2, 3, 4"/></emitter>
  </shape>
  <emitter type="point"><point name="position" x="0" y="5" z="0"/><rgb name="intensity" value="1, 1, 1"/></emitter>
</scene>"""


def test_area_light_sampling_is_uniform_by_area_with_matching_pdf():
    """Points sampled on a 4x2 quad light (y = 3, facing -y after the rotation)
    from a reference point are uniform over its area (chi-square over an 8x8
    grid), and the returned solid-angle pdf is dist^2 / (|cos| area) times the
    1/2 emitter-selection probability (two emitters)."""
    scene = jr.load_string(QUAD)
    arrays = prepare_scene(scene)
    n = 200_000
    p = jnp.broadcast_to(jnp.array([0.3, 0.0, 0.2], jnp.float32), (n, 3))
    u = jax.random.uniform(jax.random.key(0), (n, 3))
    # u_select < 0.5 picks emitter 0 (the quad); keep those samples.
    es = sample_emitter(scene, arrays, p, u[:, 0] * 0.5, u[:, 1:3])
    d, dist, pdf = np.asarray(es.d), np.asarray(es.dist), np.asarray(es.pdf)
    q = np.asarray(p) + d * dist[:, None]
    np.testing.assert_allclose(q[:, 1], 3.0, atol=1e-4)  # on the light's plane
    assert (np.abs(q[:, 0]) <= 2 + 1e-4).all() and (np.abs(q[:, 2]) <= 1 + 1e-4).all()
    counts, _, _ = np.histogram2d(q[:, 0], q[:, 2], bins=8, range=[[-2, 2], [-1, 1]])
    assert stats.chisquare(counts.ravel()).pvalue > 0.01
    cos = np.abs(d[:, 1])
    expected = dist**2 / (cos * 8.0) / 2.0
    np.testing.assert_allclose(pdf, expected, rtol=1e-4)
    # weight = radiance / pdf, as Mitsuba's sample_direction returns.
    np.testing.assert_allclose(np.asarray(es.weight), np.array([2, 3, 4]) / pdf[:, None], rtol=1e-4)


def test_point_light_sample_is_a_delta_with_inverse_square_falloff():
    scene = jr.load_string(QUAD)
    arrays = prepare_scene(scene)
    p = jnp.array([[0.0, 1.0, 0.0]], jnp.float32)
    es = sample_emitter(scene, arrays, p, jnp.array([0.75]), jnp.array([[0.3, 0.6]]))
    assert bool(es.is_delta[0])
    np.testing.assert_allclose(np.asarray(es.d[0]), [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(float(es.dist[0]), 4.0, rtol=1e-6)
    # intensity / dist^2, times 2 for the 1/2 selection probability.
    np.testing.assert_allclose(np.asarray(es.weight[0]), [2 / 16] * 3, rtol=1e-5)


ENVMAP = """<scene version="3.0.0">
  <emitter type="envmap" id="sky"><string name="filename" value="{path}"/>
    <transform name="to_world"><rotate y="1" angle="30"/><rotate x="1" angle="20"/></transform>
  </emitter>
</scene>"""


def _envmap_scene(tmp_path):
    """A 16x8 lat-long map: dim everywhere, five bright texels of different
    colours, two of them in the rows next to the poles."""
    data = np.full((8, 16, 3), 0.2, np.float32)
    data[0, 7] = [4.0, 1.0, 0.5]
    data[2, 3] = [8.0, 8.0, 8.0]
    data[4, 12] = [0.5, 3.0, 1.0]
    data[5, 10] = [2.0, 2.0, 6.0]
    data[7, 0] = [5.0, 5.0, 5.0]
    path = tmp_path / "sky.exr"
    jr.write_image(str(path), data)
    return jr.load_string(ENVMAP.format(path=path)), data


def test_envmap_sampling_through_the_integrator_matches_its_density(tmp_path):
    """Directions from `sample_emitter` on an envmap-only scene, binned by the
    texel of the sampling grid they fall in (through `environment_uv`, the
    inverse of the direction mapping, so a rotated `to_world` is undone):

    - the probability of each texel, integrated numerically from the
      solid-angle pdf that MIS uses (`environment_emission`) over the texel's
      patch of sphere (d omega = 2 pi^2 sin(theta) du dv), equals the analytic
      one, luminance(texel) sin(theta_row) / sum, as Mitsuba's envmap builds
      it (texels shrink towards the poles), and sums to 1;
    - the counts follow it (chi-square over the 128 texels);
    - the returned pdf is p_texel W H / (2 pi^2 sin(theta)) and equals
      `environment_emission`'s pdf of the same direction; weight = radiance / pdf.
    Dropping sin(theta) from the table (or from the uv-to-solid-angle factor)
    moves the analytic check and the pdf check by up to 5x near the poles."""
    from jaxrender.integrators.lights import environment_emission, light_tables
    from jaxrender.integrators.warp import luminance
    from jaxrender.scene.emitters import environment_direction, environment_uv

    scene, data = _envmap_scene(tmp_path)
    env = scene.emitters[0]
    arrays = prepare_scene(scene)
    tables = light_tables(scene, arrays)
    h, w = data.shape[:2]

    # Analytic texel probabilities: luminance times sin(theta) of the row centre.
    theta_c = np.pi * (np.arange(h) + 0.5) / h
    weights = np.asarray(luminance(data)) * np.sin(theta_c)[:, None]
    p_texel = weights / weights.sum()

    # The code's solid-angle pdf integrated over each texel (midpoint rule).
    m = 16
    sub = (np.arange(m) + 0.5) / m
    uu = (np.arange(w)[:, None] + sub[None, :]).ravel() / w
    vv = (np.arange(h)[:, None] + sub[None, :]).ravel() / h
    uv = np.stack(np.meshgrid(uu, vv), axis=-1).astype(np.float32)  # (h m, w m, 2)
    dirs, _ = environment_direction(env, uv.reshape(-1, 2))
    _, pdf_grid = environment_emission(scene, dirs, tables)
    domega = 2 * np.pi**2 * np.sin(np.pi * uv[..., 1].astype(np.float64)) / (h * m * w * m)
    integrated = (np.asarray(pdf_grid, np.float64).reshape(h * m, w * m) * domega)
    integrated = integrated.reshape(h, m, w, m).sum((1, 3))
    np.testing.assert_allclose(integrated.sum(), 1.0, rtol=2e-3)
    np.testing.assert_allclose(integrated, p_texel, rtol=5e-3, atol=1e-6)

    # Sample through the integrator's code path.
    n = 200_000
    u = jax.random.uniform(jax.random.key(1), (n, 3))
    p = jnp.broadcast_to(jnp.array([0.3, -1.0, 2.0], jnp.float32), (n, 3))
    es = sample_emitter(scene, arrays, p, u[:, 0], u[:, 1:3], tables)
    d, pdf = np.asarray(es.d), np.asarray(es.pdf)
    assert np.isinf(np.asarray(es.dist)).all() and not np.asarray(es.is_delta).any()
    np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-5)
    suv, _ = environment_uv(env, es.d)
    suv = np.asarray(suv)
    col = np.clip(np.floor(suv[:, 0] * w).astype(int), 0, w - 1)
    row = np.clip(np.floor(suv[:, 1] * h).astype(int), 0, h - 1)
    counts = np.bincount(row * w + col, minlength=h * w)
    expected = integrated.ravel() / integrated.sum() * n
    assert expected.min() > 100  # chi-square's large-count regime in every bin
    assert stats.chisquare(counts, expected).pvalue > 0.01

    # Returned pdf: the analytic solid-angle density of the texel sampled, and
    # the density environment_emission reports for the same direction (MIS).
    # sin(theta) of the local direction (in float32, theta = pi t loses it
    # near the poles); samples within 1e-3 of a texel edge or of a pole,
    # where the round trip's rounding may change the texel or the factor, are
    # left out of the exact comparisons.
    local = d.astype(np.float64) @ np.asarray(env.to_world, np.float64)[:3, :3]
    sin_theta = np.hypot(local[:, 0], local[:, 2])
    analytic = p_texel[row, col] * w * h / (2 * np.pi**2 * sin_theta)
    clear = (np.abs(suv * [w, h] - np.round(suv * [w, h])) > 1e-3).all(-1) & (sin_theta > 1e-3)
    assert clear.mean() > 0.99
    np.testing.assert_allclose(pdf[clear], analytic[clear], rtol=1e-3)
    radiance, pdf_mis = environment_emission(scene, es.d, tables)
    np.testing.assert_allclose(pdf[clear], np.asarray(pdf_mis)[clear], rtol=1e-3)
    np.testing.assert_allclose(np.asarray(es.weight), np.asarray(radiance) / pdf[:, None], rtol=1e-5)


def test_mirrored_area_light_emits_outwards_as_in_mitsuba():
    # A cube light mirrored by a negative scale occupies the same space as
    # the plain one; its winding (and face normal) turns inwards but its
    # vertex normals stay outwards. Mitsuba samples and emits by the vertex
    # normal, so the floor it lights must look the same either way (it used
    # to be almost black: the sampled side faced inwards).
    xml = """<scene version="3.0.0">
      <integrator type="direct"/>
      <sensor type="perspective"><float name="fov" value="40"/>
        <transform name="to_world"><lookat origin="0,2,5" target="0,0.2,0" up="0,1,0"/></transform>
        <film type="hdrfilm"><integer name="width" value="16"/><integer name="height" value="16"/></film></sensor>
      <shape type="rectangle"><transform name="to_world"><scale value="3"/><rotate x="1" angle="-90"/>
        <translate y="-1"/></transform><bsdf type="diffuse"/></shape>
      <shape type="cube"><emitter type="area"><rgb name="radiance" value="8"/></emitter>
        <transform name="to_world"><scale x="{sx}" y="0.3" z="0.3"/><translate y="0.5"/></transform></shape>
    </scene>"""
    images = [np.asarray(jr.render(jr.load_string(xml.format(sx=sx)), spp=64, seed=s))
              for sx, s in ((0.3, 0), (-0.3, 0), (0.3, 1))]
    floor = [im[12:].mean() for im in images]
    noise = abs(floor[0] - floor[2])
    assert floor[0] > 0.05
    assert abs(floor[1] - floor[0]) < 4 * noise + 1e-3 * floor[0], floor


SPOT_TEXTURE = """<scene version="3.0.0"><integrator type="direct"/>
<sensor type="perspective"><float name="fov" value="60"/>
  <transform name="to_world"><lookat origin="0,4,0.01" target="0,0,0" up="0,0,-1"/></transform>
  <film type="hdrfilm"><integer name="width" value="32"/><integer name="height" value="32"/>
    <rfilter type="box"/></film></sensor>
<shape type="rectangle"><transform name="to_world"><scale value="3"/><rotate x="1" angle="-90"/></transform>
  <bsdf type="diffuse"/></shape>
<emitter type="spot" id="spot"><float name="cutoff_angle" value="35"/><float name="beam_width" value="30"/>
  <rgb name="intensity" value="2,3,4"/>
  <transform name="to_world"><lookat origin="0.3,2,0.2" target="0,0,0" up="1,0,0"/></transform>
  <texture type="bitmap" name="texture"><string name="filename" value="{path}"/>
    <string name="filter_type" value="{filter}"/></texture></emitter>
</scene>"""


def test_spot_light_texture_matches_mitsuba_and_is_differentiable(tmp_path):
    """A spot light projecting an asymmetric bitmap (a bright red first row,
    so a flipped or transposed projection shows) onto a floor: Mitsuba's
    image for both filters, and texel derivatives equal to finite
    differences (the image is linear in the texels)."""
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    img = np.random.default_rng(0).random((5, 7, 3)).astype(np.float32)
    img[0] = [4.0, 0.0, 0.0]
    path = tmp_path / "spot.exr"
    jr.write_image(str(path), img)
    for filt in ("nearest", "bilinear"):
        xml = SPOT_TEXTURE.format(path=path, filter=filt)
        ref = np.array(mi.render(mi.load_string(xml), spp=64, seed=1))
        ours = np.asarray(jr.render(jr.load_string(xml), spp=64, seed=0))
        err = rel_mae(ours, ref)
        print(f"{filt}: rel MAE {err:.4f}")
        assert err < 0.02, (filt, err)
    scene = jr.load_string(SPOT_TEXTURE.format(path=path, filter="bilinear"))
    data = jr.traverse(scene)["spot.texture.data"]
    v = jnp.asarray(np.random.default_rng(1).normal(size=data.shape), jnp.float32)

    def image(x):
        return jr.render(jr.replace(scene, {"spot.texture.data": data + x * v}), spp=4, seed=3)

    d = jax.jvp(image, (0.0,), (1.0,))[1]
    fd = (image(0.1) - image(-0.1)) / 0.2
    assert float(jnp.abs(fd).max()) > 0.01
    np.testing.assert_allclose(np.asarray(d), np.asarray(fd), atol=2e-3 * float(jnp.abs(fd).max()))


def _default_precision_products(jaxpr):
    """dot_general equations of `jaxpr` (and of every sub-jaxpr: loops, conds,
    custom rules) on float32 operands that do not ask for full precision."""
    found = []

    def walk(j):
        for eqn in j.eqns:
            if eqn.primitive.name == "dot_general":
                prec = eqn.params.get("precision")
                full = prec is not None and all(p == jax.lax.Precision.HIGHEST for p in prec)
                if not full and any(v.aval.dtype == jnp.float32 for v in eqn.invars):
                    found.append(str(eqn.source_info.traceback).splitlines()[-3:])
            for p in eqn.params.values():
                for sub in p if isinstance(p, (tuple, list)) else (p,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        walk(inner)

    walk(jaxpr.jaxpr)
    return found


def test_no_reduced_precision_matrix_products(tmp_path):
    """On GPUs from Ampere on, XLA runs float32 matrix products at its default
    precision in TF32 (10-bit mantissa): an environment map's or a spot
    light's rotation through `@` bent directions by 1e-4 and moved Mitsuba
    comparisons on an H100 by 0.5% (2026-11-22). Transforms are written as
    multiply-adds instead; no default-precision product may come back into the
    render, its derivatives, or the light sampling. (On the CPU such a product
    is exact, so only its presence in the traced program can be tested here.)"""
    path = tmp_path / "spot.exr"
    jr.write_image(str(path), np.random.default_rng(0).random((5, 7, 3)).astype(np.float32))
    sky = tmp_path / "sky.exr"
    jr.write_image(str(sky), np.random.default_rng(1).random((8, 16, 3)).astype(np.float32))
    xml = SPOT_TEXTURE.format(path=path, filter="bilinear").replace(
        '<integrator type="direct"/>', '<integrator type="path"><integer name="max_depth" value="3"/></integrator>')
    xml = xml.replace("</scene>", ENVMAP.format(path=sky).split(">", 1)[1])
    scene = jr.load_string(xml)
    keys = ("sky.to_world", "spot.to_world")
    params = {k: jr.traverse(scene)[k] for k in keys}

    def image(p):
        return jr.render(jr.replace(scene, p), spp=1, seed=0)

    tangent = {k: jnp.ones_like(v) for k, v in params.items()}
    programs = {
        "render": jax.make_jaxpr(image)(params),
        "jvp": jax.make_jaxpr(lambda p, t: jax.jvp(image, (p,), (t,)))(params, tangent),
        "direct": jax.make_jaxpr(lambda p: jr.render(jr.replace(scene, p), "direct", spp=1, seed=0))(params),
        "prb grad": jax.make_jaxpr(jax.grad(
            lambda p: jnp.sum(jr.render(jr.replace(scene, p), "prb", spp=1, seed=0))))(params),
    }
    for name, jaxpr in programs.items():
        assert not _default_precision_products(jaxpr), (name, _default_precision_products(jaxpr))
