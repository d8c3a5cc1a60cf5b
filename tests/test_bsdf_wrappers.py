"""blendbsdf, mask and null (Mitsuba 3's BSDFs made of other BSDFs).

References: Monte Carlo integrals of `eval` over the sphere (the albedo a
sampler's mean weight must reproduce, and the mass `pdf` must have), and
renders at the ends of a linear parameter (a blend weight or an opacity
enters a scene where no path meets the object twice linearly, so its
derivative is the difference of the renders at 1 and at 0). The image
itself is compared with Mitsuba in test_render.py (bsdf_wrappers).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrender as jr
from jaxrender.integrators import bsdf_math as bm
from jaxrender.integrators.bsdfs import bsdf_triple

N = 1 << 17


def _bsdf(d):
    scene = jr.load_dict({"type": "scene", "b": d})
    return scene.bsdfs[0]


DIFFUSE = {"type": "diffuse", "reflectance": {"type": "rgb", "value": [0.2, 0.5, 0.8]}}
ROUGH = {"type": "roughconductor", "material": "Cu", "alpha": 0.3, "distribution": "ggx"}
MIRROR = {"type": "conductor"}
CASES = {
    "blend diffuse/rough": {"type": "blendbsdf", "weight": 0.3, "b0": DIFFUSE, "b1": ROUGH},
    "blend rough/mirror": {"type": "blendbsdf", "weight": 0.6, "b0": ROUGH, "b1": MIRROR},
    "mask diffuse": {"type": "mask", "opacity": 0.4, "b": DIFFUSE},
    "mask mirror": {"type": "mask", "opacity": 0.7, "b": MIRROR},
    "twosided blend": {"type": "twosided", "b": {"type": "blendbsdf", "weight": 0.5, "b0": DIFFUSE, "b1": ROUGH}},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_sampling_reproduces_the_albedo(name):
    """Mean sample weight = albedo: the integral of eval over directions
    (uniform-sphere Monte Carlo) plus the delta lobes' share (mirror
    reflection, pass-through), computed from the pieces independently;
    the pdf integrates to the non-delta lobes' sampling probability."""
    b = _bsdf(CASES[name])
    uv = jnp.zeros((N, 2), jnp.float32)
    t = bsdf_triple(b, uv)
    wi = jnp.broadcast_to(jnp.asarray([0.3, -0.2, 0.93], jnp.float32), (N, 3))
    wi = wi / jnp.linalg.norm(wi, axis=-1, keepdims=True)
    u = jax.random.uniform(jax.random.key(1), (N, 3))
    s = t.sample(wi, u[:, 0], u[:, 1:])
    mean = np.asarray(jnp.mean(s.weight, 0))
    # The reference: the non-delta part by uniform sphere sampling of eval...
    v = jax.random.normal(jax.random.key(2), (N, 3))
    wo = v / jnp.linalg.norm(v, axis=-1, keepdims=True)
    smooth = np.asarray(jnp.mean(t.eval(wi, wo), 0) * 4 * np.pi)
    mass = float(jnp.mean(t.pdf(wi, wo)) * 4 * np.pi)
    # ... plus the delta lobes, from the parts' own definitions.
    delta = np.zeros(3)
    spec = CASES[name]["b"] if name.startswith("twosided") else CASES[name]
    if spec["type"] == "blendbsdf" and "mirror" in name:
        delta = spec["weight"] * np.ones(3)  # a perfect mirror reflects everything
    if spec["type"] == "mask":
        delta = (1 - spec["opacity"]) * np.ones(3) + (spec["opacity"] * np.ones(3) if "mirror" in name else 0)
    np.testing.assert_allclose(mean, smooth + delta, rtol=0.02, atol=2e-3)
    picked_smooth = float(jnp.mean(~bm.is_delta(s.flags) & (s.pdf > 0)))
    np.testing.assert_allclose(mass, picked_smooth, rtol=0.02, atol=2e-3)
    # A non-delta sample reports pdf(wi, wo), the density MIS compares.
    keep = ~bm.is_delta(s.flags) & (s.pdf > 0)
    np.testing.assert_allclose(np.asarray(s.pdf)[keep], np.asarray(t.pdf(wi, s.wo))[keep], rtol=1e-5)


def test_null_passes_everything_through():
    t = bsdf_triple(_bsdf({"type": "null"}), jnp.zeros((4, 2), jnp.float32))
    wi = jnp.asarray([[0.0, 0.0, 1.0], [0.6, 0.0, 0.8], [0.0, 0.6, -0.8], [1.0, 0.0, 0.0]], jnp.float32)
    s = t.sample(wi, jnp.full(4, 0.3), jnp.full((4, 2), 0.5))
    np.testing.assert_array_equal(s.wo, -wi)
    np.testing.assert_array_equal(s.weight, np.ones((4, 3)))
    assert np.all(np.asarray(bm.is_delta(s.flags)))
    assert float(jnp.abs(t.eval(wi, -wi)).max()) == 0.0


def test_loader_names_and_errors():
    """Mitsuba's parameter names (weight, bsdf_0/bsdf_1, opacity,
    nested_bsdf) and the nested-BSDF counts it requires."""
    scene = jr.load_dict({"type": "scene",
                          "blend": {"type": "blendbsdf", "weight": 0.25, "x": dict(DIFFUSE), "y": ROUGH},
                          "leaf": {"type": "mask", "opacity": 0.5, "x": {"type": "twosided", "b": dict(DIFFUSE)}}})
    names = set(jr.traverse(scene))
    assert {"blend.weight.value", "blend.bsdf_0.reflectance.value", "blend.bsdf_1.alpha.value",
            "leaf.opacity.value", "leaf.nested_bsdf.brdf_0.reflectance.value"} <= names
    with pytest.raises(jr.SceneError, match="two nested BSDFs"):
        jr.load_dict({"type": "scene", "b": {"type": "blendbsdf", "weight": 0.5, "x": DIFFUSE}})
    with pytest.raises(jr.SceneError, match="weight"):
        jr.load_dict({"type": "scene", "b": {"type": "blendbsdf", "x": DIFFUSE, "y": DIFFUSE}})
    with pytest.raises(jr.SceneError, match="one nested BSDF"):
        jr.load_dict({"type": "scene", "b": {"type": "mask", "x": DIFFUSE, "y": DIFFUSE}})


LINEAR = """<scene version="3.0.0">
  <integrator type="path"><integer name="max_depth" value="3"/></integrator>
  <sensor type="perspective"><float name="fov" value="40"/>
    <transform name="to_world"><lookat origin="0, 1.2, 4" target="0, 0, 0" up="0, 1, 0"/></transform>
    <film type="hdrfilm"><integer name="width" value="16"/><integer name="height" value="16"/></film></sensor>
  <emitter type="constant"><rgb name="radiance" value="0.5, 0.6, 0.7"/></emitter>
  <shape type="rectangle"><transform name="to_world"><scale value="3"/><rotate x="1" angle="-90"/>
    <translate y="-0.6"/></transform><bsdf type="diffuse"><rgb name="reflectance" value="0.6, 0.5, 0.4"/></bsdf></shape>
  <shape type="sphere"><point name="center" x="-0.6" y="0" z="0"/><float name="radius" value="0.5"/>
    <bsdf type="blendbsdf" id="blend"><float name="weight" value="0.5"/>
      <bsdf type="roughconductor"><string name="material" value="Au"/><float name="alpha" value="0.2"/></bsdf>
      <bsdf type="diffuse"><rgb name="reflectance" value="0.2, 0.4, 0.8"/></bsdf></bsdf></shape>
  <shape type="rectangle"><transform name="to_world"><scale value="0.5"/><translate x="0.6" y="0" z="0.5"/></transform>
    <bsdf type="mask" id="leaf"><float name="opacity" value="0.5"/>
      <bsdf type="conductor"><string name="material" value="Cu"/></bsdf></bsdf></shape>
</scene>"""


@pytest.mark.parametrize("name", ["blend.weight.value", "leaf.opacity.value"])
def test_derivative_of_a_linear_weight(name):
    """d image / d weight = image(1) - image(0) where the image is linear in
    the weight (each path meets the object at most once with a weight on
    it): the blend's pick and the mask's pass-through, both discrete
    choices, are differentiated through their probabilities."""
    scene = jr.load_string(LINEAR)

    def image(x, spp, seed):
        return jr.render(jr.replace(scene, {name: jnp.asarray(x, jnp.float32)}), spp=spp, seed=seed)

    _, d = jax.jvp(lambda x: image(x, 512, 1), (jnp.float32(0.5),), (jnp.float32(1.0),))
    ref = image(1.0, 1024, 2) - image(0.0, 1024, 3)
    # 8x8-pixel blocks; measured 2-7% (both sides' Monte Carlo noise), bound
    # 15%. Without the pick probabilities' derivative (the pass-through's
    # share, a blend's delta lobes) the error is over 50%.
    down = lambda x: np.asarray(x).reshape(2, 8, 2, 8, 3).mean((1, 3))  # noqa: E731
    err = np.linalg.norm(down(d) - down(ref)) / np.linalg.norm(down(ref))
    assert err < 0.15, err


def test_albedo_aov_looks_inside_wrappers():
    """The albedo AOV is Mitsuba's diffuse reflectance: a blend's is the
    blend of its parts' (here 0.5 x (0.2, 0.4, 0.8) + 0.5 x none)."""
    scene = jr.load_string(LINEAR.replace('<float name="fov" value="40"/>', '<float name="fov" value="10"/>').replace(
        'target="0, 0, 0"', 'target="-0.6, 0, 0"'))
    albedo = np.asarray(jr.render(scene, "aov:albedo", spp=1))
    np.testing.assert_allclose(albedo[8, 8], [0.1, 0.2, 0.4], rtol=1e-6)
