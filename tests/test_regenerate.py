"""Path regeneration (issues 4 and 5).

A render that is not differentiated traces its paths on a batch of rows
smaller than the samples; a row whose path has ended takes the next camera
ray (`path._regenerated`), and prb's replay does the same. Each sample
keeps its random numbers (by sample index and depth), so the radiance and
the replayed gradient must equal the fixed loop's (`_trace_fixed`, all
samples for max_depth bounces, which jvp and grad go through) to float32
rounding. REGENERATE_MIN_ROWS is lowered so that these small batches do
regenerate (a quarter as many rows as samples); the prb test scene has every
kind of scattering event, Russian roulette from depth 1, far-clipped camera
rays and unbounded depth (-1).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_prb import SCENE, SIMPLE, _assert_same_gradient

import jaxrender as jr
from jaxrender.integrators import path as P
from jaxrender.integrators.interaction import prepare_scene
from jaxrender.scene import camera_rays


@pytest.fixture
def few_rows(monkeypatch):
    monkeypatch.setattr(P, "REGENERATE_MIN_ROWS", 32)
    # Renders traced before with other rows must not be reused.
    jax.clear_caches()
    yield
    jax.clear_caches()


def test_regenerated_paths_equal_the_fixed_loop(few_rows):
    scene = jr.load_string(SCENE)
    cfg = dataclasses.replace(scene.integrator, max_depth=-1)
    camera = scene.sensors[0]
    offsets = jax.random.uniform(jax.random.key(1), (3, 12, 12, 2))
    o, d = camera_rays(camera, offsets, None)
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    n = o.shape[0]
    assert P.regenerate_rows(n) < n / 3, "the test would not regenerate"
    # Every fifth camera ray ends before the scene (the far clip).
    t_max = jnp.where(jnp.arange(n) % 5 == 0, 1.0, jnp.inf)

    @jax.jit
    def both(scene, key):
        arrays = prepare_scene(scene)
        return (P._trace_fixed(scene, arrays, cfg, o, d, key, t_max, False),
                P._regenerated(scene, arrays, cfg, o, d, key, t_max))

    fixed, regenerated = map(np.asarray, both(scene, jax.random.key(2)))
    assert fixed.mean() > 0.05 and np.all(np.isfinite(fixed))
    np.testing.assert_allclose(regenerated, fixed, rtol=1e-5, atol=1e-5 * fixed.max())


def test_render_regenerates_and_its_jvp_takes_the_fixed_loop(few_rows):
    """render's value equals the fixed loop's, and jvp through it (the fixed
    loop's) carries the same value with a tangent equal to a finite
    difference of the (regenerated) render."""
    scene = jr.load_string(SIMPLE)
    cfg = dataclasses.replace(scene.integrator, max_depth=-1)
    name = "floor.bsdf.reflectance.value"
    value = jr.traverse(scene)[name]

    def image(v):
        return jr.render(jr.replace(scene, {name: v}), cfg, spp=4, key=jax.random.key(3))

    plain = np.asarray(jax.jit(image)(value))
    primal, tangent = jax.jit(lambda v: jax.jvp(image, (v,), (jnp.ones_like(v),)))(value)
    np.testing.assert_allclose(np.asarray(primal), plain, rtol=1e-5, atol=1e-6)
    eps = 1e-3
    fd = (np.asarray(jax.jit(image)(value + eps), np.float64) - np.asarray(jax.jit(image)(value - eps))) / (2 * eps)
    # Russian roulette decisions flip in a few pixels between the two sides.
    err = np.abs(np.asarray(tangent) - fd).mean() / np.abs(fd).mean()
    assert np.abs(fd).mean() > 0 and err < 0.02, err


def test_regenerated_replay_equals_path(few_rows):
    """prb's replay regenerates too: its gradient at unbounded depth equals
    path's reverse mode (the fixed loop, rolled)."""
    scene = jr.load_string(SIMPLE)
    cfg = dataclasses.replace(scene.integrator, max_depth=-1, rr_depth=2)
    weights = jax.random.uniform(jax.random.key(7), (12, 12, 3))
    names = ("block.bsdf.reflectance.value", "floor.bsdf.reflectance.value", "light.emitter.radiance.value")
    params = {k: jr.traverse(scene)[k] for k in names}
    got = {}
    for integrator in ("path", "prb"):
        def loss(p, integrator=integrator):
            image = jr.render(jr.replace(scene, p), dataclasses.replace(cfg, type=integrator), spp=4,
                              key=jax.random.key(5))
            return jnp.sum(weights * image)
        got[integrator] = jax.jit(jax.value_and_grad(loss))(params)
    np.testing.assert_allclose(float(got["prb"][0]), float(got["path"][0]), rtol=1e-5)
    _assert_same_gradient(got["prb"][1], got["path"][1], 1e-3)
