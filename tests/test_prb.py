"""Path replay backpropagation (`render(..., integrator="prb")`, issue 5).

`prb` renders `path`'s image and differentiates it in reverse mode by
re-tracing the paths (jaxrender/integrators/prb.py). Its gradients are
checked against `path`'s reverse mode with the same key: two independent
derivations of one estimator (ordinary AD through the stored bounce loop,
which test_grad.py checks against finite differences, and the replay's
per-vertex formula), so they must agree to float32 rounding, not just
within noise. The scene has every kind of scattering event the replay
treats differently: diffuse and textured lobes, a glossy conductor and a
plastic (MIS between the BSDF and emitter samples; a delta lobe beside a
diffuse one), a smooth dielectric (delta lobes, whose directions stay
attached), an environment map, an area light and a point light, Russian
roulette from depth 1 and paths up to depth 3; only geometry-free
parameters go through the replay. The other tests use a small diffuse
scene, cheap to compile.
"""

from __future__ import annotations

import dataclasses
import importlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrender as jr

TEXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "scenes", "textures")

SCENE = f"""<scene version="3.0.0">
  <integrator type="path"><integer name="max_depth" value="3"/><integer name="rr_depth" value="1"/></integrator>
  <sensor type="perspective"><float name="fov" value="45"/>
    <transform name="to_world"><lookat origin="0, 1.2, 4" target="0, 0, 0" up="0, 1, 0"/></transform>
    <film type="hdrfilm"><integer name="width" value="12"/><integer name="height" value="12"/></film>
  </sensor>
  <emitter type="envmap" id="env"><string name="filename" value="{TEXTURES}/env16x8.exr"/>
    <float name="scale" value="0.8"/></emitter>
  <emitter type="point" id="lamp"><point name="position" x="0.5" y="1.5" z="1"/>
    <rgb name="intensity" value="2, 1.8, 1.5"/></emitter>
  <shape type="rectangle" id="light"><transform name="to_world"><scale value="0.4"/><rotate x="1" angle="90"/>
      <translate y="1.6"/></transform>
    <emitter type="area"><rgb name="radiance" value="4, 3.5, 3"/></emitter></shape>
  <shape type="rectangle" id="floor"><transform name="to_world"><scale value="2"/><rotate x="1" angle="-90"/>
      <translate y="-0.6"/></transform>
    <bsdf type="diffuse" id="tex"><texture type="bitmap" name="reflectance">
      <string name="filename" value="{TEXTURES}/checker8x4.png"/></texture></bsdf></shape>
  <shape type="cube" id="block"><transform name="to_world"><scale value="0.4"/><rotate y="1" angle="30"/>
      <translate x="-0.7" y="-0.2"/></transform>
    <bsdf type="roughconductor" id="metal"><float name="alpha" value="0.25"/>
      <rgb name="eta" value="0.2, 0.9, 1.1"/><rgb name="k" value="3.9, 2.4, 2.2"/></bsdf></shape>
  <shape type="sphere" id="ball"><point name="center" x="0.7" y="-0.2" z="0.2"/><float name="radius" value="0.4"/>
    <bsdf type="diffuse"><rgb name="reflectance" value="0.2, 0.5, 0.3"/></bsdf></shape>
  <shape type="sphere" id="glass_ball"><point name="center" x="0" y="-0.3" z="1"/><float name="radius" value="0.3"/>
    <bsdf type="dielectric" id="glass"><float name="int_ior" value="1.5"/></bsdf></shape>
  <shape type="rectangle" id="back"><transform name="to_world"><scale value="2"/><translate z="-1"/></transform>
    <bsdf type="plastic"><rgb name="diffuse_reflectance" value="0.7, 0.6, 0.5"/></bsdf></shape>
</scene>"""

# Every float parameter the replay differentiates (no geometry, no camera).
PARAMS = ("env.data", "env.scale", "lamp.intensity.value", "light.emitter.radiance.value",
          "floor.bsdf.reflectance.data", "block.bsdf.alpha.value", "block.bsdf.eta.value", "block.bsdf.k.value",
          "ball.bsdf.reflectance.value", "glass_ball.bsdf.int_ior", "back.bsdf.diffuse_reflectance.value",
          "back.bsdf.specular_reflectance.value")
SPP = 4


SIMPLE = """<scene version="3.0.0">
  <integrator type="path"><integer name="max_depth" value="3"/></integrator>
  <sensor type="perspective"><float name="fov" value="45"/>
    <transform name="to_world"><lookat origin="0, 1.2, 4" target="0, 0, 0" up="0, 1, 0"/></transform>
    <film type="hdrfilm"><integer name="width" value="12"/><integer name="height" value="12"/></film>
  </sensor>
  <emitter type="constant"><rgb name="radiance" value="0.3, 0.35, 0.4"/></emitter>
  <shape type="rectangle" id="light"><transform name="to_world"><scale value="0.4"/><rotate x="1" angle="90"/>
      <translate y="1.6"/></transform>
    <emitter type="area"><rgb name="radiance" value="4, 3.5, 3"/></emitter></shape>
  <shape type="rectangle" id="floor"><transform name="to_world"><scale value="2"/><rotate x="1" angle="-90"/>
      <translate y="-0.6"/></transform>
    <bsdf type="diffuse" id="white"><rgb name="reflectance" value="0.7, 0.6, 0.5"/></bsdf></shape>
  <shape type="cube" id="block"><transform name="to_world"><scale value="0.4"/><rotate y="1" angle="30"/>
      <translate x="-0.3" y="-0.2"/></transform>
    <bsdf type="diffuse" id="red"><rgb name="reflectance" value="0.7, 0.2, 0.1"/></bsdf></shape>
</scene>"""


@pytest.fixture(scope="module")
def scene():
    return jr.load_string(SCENE)


@pytest.fixture(scope="module")
def simple():
    return jr.load_string(SIMPLE)


def _loss_fn(scene, integrator, max_depth=None, **kw):
    weights = jax.random.uniform(jax.random.key(7), (12, 12, 3))
    cfg = scene.integrator if max_depth is None else dataclasses.replace(scene.integrator, max_depth=max_depth)

    def loss(params, key):
        image = jr.render(jr.replace(scene, params), dataclasses.replace(cfg, type=integrator), spp=SPP, key=key,
                          **kw)
        return jnp.sum(weights * image)

    return loss


def _params(scene, names=PARAMS):
    traversed = jr.traverse(scene)
    missing = [n for n in names if n not in traversed]
    assert not missing, f"{missing} not in {sorted(traversed)}"
    return {k: traversed[k] for k in names}


def _assert_same_gradient(ours, theirs, rtol):
    for name in theirs:
        a, b = np.asarray(ours[name], np.float64), np.asarray(theirs[name], np.float64)
        scale = np.abs(b).max()
        assert scale > 0, f"{name}: zero gradient, the test cannot tell"
        err = np.abs(a - b).max() / scale
        assert err < rtol, f"{name}: prb differs from path by {err:.2e} of the largest entry"


@pytest.mark.parametrize("max_depth", [3, pytest.param(1, marks=pytest.mark.slow)])
def test_prb_gradient_equals_path(scene, max_depth):
    """Every parameter's reverse-mode gradient (and the image) equals
    path's with the same key, at depth 3 with roulette from 1 and at depth
    1 (emission seen directly only: nothing to replay). Depth 3 keeps
    the compilation of path's gradient (every parameter kind) short.
    Measured: within 3e-6 of the largest entry; allowed 1e-3 (a replayed
    ray may round differently from the stored one at a grazing edge)."""
    params = _params(scene)
    key = jax.random.key(3)
    got = {}
    for integrator in ("path", "prb"):
        loss = _loss_fn(scene, integrator, max_depth)
        got[integrator] = jax.jit(jax.value_and_grad(loss))(params, key)
    (v_path, g_path), (v_prb, g_prb) = got["path"], got["prb"]
    np.testing.assert_allclose(float(v_prb), float(v_path), rtol=1e-6)
    if max_depth == 1:
        # Only the area light and the environment are seen directly.
        g_path = {k: g_path[k] for k in ("env.data", "env.scale", "light.emitter.radiance.value")}
    _assert_same_gradient(g_prb, g_path, 1e-3)


def test_prb_over_several_passes_equals_path(simple, monkeypatch):
    """With several passes render checkpoints each; prb keeps its radiance
    across the checkpoint (a named residual) instead of recomputing the
    pass. The gradient must not change: 3 passes of 2 spp (a pass size no
    other test compiles, so no cached trace is reused)."""
    monkeypatch.setattr(importlib.import_module("jaxrender.integrators.render"), "PASS_SAMPLES", 2 * 144)
    params = _params(simple, ("block.bsdf.reflectance.value", "floor.bsdf.reflectance.value"))
    weights = jax.random.uniform(jax.random.key(7), (12, 12, 3))
    cfg = dataclasses.replace(simple.integrator, max_depth=3)
    key = jax.random.key(5)
    got = {}
    for integrator in ("path", "prb"):
        def loss(p):
            image = jr.render(jr.replace(simple, p), dataclasses.replace(cfg, type=integrator), spp=6, key=key)
            return jnp.sum(weights * image)
        got[integrator] = jax.jit(jax.value_and_grad(loss))(params)
    np.testing.assert_allclose(float(got["prb"][0]), float(got["path"][0]), rtol=1e-6)
    _assert_same_gradient(got["prb"][1], got["path"][1], 1e-3)


@pytest.mark.slow
def test_prb_geometry_falls_back_to_path(simple):
    """With a vertex or to_world derivative the paths depend on the
    parameters and cannot be replayed: prb must fall back to path's reverse
    mode and give its gradient exactly, boundary terms included."""
    names = ("block.to_world", "floor.vertex_positions", "block.bsdf.reflectance.value")
    params = _params(simple, names)
    key = jax.random.key(4)
    g = {i: jax.jit(jax.grad(_loss_fn(simple, i)))(params, key) for i in ("path", "prb")}
    _assert_same_gradient(g["prb"], g["path"], 1e-5)


@pytest.mark.slow
def test_prb_camera_batch_and_decoupled_key(simple):
    scene = simple
    """vmap over two cameras of the replayed gradient equals a loop, and
    key_grad (decoupled derivative samples) equals the correlated gradient
    rendered with key_grad (prb builds it from two renders)."""
    params = _params(scene, ("block.bsdf.reflectance.value", "floor.bsdf.reflectance.value", "light.emitter.radiance.value"))
    cam = scene.sensors[0]
    moved = dataclasses.replace(cam, to_world=jr.translate([0.3, 0.0, 0.0]) @ cam.to_world)
    cams = jax.tree.map(lambda a, b: jnp.stack([a, b]), cam, moved)
    cfg = dataclasses.replace(scene.integrator, type="prb", max_depth=3)

    def loss(p, camera, key, **kw):
        return jnp.sum(jr.render(jr.replace(scene, p), cfg, sensor=camera, spp=SPP, key=key, **kw) ** 2)

    key = jax.random.key(5)
    batched = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, None)))(params, cams, key)
    for i, c in enumerate((cam, moved)):
        single = jax.jit(jax.grad(loss))(params, c, key)
        _assert_same_gradient(jax.tree.map(lambda x: x[i], batched), single, 1e-4)

    # Decoupled: d/dp of the squared image at key_grad's image is
    # 2 * image(key) * d image(key_grad), not 2 * image(key_grad) * ...: check
    # through a linear loss, where both coincide.
    def linear(p, key, **kw):
        return jnp.sum(jr.render(jr.replace(scene, p), cfg, spp=SPP, key=key, **kw))

    other = jax.random.key(6)
    dec = jax.jit(jax.grad(lambda p: linear(p, key, key_grad=other)))(params)
    ref = jax.jit(jax.grad(lambda p: linear(p, other)))(params)
    _assert_same_gradient(dec, ref, 1e-5)


def test_prb_memory_does_not_grow_with_depth(simple):
    scene = simple
    """The point of replay: the compiled gradient's temporary memory is
    (nearly) the same at depth 2 and depth 12, while path's grows with
    depth (each bounce keeps its residuals). XLA's memory analysis of the
    compiled gradient (4 spp of 12x12)."""
    params = _params(scene, ("block.bsdf.reflectance.value", "floor.bsdf.reflectance.value"))
    key = jax.random.key(0)

    def temp_bytes(integrator, depth):
        loss = _loss_fn(scene, integrator, depth)
        compiled = jax.jit(jax.grad(loss)).lower(params, key).compile()
        analysis = compiled.memory_analysis()
        if analysis is None:
            pytest.skip("this backend reports no memory analysis")
        return analysis.temp_size_in_bytes

    prb = [temp_bytes("prb", d) for d in (2, 12)]
    path = [temp_bytes("path", d) for d in (2, 12)]
    print(f"temporaries at depth 2, 12: prb {prb}, path {path}")
    assert prb[1] < 1.3 * prb[0], f"prb temporaries grow with depth: {prb}"
    assert path[1] > 2 * path[0], f"path's did not grow: {path} (the comparison is void)"
    # Ten more bounces cost prb less than one more bounce costs path.
    per_bounce = (path[1] - path[0]) / 10
    assert prb[1] - prb[0] < per_bounce, f"prb {prb}, path {path} at depth 2, 12"


def test_prb_has_no_forward_mode(simple):
    """prb is a reverse-mode rule (a custom_vjp): jax.jvp through it fails
    loudly rather than returning something wrong (path serves jvp)."""
    params = _params(simple, ("block.bsdf.reflectance.value",))
    loss = _loss_fn(simple, "prb", 2)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda p: loss(p, jax.random.key(0)), (params,), (params,))
