"""Derivative images against Mitsuba 3's `prb` (issue 5).

Scene tests/data/render/grad.xml, loaded by both renderers: an open box with
a bitmap-textured floor (16x16 EXR, bilinear), a red left wall, a white back
wall and a quad light; 32x32, path max_depth 4. References (made by
make_grad_references.py, Mitsuba 3.9.1 `llvm_ad_rgb`, 8192 spp) are
forward-mode derivative images d image / d theta of `prb` for

- a material parameter: red.reflectance.value + theta (1, 0, 0);
- a texture parameter: floor_bsdf.reflectance.data + theta T, with T
  (grad_texture_tangent.exr) = (1, 0.5, 0.25) on a 4x4 block of texels and 0
  elsewhere, so the texel addressing (orientation, bilinear footprint) must
  agree, not only the mean.

Ours is `jax.jvp` of `render` along the same tangent. Metric and bound as in
test_render.py: relative mean absolute error of 4x4-downsampled images,
against twice our own noise (the same metric between two keys / sqrt(2)).
Neither parameter changes how directions are sampled (cosine-weighted
diffuse and emitter sampling do not depend on the albedo), so Mitsuba's
detached sampling and our differentiated sampling estimate the same
derivative with the same variance.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import rel_mae as _rel

import jaxrender as jr

REFS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "render")
SCENE = os.path.join(REFS, "grad.xml")
MATERIAL, TEXTURE = "red.reflectance.value", "floor_bsdf.reflectance.data"
SPP = 256


@jax.jit
def _derivative_image(scene, tangents, key):
    x = {k: jr.traverse(scene)[k] for k in tangents}
    return jax.jvp(lambda y: jr.render(jr.replace(scene, y), key=key, spp=SPP), (x,), (tangents,))[1]


def _tangents(name):
    zero = {MATERIAL: jnp.zeros(3, jnp.float32), TEXTURE: jnp.zeros((16, 16, 3), jnp.float32)}
    if name == "grad_red_r":
        return {**zero, MATERIAL: jnp.array([1.0, 0.0, 0.0], jnp.float32)}
    return {**zero, TEXTURE: jnp.asarray(jr.read_image(os.path.join(REFS, "grad_texture_tangent.exr")))}


@pytest.mark.parametrize("name", ["grad_red_r", "grad_floor_texels"])
def test_derivative_image_matches_mitsuba_prb(name):
    ref = jr.read_image(os.path.join(REFS, f"{name}.exr"))
    scene = jr.load_file(SCENE)
    assert jr.traverse(scene)[TEXTURE].shape == (16, 16, 3)
    tangents = _tangents(name)
    a = np.asarray(_derivative_image(scene, tangents, jax.random.key(1)))
    b = np.asarray(_derivative_image(scene, tangents, jax.random.key(2)))
    assert a.shape == ref.shape and np.isfinite(a).all()
    noise = _rel(a, b) / np.sqrt(2)
    err = _rel(a, ref)
    print(f"{name}: error {err:.4f}, noise {noise:.4f}, means {a.mean((0, 1))} {b.mean((0, 1))} {ref.mean((0, 1))}")
    assert err <= 2.0 * noise, f"{name}: error {err:.4f} vs noise {noise:.4f}"
    np.testing.assert_allclose(a.mean((0, 1)), ref.mean((0, 1)), rtol=0.03, atol=1e-6)
