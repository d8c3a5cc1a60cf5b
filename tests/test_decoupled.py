"""`render(..., key_grad=/seed_grad=/spp_grad=)`: the primal from one set of
samples, derivatives from an independent one (Mitsuba 3's seed_grad)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrender as jr

# A gray diffuse plane filling the view, lit by a small area light: at 1 spp
# with BSDF sampling only (direct, emitter_samples=0) most samples miss the
# light, so a pixel's value and its derivative are strongly correlated and
# the correlated estimator of d/drho E[(I - c)^2] is visibly biased.
SCENE = """<scene version="3.0.0">
  <integrator type="direct"><integer name="emitter_samples" value="0"/><integer name="bsdf_samples" value="1"/></integrator>
  <sensor type="perspective">
    <float name="fov" value="40"/>
    <transform name="to_world"><lookat origin="0, 0, 3" target="0, 0, 0" up="0, 1, 0"/></transform>
    <film type="hdrfilm"><integer name="width" value="4"/><integer name="height" value="4"/></film>
  </sensor>
  <shape type="rectangle" id="plane">
    <transform name="to_world"><scale value="5"/></transform>
    <bsdf type="diffuse" id="gray"><rgb name="reflectance" value="0.5, 0.5, 0.5"/></bsdf>
  </shape>
  <shape type="rectangle">
    <transform name="to_world"><scale value="0.6"/><rotate x="1" angle="180"/><translate x="1.5" z="1.2"/></transform>
    <emitter type="area"><rgb name="radiance" value="10, 10, 10"/></emitter>
  </shape>
</scene>"""
NAME = "plane.bsdf.reflectance.value"


@pytest.fixture(scope="module")
def scene():
    return jr.load_string(SCENE)


def _image(scene, rho, **kw):
    return jr.render(jr.replace(scene, {NAME: rho}), spp=kw.pop("spp", 1), **kw)


def test_primal_comes_from_key_and_tangent_from_key_grad(scene):
    rho = jr.traverse(scene)[NAME]
    k0, k1 = jax.random.key(0), jax.random.key(1)
    v = jnp.array([1.0, 0.5, 0.0])
    plain0 = _image(scene, rho, key=k0, spp=2)
    plain1, t1 = jax.jvp(lambda r: _image(scene, r, key=k1, spp=4), (rho,), (v,))
    image, tangent = jax.jvp(lambda r: _image(scene, r, key=k0, key_grad=k1, spp=2, spp_grad=4), (rho,), (v,))
    np.testing.assert_array_equal(np.asarray(image), np.asarray(plain0))
    np.testing.assert_allclose(np.asarray(tangent), np.asarray(t1), rtol=1e-6, atol=1e-7)
    assert float(jnp.abs(plain1 - plain0).max()) > 1e-3  # the two sample sets really differ
    # seed_grad=s is key_grad=jax.random.key(s); grad (reverse mode) is the same estimator.
    g = jax.grad(lambda r: _image(scene, r, key=k0, seed_grad=1, spp=2, spp_grad=4).sum())(rho)
    np.testing.assert_allclose(np.asarray(g), np.asarray(jax.grad(lambda r: _image(scene, r, key=k1, spp=4).sum())(rho)),
                               rtol=1e-5)


def test_decoupled_gradient_of_a_nonlinear_loss_is_unbiased(scene):
    """d/drho E[mean((I - c)^2)] estimated at 1 spp over 256 keys: the
    decoupled estimator agrees with a 256x-spp reference within its standard
    error (measured ~1 sigma), while the correlated one (same key for both)
    is biased by 2 Var(I)/rho, many standard errors away."""
    rho = jr.traverse(scene)[NAME]
    c = 0.2

    def loss(r, key, key_grad=None):
        image = _image(scene, r, key=key, key_grad=key_grad)
        return jnp.mean((image - c) ** 2)

    keys = jax.random.split(jax.random.key(7), 256)
    grads = jax.jit(jax.vmap(jax.grad(lambda r, k: loss(r, k[0], k[1])), in_axes=(None, 0)))
    decoupled = np.asarray(grads(rho, jnp.stack([keys, jnp.roll(keys, 1)], 1)))[:, 0]
    correlated = np.asarray(jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(rho, keys))[:, 0]

    # Reference: E[I] and dE[I]/drho from 256 spp; the loss gradient of the
    # expectation is mean(2 (E[I] - c) dE[I]).
    mean_image, d_mean = jax.jvp(lambda r: _image(scene, r, key=jax.random.key(99), spp=256), (rho,),
                                 (jnp.array([1.0, 0.0, 0.0]),))
    reference = float(jnp.mean(2 * (mean_image[..., 0] - c) * d_mean[..., 0]) / 3)
    se = decoupled.std() / np.sqrt(len(decoupled))
    assert abs(decoupled.mean() - reference) < 3 * se + 0.02 * abs(reference), (decoupled.mean(), reference, se)
    assert abs(correlated.mean() - reference) > 6 * se, (correlated.mean(), reference, se)


def test_spp_grad_needs_a_gradient_key(scene):
    with pytest.raises(ValueError, match="spp_grad"):
        jr.render(scene, spp=1, spp_grad=2)
    with pytest.raises(ValueError, match="spp_grad must be a positive"):
        jr.render(scene, spp=1, seed_grad=1, spp_grad=0)
