"""Mitsuba 3's `batch` sensor (several cameras side by side in one film)
and `radiancemeter` (the radiance along one ray).

References: Mitsuba 3 (scalar_rgb) renders of the same file (relative MAE of
4x4-downsampled images, as test_render.py, against the seed-to-seed noise
of our own render); the camera rendered alone (a batch of one must be the
same image bit for bit); central finite differences for the derivative of
an object's motion, whose silhouettes move in every view (boundary terms
per camera). The radiancemeter: Mitsuba's value (2^16 samples each,
within 4 standard errors of the difference), its ray against Mitsuba's
`sample_ray`, and central differences of a material and of the meter's
position.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrender as jr
from jaxrender import cli
from reference import rel_mae, translation_jvp_and_fd

# Three camera types in one batch, a gaussian filter (so that samples near
# a band's edge spread into the neighbouring view, as in Mitsuba) and both
# a smooth and a delta light.
BATCH = """<scene version="3.0.0">
<integrator type="path"><integer name="max_depth" value="3"/></integrator>
<sensor type="batch" id="views">
  <film type="hdrfilm"><integer name="width" value="24"/><integer name="height" value="8"/>{rfilter}</film>
  <sampler type="independent"><integer name="sample_count" value="4"/></sampler>
  <sensor type="perspective" id="front"><float name="fov" value="40"/>
    <transform name="to_world"><lookat origin="0,0,5" target="0,0,0" up="0,1,0"/></transform></sensor>
  <sensor type="orthographic"><transform name="to_world"><scale value="1.5"/>
    <lookat origin="0,0,-5" target="0,0,0" up="0,1,0"/></transform></sensor>
  <sensor type="thinlens"><float name="fov" value="50"/><float name="aperture_radius" value="0.1"/>
    <float name="focus_distance" value="5"/>
    <transform name="to_world"><lookat origin="5,0,0" target="0,0,0" up="0,1,0"/></transform></sensor>
</sensor>
<shape type="sphere"><bsdf type="diffuse"><rgb name="reflectance" value="0.2,0.5,0.8"/></bsdf></shape>
<shape type="rectangle"><transform name="to_world"><scale value="3"/><translate z="-1.5"/></transform>
  <bsdf type="twosided"><bsdf type="diffuse"/></bsdf></shape>
<emitter type="constant"/>
<emitter type="point"><point name="position" x="2" y="3" z="2"/><rgb name="intensity" value="10"/></emitter>
</scene>"""


@pytest.mark.parametrize("rfilter", ['<rfilter type="box"/>', '<rfilter type="gaussian"/>'])
def test_batch_matches_mitsuba(rfilter):
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    xml = BATCH.format(rfilter=rfilter)
    ref = np.array(mi.render(mi.load_string(xml), spp=1024, seed=1))
    scene = jr.load_string(xml)
    ours = np.asarray(jr.render(scene, spp=512, seed=0))
    again = np.asarray(jr.render(scene, spp=512, seed=1))
    assert ours.shape == ref.shape == (8, 24, 3)
    noise = rel_mae(ours, again)
    # Each view on its own, so that a view rendered from the wrong camera or
    # into the wrong band cannot hide behind the others.
    for k in range(3):
        band = slice(8 * k, 8 * k + 8)
        err = rel_mae(ours[:, band], ref[:, band])
        print(f"view {k}: {err:.4f} (noise {noise:.4f})")
        assert err < max(2.5 * noise, 0.01), (k, err, noise)


def test_batch_of_one_is_the_camera_and_bands_are_the_cameras():
    scene = jr.load_string(BATCH.format(rfilter=""))
    batch = scene.sensors[0]
    assert [type(c).__name__ for c in batch.sensors] == ["PerspectiveCamera", "OrthographicCamera",
                                                         "ThinLensCamera"]
    assert batch.film.width == 24 and all(c.film.width == 8 and c.film.height == 8 for c in batch.sensors)
    front = batch.sensors[0]
    one = jr.BatchSensor(sensors=(front,), film=front.film, sample_count=4)
    key = jax.random.key(3)
    a = jr.render(scene, sensor=one, spp=2, key=key)
    b = jr.render(scene, sensor=front, spp=2, key=key)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # camera_rays puts each camera's rays in its band.
    offsets = jnp.full((8, 24, 2), 0.5, jnp.float32)
    o, d = jr.camera_rays(batch, offsets)
    for k, cam in enumerate(batch.sensors):
        ok, dk = jr.camera_rays(cam, offsets[:, 8 * k:8 * k + 8])
        np.testing.assert_array_equal(np.asarray(o[:, 8 * k:8 * k + 8]), np.asarray(ok))
        np.testing.assert_array_equal(np.asarray(d[:, 8 * k:8 * k + 8]), np.asarray(dk))


def test_batch_names_resolution_and_errors(tmp_path, capsys):
    xml = BATCH.format(rfilter="")
    scene = jr.load_string(xml)
    names = [k for k in jr.traverse(scene) if k.startswith("views.")]
    # Mitsuba's names: the batch's id, then each camera's id or sensor<k>.
    assert names == ["views.front.to_world", "views.front.fov", "views.sensor1.to_world", "views.sensor2.to_world",
                     "views.sensor2.fov", "views.sensor2.aperture_radius", "views.sensor2.focus_distance"]
    moved = jr.replace(scene, {"views.front.fov": 30.0})
    assert float(moved.sensors[0].sensors[0].fov) == 30.0
    # The width must split evenly, in the file, for --resolution and in with_film.
    bad = xml.replace('name="width" value="24"', 'name="width" value="25"')
    with pytest.raises(jr.SceneError, match=r"film width \(25\) must be divisible by the number of nested sensors"):
        jr.load_string(bad)
    with pytest.raises(ValueError, match="divisible by 3, got 10"):
        jr.with_film(scene.sensors[0], jr.Film(10, 8))
    wider = jr.with_film(scene.sensors[0], jr.Film(30, 6))
    assert [c.film.width for c in wider.sensors] == [10, 10, 10] and wider.sensors[2].film.height == 6
    nested = xml.replace('<sensor type="perspective" id="front">',
                         '<sensor type="batch"><sensor type="perspective"/></sensor><sensor type="perspective" '
                         'id="front">')
    with pytest.raises(jr.SceneError, match="cannot hold another batch sensor"):
        jr.load_string(nested)
    empty = '<scene version="3.0.0"><sensor type="batch"/></scene>'
    with pytest.raises(jr.SceneError, match="needs at least one nested sensor"):
        jr.load_string(empty)
    path = tmp_path / "batch.xml"
    path.write_text(xml)
    assert cli.main(["render", str(path), "-o", str(tmp_path / "x.png"), "--resolution", "25x8", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--resolution 25x8: a batch sensor of 3 cameras needs a film width divisible by 3" in err


def test_batch_geometry_derivative_matches_finite_differences():
    """A square moving sideways, seen by two cameras: its silhouettes move in
    both bands, and each band's derivative (boundary term of its own camera)
    matches central differences."""
    xml = """<scene version="3.0.0">
      <integrator type="path"><integer name="max_depth" value="2"/></integrator>
      <sensor type="batch">
        <film type="hdrfilm"><integer name="width" value="32"/><integer name="height" value="16"/></film>
        <sensor type="perspective"><float name="fov" value="40"/>
          <transform name="to_world"><lookat origin="0,0,3" target="0,0,0" up="0,1,0"/></transform></sensor>
        <sensor type="perspective"><float name="fov" value="45"/>
          <transform name="to_world"><lookat origin="1,0.5,2.8" target="0,0,0" up="0,1,0"/></transform></sensor>
      </sensor>
      <emitter type="constant"/>
      <shape type="rectangle" id="obj">
        <transform name="to_world"><scale value="0.5"/><rotate z="1" angle="20"/></transform>
        <bsdf type="diffuse"><rgb name="reflectance" value="0.2,0.2,0.2"/></bsdf></shape>
    </scene>"""
    d, fd = translation_jvp_and_fd(jr.load_string(xml), "obj.to_world", (1.0, 0.3, 0.0))

    def down(x):
        return np.asarray(x)[..., 0].reshape(4, 4, 4, 4).mean((1, 3))

    for k in range(2):
        band = slice(16 * k, 16 * k + 16)
        a, b = down(d[:, band]), down(fd[:, band])
        err = float(np.linalg.norm(a - b) / np.linalg.norm(b))
        print(f"view {k}: {err:.3f}")
        assert err < 0.15, (k, err)


METER = """<scene version="3.0.0">
<integrator type="path"/>
<sensor type="radiancemeter">{placement}
  <film type="hdrfilm"><integer name="width" value="1"/><integer name="height" value="1"/></film></sensor>
<shape type="sphere"><bsdf type="diffuse"><rgb name="reflectance" value="0.2,0.5,0.8"/></bsdf></shape>
<emitter type="constant"/>
<emitter type="point"><point name="position" x="2" y="3" z="2"/><rgb name="intensity" value="10"/></emitter>
</scene>"""
ORIGIN = '<point name="origin" x="0.3" y="0.2" z="5"/><vector name="direction" x="0" y="0" z="-2"/>'


def test_radiancemeter_matches_mitsuba():
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    lookat = '<transform name="to_world"><lookat origin="0.3,0.2,5" target="0.3,0.2,0" up="0,1,0"/></transform>'
    for placement in (ORIGIN, lookat):
        xml = METER.format(placement=placement)
        ref_scene = mi.load_string(xml)
        ray, _ = ref_scene.sensors()[0].sample_ray(0.0, 0.5, [0.3, 0.7], [0.5, 0.5])
        scene = jr.load_string(xml)
        o, d = jr.sample_ray(scene.sensors[0], jnp.array([0.3, 0.7]))
        np.testing.assert_allclose(np.asarray(o), np.array(ray.o), atol=1e-6)
        np.testing.assert_allclose(np.asarray(d), np.array(ray.d), atol=1e-6)
    # The same ray both ways: one render suffices.
    n = 1 << 16
    ref = np.array(mi.render(ref_scene, spp=n, seed=1)).ravel()
    ours = np.asarray(jr.render(scene, spp=n, seed=0))
    again = np.asarray(jr.render(scene, spp=n, seed=1))
    assert ours.shape == (1, 1, 3)
    # Our two seeds bound the noise of one estimate; Mitsuba's is alike.
    sigma = np.abs(ours - again).ravel() / np.sqrt(2) + 1e-4
    assert np.all(np.abs(ours.ravel() - ref) < 4 * np.sqrt(2) * sigma + 2e-3), (ours.ravel(), ref, sigma)


def test_radiancemeter_derivatives_match_finite_differences():
    scene = jr.load_string(METER.format(placement=ORIGIN).replace('type="path"', 'type="direct"').replace(
        '<emitter type="constant"/>', ""))
    p = jr.traverse(scene)
    assert "Sensor[0].to_world" in p

    def value(refl, t):
        moved = jr.translate(jnp.stack([t, 0.0, 0.0])) @ p["Sensor[0].to_world"]
        return jr.render(jr.replace(scene, {"BSDF[0].reflectance.value": refl, "Sensor[0].to_world": moved}),
                         spp=1024, seed=3)[0, 0, 0]

    f = jax.jit(value)
    refl = p["BSDF[0].reflectance.value"]
    g_refl, g_t = jax.jit(jax.grad(value, argnums=(0, 1)))(refl, 0.0)
    e = jnp.array([0.01, 0.0, 0.0])
    fd_refl = (f(refl + e, 0.0) - f(refl - e, 0.0)) / 0.02
    fd_t = (f(refl, 0.002) - f(refl, -0.002)) / 0.004
    np.testing.assert_allclose(float(g_refl[0]), float(fd_refl), rtol=1e-3)
    # The hit point slides over the sphere: measured 0.0322 both ways.
    assert abs(float(g_t)) > 0.01
    np.testing.assert_allclose(float(g_t), float(fd_t), rtol=0.02)


def test_radiancemeter_loader_rules():
    with pytest.raises(jr.SceneError, match="needs a 1x1 film, got 768x576"):
        jr.load_string('<scene version="3.0.0"><sensor type="radiancemeter"/></scene>')
    with pytest.raises(jr.SceneError, match='needs both'):
        jr.load_string(METER.format(placement='<point name="origin" x="0" y="0" z="5"/>'))
    with pytest.raises(jr.SceneError, match='"direction" must be non-zero'):
        jr.load_string(METER.format(placement='<point name="origin" x="0" y="0" z="5"/>'
                                              '<vector name="direction" x="0" y="0" z="0"/>'))
    # to_world wins over origin and direction, as in Mitsuba, with a word.
    both = ORIGIN + '<transform name="to_world"><translate x="1"/></transform>'
    with pytest.warns(jr.SceneWarning, match="origin and direction ignored"):
        scene = jr.load_string(METER.format(placement=both))
    np.testing.assert_allclose(np.asarray(scene.sensors[0].to_world)[:3, 3], [1, 0, 0])
    with pytest.raises(ValueError, match="film must be 1x1"):
        jr.with_film(scene.sensors[0], jr.Film(2, 2))
