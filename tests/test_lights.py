"""Emitter sampling of the integrators, against its own pdf (chi-square) and
analytic values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
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
