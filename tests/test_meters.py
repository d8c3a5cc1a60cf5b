"""Mitsuba's `irradiancemeter` and `distant` sensors.

References: Mitsuba 3 (`scalar_rgb`) on the same scene file, with the bound
derived from our own spread over seeds (both renderers run the same
estimator: cosine-distributed rays from the shape, parallel rays at the
target); analytic values where the estimate has no variance (a meter under
a constant sky measures pi L; a distant sensor over a diffuse plane under a
directional light reads rho E cos / pi); central finite differences for
derivatives.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrender as jr
from jaxrender import cli

FILM = ('<film type="hdrfilm"><integer name="width" value="1"/><integer name="height" value="1"/>'
        '<rfilter type="box"/></film>')
SAMPLER = '<sampler type="independent"><integer name="sample_count" value="64"/></sampler>'

SCENE = f"""<scene version="3.0.0">
<integrator type="path"><integer name="max_depth" value="3"/></integrator>
<emitter type="constant"><rgb name="radiance" value="0.5, 0.7, 1.0"/></emitter>
<shape type="rectangle" id="floor"><transform name="to_world"><scale value="2"/></transform>
  <bsdf type="diffuse"><rgb name="reflectance" value="0.8, 0.4, 0.2"/></bsdf></shape>
<shape type="sphere"><point name="center" x="0.3" y="0.2" z="0.6"/><float name="radius" value="0.3"/>
  <bsdf type="roughconductor"><float name="alpha" value="0.3"/></bsdf></shape>
<shape type="sphere"><point name="center" x="-0.5" y="0" z="1.5"/><float name="radius" value="0.2"/>
  <emitter type="area" id="lamp"><rgb name="radiance" value="5, 5, 4"/></emitter></shape>
<shape type="disk" id="meter_disk">
  <transform name="to_world"><scale value="0.3"/><rotate x="1" angle="20"/><translate x="-0.4" y="-0.3" z="0.3"/></transform>
  <sensor type="irradiancemeter" id="meter">{FILM}{SAMPLER}</sensor></shape>
<sensor type="distant" id="at_point"><vector name="direction" x="0.3" y="0.2" z="-1"/>
  <point name="target" x="0.1" y="-0.2" z="0"/>{FILM}{SAMPLER}</sensor>
<sensor type="distant" id="at_shape"><vector name="direction" x="-0.2" y="0.1" z="-1"/>
  <shape type="rectangle" name="target">
    <transform name="to_world"><scale value="0.7"/><translate x="0.2" y="0.1" z="0.01"/></transform></shape>
  {FILM}{SAMPLER}</sensor>
<sensor type="distant" id="whole"><vector name="direction" x="0" y="0.3" z="-1"/>{FILM}{SAMPLER}</sensor>
</scene>"""


@pytest.fixture(scope="module")
def scene():
    return jr.load_string(SCENE)


def test_loader_builds_meters_in_document_order(scene):
    kinds = [type(s).__name__ for s in scene.sensors]
    assert kinds == ["IrradianceMeter", "DistantSensor", "DistantSensor", "DistantSensor"]
    meter = scene.sensors[0]
    assert scene.shapes[meter.shape].id == "meter_disk"
    assert scene.sensors[1].target.shape == (3,)
    assert scene.sensors[2].target.shape == (2, 3, 3)  # the rectangle: two triangles, not a scene shape
    assert scene.sensors[3].target is None
    assert len(scene.shapes) == 4
    # The direction is to_world's +z, as Mitsuba's look_at builds it.
    d = np.asarray(scene.sensors[1].to_world)[:3, 2]
    np.testing.assert_allclose(d, np.array([0.3, 0.2, -1.0]) / math.sqrt(1.13), atol=1e-6)
    names = jr.traverse(scene)
    assert "at_point.to_world" in names and "at_shape.target" in names and "whole.target" not in names


def test_meters_match_mitsuba(scene):
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    ref_scene = mi.load_string(SCENE)
    seeds, spp, ref_spp = 6, 1 << 12, 1 << 15
    for i in range(len(scene.sensors)):
        ours = np.array([np.asarray(jr.render(scene, sensor=i, spp=spp, seed=s)).ravel() for s in range(seeds)])
        ref = np.array(mi.render(ref_scene, sensor=i, spp=ref_spp, seed=3)).ravel()[:3]
        # One of our renders' standard error, from the spread over seeds;
        # Mitsuba's estimator is the same, with ref_spp samples.
        se = ours.std(0, ddof=1)
        se_ours, se_ref = se / math.sqrt(seeds), se * math.sqrt(spp / ref_spp)
        z = (ours.mean(0) - ref) / np.maximum(np.sqrt(se_ours**2 + se_ref**2), 1e-6)
        assert np.all(np.abs(z) < 4.5), (i, ours.mean(0), ref, z)


def test_irradiance_under_a_constant_sky_is_pi_L():
    # Every cosine-distributed ray from the disk escapes: no variance.
    xml = f"""<scene version="3.0.0"><integrator type="INTEGRATOR"/>
    <emitter type="constant"><rgb name="radiance" value="0.25, 0.5, 2.0"/></emitter>
    <shape type="disk"><transform name="to_world"><rotate x="1" angle="35"/><translate z="0.4"/></transform>
      <sensor type="irradiancemeter">{FILM}</sensor></shape></scene>"""
    for integrator in ("path", "direct"):
        value = jr.render(jr.load_string(xml.replace("INTEGRATOR", integrator)), spp=64)
        np.testing.assert_allclose(np.asarray(value).ravel(), np.pi * np.array([0.25, 0.5, 2.0]), rtol=1e-5)
    # Mitsuba's depth integrator weighs by the meter's pi too (its AOVs do
    # not). A plane 1.5 above an upward disk: cosine-distributed rays reach
    # it after 1.5 / cos, whose mean is 1.5 * 2 (std ~4.5 per sample).
    scene = jr.load_string(f"""<scene version="3.0.0"><integrator type="depth"/>
    <shape type="rectangle"><transform name="to_world"><scale value="1000"/><translate z="1.5"/></transform></shape>
    <shape type="disk"><sensor type="irradiancemeter">{FILM}</sensor></shape></scene>""")
    depth = np.asarray(jr.render(scene, spp=1 << 16)).ravel()
    np.testing.assert_allclose(depth, np.pi * 3.0, rtol=0.05)


DIRECTIONAL = f"""<scene version="3.0.0"><integrator type="direct"/>
<emitter type="directional"><vector name="direction" x="0.3" y="0" z="-1"/>
  <rgb name="irradiance" value="2, 1, 0.5"/></emitter>
<shape type="rectangle"><transform name="to_world"><scale value="3"/></transform>
  <bsdf type="BSDF"/></shape>
<sensor type="distant"><vector name="direction" x="-0.4" y="0.2" z="-1"/>TARGET{FILM}</sensor></scene>"""


def test_distant_sensor_reads_a_lit_diffuse_plane_exactly():
    cos = 1.0 / math.sqrt(1.09)
    expected = 0.5 / np.pi * np.array([2.0, 1.0, 0.5]) * cos
    for target in ('<point name="target" x="0.2" y="0.1" z="0"/>',
                   '<shape type="disk" name="target"><transform name="to_world"><scale value="0.5"/>'
                   '<translate z="1e-3"/></transform></shape>'):
        scene = jr.load_string(DIRECTIONAL.replace("BSDF", "diffuse").replace("TARGET", target))
        np.testing.assert_allclose(np.asarray(jr.render(scene, spp=16)).ravel(), expected, rtol=1e-5)


def _rotation_z(angle):
    c, s = jnp.cos(angle), jnp.sin(angle)
    return jnp.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], jnp.float32)


def test_distant_direction_derivative_matches_finite_differences():
    # A rough plastic plane: what the sensor reads changes smoothly with its
    # direction, and nothing in the scene has an edge the rays cross.
    scene = jr.load_string(DIRECTIONAL.replace('<bsdf type="BSDF"/>', '<bsdf type="roughplastic">'
                                               '<float name="alpha" value="0.3"/></bsdf>').replace(
        "TARGET", '<point name="target" x="0" y="0" z="0"/>'))
    base = scene.sensors[0].to_world

    @jax.jit
    def value(angle):
        cam = scene.sensors[0].replace(to_world=_rotation_z(angle) @ base)
        return jnp.sum(jr.render(scene, sensor=cam, spp=256, seed=1, boundary=False))

    x, h = jnp.float32(0.3), 1e-2
    _, d = jax.jvp(value, (x,), (jnp.float32(1.0),))
    fd = (value(x + h) - value(x - h)) / (2 * h)
    assert abs(float(d) - float(fd)) <= 0.02 * abs(float(fd)) + 1e-5, (float(d), float(fd))
    assert abs(float(fd)) > 1e-3  # the reading does change with the direction


def test_meter_material_and_light_gradients_match_finite_differences(scene):
    names = ("floor.bsdf.reflectance.value", "lamp.radiance.value")
    params = {k: jr.traverse(scene)[k] for k in names}

    # The irradiance meter only: a distant sensor's weight is 1 and constant,
    # its samples' derivatives those of camera rays.
    meter = scene.sensors[0]

    @jax.jit
    def value(p):
        return jnp.sum(jr.render(jr.replace(scene, p), "direct", sensor=meter, spp=256, seed=2))

    grads = jax.grad(value)(params)
    for name in names:
        h = 1e-2
        fd = (value({**params, name: params[name] + h}) - value({**params, name: params[name] - h})) / (2 * h)
        g = float(jnp.sum(grads[name]))
        assert abs(g - float(fd)) <= 0.02 * abs(float(fd)) + 1e-4, (name, g, float(fd))
        assert abs(g) > 1e-3


def test_meter_geometry_derivatives_need_boundary_false():
    scene = jr.load_string(f"""<scene version="3.0.0"><integrator type="direct"/>
    <emitter type="point"><point name="position" x="0" y="0" z="3"/><rgb name="intensity" value="5"/></emitter>
    <shape type="rectangle"><transform name="to_world"><translate z="1.5"/></transform></shape>
    <shape type="disk" id="meter_disk"><sensor type="irradiancemeter">{FILM}</sensor></shape></scene>""")
    v = jr.traverse(scene)["meter_disk.vertex_positions"]

    def value(v, boundary):
        return jnp.sum(jr.render(jr.replace(scene, {"meter_disk.vertex_positions": v}), spp=4, boundary=boundary))

    with pytest.raises(NotImplementedError, match="IrradianceMeter.*boundary=False"):
        jax.grad(value)(v, True)
    g = jax.grad(value)(v, False)  # the interior derivative
    assert np.all(np.isfinite(np.asarray(g)))


def test_vmap_over_distant_sensors_equals_a_loop(scene):
    cam = scene.sensors[1]
    stacked = cam.replace(to_world=jnp.stack([_rotation_z(a) @ cam.to_world for a in (0.0, 0.4)]),
                          target=jnp.stack([cam.target, cam.target + 0.1]))
    batched = jax.vmap(lambda c: jr.render(scene, sensor=c, spp=16, seed=5))(stacked)
    for k, a in enumerate((0.0, 0.4)):
        alone = jr.render(scene, sensor=cam.replace(to_world=_rotation_z(a) @ cam.to_world, target=cam.target + 0.1 * k),
                          spp=16, seed=5)
        np.testing.assert_allclose(np.asarray(batched[k]), np.asarray(alone), rtol=1e-5, atol=1e-6)


def test_meter_cli_render(tmp_path, scene):
    path = tmp_path / "meters.xml"
    path.write_text(SCENE)
    out = tmp_path / "meter.exr"
    assert cli.main(["render", str(path), "-o", str(out), "--sensor", "0", "--spp", "16", "--quiet"]) == 0
    image = jr.read_image(str(out))
    assert image.shape == (1, 1, 3) and np.all(np.asarray(image) > 0)
    # The meter has no view to ray-cast; a distant sensor has a 1x1 film only.
    assert cli.main(["raycast", str(path), "-o", str(tmp_path / "x.png"), "--sensor", "0"]) == 2
    assert cli.main(["render", str(path), "-o", str(out), "--sensor", "1", "--resolution", "4x4"]) == 2


@pytest.mark.parametrize("xml, message", [
    (f'<sensor type="irradiancemeter">{FILM}</sensor>', "must be nested in the shape"),
    ('<shape type="disk"><sensor type="irradiancemeter"><transform name="to_world"><translate x="1"/>'
     '</transform></sensor></shape>', 'no "to_world"'),
    ('<shape type="disk"><sensor type="perspective"/></shape>', "can hold an irradiancemeter sensor, not a"),
    ('<shape type="disk"><transform name="to_world"><scale x="0" y="1" z="1"/></transform>'
     '<sensor type="irradiancemeter"/></shape>', "has no area|singular"),
    ('<sensor type="distant"/>', "needs a 1x1 film, got 768x576"),
    (f'<sensor type="distant"><vector name="direction" x="0" y="0" z="1"/><transform name="to_world">'
     f'<translate x="1"/></transform>{FILM}</sensor>', 'either "direction" or "to_world"'),
    (f'<sensor type="distant"><vector name="direction" x="0" y="0" z="0"/>{FILM}</sensor>', "must be non-zero"),
    (f'<sensor type="distant"><string name="target" value="x"/>{FILM}</sensor>', 'parameter "target"'),
    ('<sensor type="batch"><film type="hdrfilm"><integer name="width" value="2"/>'
     '<integer name="height" value="1"/></film><sensor type="distant"/><sensor type="distant"/></sensor>',
     "cannot hold a distant sensor"),
])
def test_meter_loader_rules(xml, message):
    with pytest.raises(jr.SceneError, match=message):
        jr.load_string(f'<scene version="3.0.0">{xml}</scene>')


def test_meter_api_errors(scene):
    with pytest.raises(ValueError, match="shape index 9 is out of range"):
        jr.render(scene, sensor=jr.IrradianceMeter(shape=9), spp=1)
    with pytest.raises(ValueError, match="1x1"):
        jr.DistantSensor(to_world=jnp.eye(4), film=jr.Film(2, 2))
    with pytest.raises(TypeError, match="depend on the scene"):
        jr.camera_rays(scene.sensors[0], jnp.zeros((1, 1, 2)))


def test_sliver_faces_and_empty_scenes(tmp_path):
    # A zero-area face in the meter's shape or the target: finite
    # derivatives (the norm of a zero cross product has none).
    obj = tmp_path / "sliver.obj"
    obj.write_text("v -1 -1 0\nv 1 -1 0\nv 1 1 0\nv -1 1 0\nv 2 2 0\nf 1 2 3\nf 1 3 4\nf 3 3 5\n")
    scene = jr.load_string(f"""<scene version="3.0.0"><integrator type="direct"/>
    <emitter type="constant"/><shape type="obj" id="quad"><string name="filename" value="{obj}"/>
    <sensor type="irradiancemeter">{FILM}</sensor></shape></scene>""")
    v = jr.traverse(scene)["quad.vertex_positions"]
    g = jax.grad(lambda v: jnp.sum(jr.render(jr.replace(scene, {"quad.vertex_positions": v}), spp=4,
                                             boundary=False)))(v)
    assert np.all(np.isfinite(np.asarray(g)))
    tris = v[np.array([[0, 1, 2], [0, 2, 3], [2, 2, 4]])]
    cam = jr.DistantSensor(to_world=jnp.eye(4), target=tris)
    g = jax.grad(lambda t: jnp.sum(jr.render(scene, sensor=cam.replace(target=t), spp=4, boundary=False)))(tris)
    assert np.all(np.isfinite(np.asarray(g)))
    # No shapes: the distant sensor sees the environment (1, Mitsuba's too).
    empty = jr.load_string(f'<scene version="3.0.0"><emitter type="constant"/><sensor type="distant">{FILM}'
                           '</sensor></scene>')
    np.testing.assert_allclose(np.asarray(jr.render(empty, spp=4)).ravel(), 1.0)


def test_target_may_be_a_scene_shape_by_reference():
    scene = jr.load_string(f"""<scene version="3.0.0">
    <shape type="rectangle" id="lamp"><emitter type="area"/></shape>
    <sensor type="distant"><ref name="target" id="lamp"/>{FILM}</sensor></scene>""")
    assert len(scene.shapes) == 1 and scene.sensors[0].target.shape == (2, 3, 3)
