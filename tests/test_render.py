"""Rendering against Mitsuba 3 and analytic values.

References (tests/data/render/*.exr) are Mitsuba 3.9.1 `llvm_ad_rgb` renders
at 8192 spp of the same scene files (regenerate with make_references.py), so
their own noise is small. The metric is the relative mean absolute error of
4x4-block-downsampled images; the bound is twice the same metric between two
independent jaxrender renders / sqrt(2), i.e. twice our own Monte Carlo noise
at this spp. An unbiased renderer sits at ~1x (measured: 1.0x on the
materials scene, 1.3-1.6x on the Cornell box, where the means agree within
0.4%); a 5% bias or a wrong BSDF lands far above 2x.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import rel_mae as _rel

import jaxrender as jr
from jaxrender import cli

HERE = os.path.dirname(os.path.abspath(__file__))
REFS = os.path.join(HERE, "data", "render")
CBOX = str(jr.BUILTIN_SCENES["cbox"])

CASES = {
    "cbox_path": (CBOX, {"res": 64, "max_depth": 8}, None),
    "cbox_direct": (CBOX, {"res": 64}, "direct"),
    "cbox_direct_2_3": (CBOX, {"res": 64}, jr.IntegratorConfig(type="direct", emitter_samples=2, bsdf_samples=3)),
    "materials_path": (os.path.join(REFS, "materials.xml"), {}, None),
    "lights_path": (os.path.join(REFS, "lights.xml"), {}, None),
    "materials_envmap": (os.path.join(REFS, "materials_envmap.xml"), {}, None),
    # PSDR-CUDA's 0.5 dialect (camelCase, faceNormals, direct integrator, envmap).
    "psdr_v05_direct": (os.path.join(HERE, "data", "scenes", "psdr_v05.xml"), {}, None),
    "materials_gaussian": (os.path.join(REFS, "materials_gaussian.xml"), {}, None),
    "materials_tent": (os.path.join(REFS, "materials_tent.xml"), {}, None),
    # Filters with negative lobes (and the widest reach, 3 pixels).
    "materials_mitchell": (os.path.join(REFS, "materials_mitchell.xml"), {}, None),
    "materials_lanczos": (os.path.join(REFS, "materials_lanczos.xml"), {}, None),
    "sensor_thinlens": (os.path.join(REFS, "sensor_thinlens.xml"), {}, None),
    "sensor_orthographic": (os.path.join(REFS, "sensor_orthographic.xml"), {}, None),
    # blendbsdf, mask (0/1 checkerboard opacity, a two-sided nested BSDF), null.
    "bsdf_wrappers": (os.path.join(REFS, "bsdf_wrappers.xml"), {}, None),
    # The shading frame's tangent (dp_du): anisotropic roughness, normal maps.
    "tangents": (os.path.join(REFS, "tangents.xml"), {}, None),
    # Every lobe of principled: textured base colour and roughness, metal,
    # anisotropy, transmission, clearcoat, sheen, flatness, sampling rates.
    "principled": (os.path.join(REFS, "principled.xml"), {}, None),
    # mesh_attribute textures from PLY files: vertex and face colours,
    # a one-channel roughness, a face-attribute specular tint; then an
    # area light's radiance (against Mitsuba's BSDF sampling alone: its
    # emitter sampling reads no attribute).
    "mesh_attributes": (os.path.join(REFS, "mesh_attributes.xml"), {}, None),
    "mesh_attributes_light": (os.path.join(REFS, "mesh_attributes_light.xml"), {}, "direct"),
}

def _rel_px(x, y):
    """Relative mean absolute error per pixel (no downsampling)."""
    return float(np.mean(np.abs(x - y)) / np.mean(np.abs(y) + 1e-3))


_render = jax.jit(lambda scene, key, integrator=None: jr.render(scene, integrator, key=key, spp=64),
                  static_argnums=2)


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_mitsuba_within_noise(name):
    path, params, integrator = CASES[name]
    ref = jr.read_image(os.path.join(REFS, f"{name}.exr"))
    scene = jr.load_file(path, **params)
    a = np.asarray(_render(scene, jax.random.key(1), integrator))
    b = np.asarray(_render(scene, jax.random.key(2), integrator))
    assert a.shape == ref.shape and np.isfinite(a).all()
    noise = _rel(a, b) / np.sqrt(2)
    err = _rel(a, ref)
    assert err <= 2.0 * noise, f"{name}: error {err:.4f} vs noise {noise:.4f}"
    # Per pixel too: 4x4 blocks average away a pattern that is wrong but
    # balanced (an inverted checkerboard mask passed the block metric).
    noise_px = _rel_px(a, b) / np.sqrt(2)
    err_px = _rel_px(a, ref)
    assert err_px <= 1.5 * noise_px, f"{name}: per-pixel error {err_px:.4f} vs noise {noise_px:.4f}"
    np.testing.assert_allclose(a.mean((0, 1)), ref.mean((0, 1)), rtol=0.03)


@pytest.mark.parametrize("rfilter", [
    {"type": "box"}, {"type": "tent"}, {"type": "gaussian"}, {"type": "gaussian", "stddev": 0.3},
    {"type": "mitchell"}, {"type": "mitchell", "B": 0.2, "C": 0.45}, {"type": "catmullrom"},
    {"type": "lanczos"}, {"type": "lanczos", "lobes": 2},
])
def test_reconstruction_filters_equal_mitsubas(rfilter):
    """Each filter's weights, from the same dict loaded by both renderers."""
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    from jaxrender.integrators.film import filter_reach, filter_weight

    ours = jr.load_dict({"type": "scene", "s": {
        "type": "perspective", "film": {"type": "hdrfilm", "width": 4, "height": 4, "rfilter": rfilter}}})
    rf = ours.sensors[0].film.rfilter
    theirs = mi.load_dict(rfilter)
    assert rf.radius == pytest.approx(theirs.radius())
    assert filter_reach(rf) == max(0, int(np.ceil(theirs.radius() - 0.5)))
    # Off the box filter's edge, where the two may round |x| <= r apart.
    xs = np.linspace(-3.7, 3.7, 149) + 1e-3
    w = np.asarray(filter_weight(rf, jnp.asarray(xs, jnp.float32)))
    ref = np.array([theirs.eval(float(x)) for x in xs])
    # Mitsuba 3.9's gaussian `eval` reads a tabulated copy of the filter
    # (off by up to 8e-4 near 0); the others evaluate the formula.
    np.testing.assert_allclose(w, ref, atol=1e-3 if rfilter["type"] == "gaussian" else 2e-6)


@pytest.mark.parametrize("rfilter", [
    {"type": "tent"},  # 9 pixels, unrolled
    {"type": "gaussian", "stddev": 1.2},  # 121 pixels, in a loop
])
def test_splat_equals_brute_force(rfilter):
    """film.splat against a numpy sum over every (sample, pixel) pair of the
    filter's weight, for a footprint splatted unrolled and one in a loop."""
    from jaxrender.integrators.film import filter_weight, splat

    rf = jr.load_dict({"type": "scene", "s": {
        "type": "perspective", "film": {"type": "hdrfilm", "width": 5, "height": 4, "rfilter": rfilter}}}
    ).sensors[0].film.rfilter
    rng = np.random.default_rng(3)
    values = rng.uniform(size=(2, 4, 5, 3)).astype(np.float32)
    offsets = rng.uniform(size=(2, 4, 5, 2)).astype(np.float32)
    acc, wsum = jax.jit(lambda v, o: splat(rf, v, o, 4, 5))(values, offsets)
    ref, ref_w = np.zeros((4, 5, 3)), np.zeros((4, 5, 1))
    ys, xs = np.mgrid[0:4, 0:5]
    for s_, y, x in np.ndindex(2, 4, 5):
        py, px = y + offsets[s_, y, x, 1], x + offsets[s_, y, x, 0]  # the sample's film position
        w = (np.asarray(filter_weight(rf, jnp.asarray(xs + 0.5 - px, jnp.float32)))
             * np.asarray(filter_weight(rf, jnp.asarray(ys + 0.5 - py, jnp.float32))))
        ref += w[..., None] * values[s_, y, x]
        ref_w += w[..., None]
    np.testing.assert_allclose(np.asarray(acc), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(wsum), ref_w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sensor", [
    {"type": "perspective", "fov": 35, "fov_axis": "y"},
    {"type": "thinlens", "aperture_radius": 0.2, "focus_distance": 3.0, "fov": 40},
    {"type": "thinlens", "aperture_radius": 0.05, "focal_length": "35mm", "near_clip": 0.3},
    {"type": "orthographic", "near_clip": 0.5},
])
def test_camera_rays_equal_mitsubas(sensor):
    """Origins, directions and far-clip distances of each sensor's rays for
    the same film and aperture samples, against Mitsuba's `sample_ray`."""
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    from jaxrender.integrators.film import clip_t_max

    to_world = mi.ScalarTransform4f().look_at(origin=[1, 2, 3], target=[0, 0.2, 0], up=[0, 1, 0])
    if sensor["type"] == "orthographic":
        to_world = to_world @ mi.ScalarTransform4f().scale([2, 2, 1])
    d = {**sensor, "film": {"type": "hdrfilm", "width": 8, "height": 5}}
    theirs = mi.load_dict({**d, "to_world": to_world})
    ours = jr.load_dict({"type": "scene", "s": {**d, "to_world": np.array(to_world.matrix)}}).sensors[0]
    rng = np.random.default_rng(0)
    pos, lens = rng.uniform(size=(32, 2)), rng.uniform(size=(32, 2))
    o, dirs = jr.sample_ray(ours, jnp.asarray(pos, jnp.float32), jnp.asarray(lens, jnp.float32))
    t_max = clip_t_max(ours, dirs)
    for i in range(32):
        ray, _ = theirs.sample_ray(0.0, 0.5, mi.Point2f(*pos[i]), mi.Point2f(*lens[i]))
        np.testing.assert_allclose(o[i], np.array(ray.o), atol=2e-6)
        np.testing.assert_allclose(dirs[i], np.array(ray.d), atol=2e-6)
        np.testing.assert_allclose(t_max[i], ray.maxt, rtol=1e-5)


FURNACE = """<scene version="3.0.0">
  <integrator type="path"><integer name="max_depth" value="{depth}"/></integrator>
  <sensor type="perspective"><float name="fov" value="30"/>
    <transform name="to_world"><lookat origin="0, 0, 5" target="0, 0, 0" up="0, 1, 0"/></transform>
    <film type="hdrfilm"><integer name="width" value="16"/><integer name="height" value="16"/></film>
  </sensor>
  <emitter type="constant"><rgb name="radiance" value="1, 1, 1"/></emitter>
  <shape type="sphere"><bsdf type="diffuse"><rgb name="reflectance" value="1, 1, 1"/></bsdf></shape>
</scene>"""


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_white_furnace(depth):
    """A convex albedo-1 diffuse object under uniform radiance 1 reflects
    exactly 1 everywhere (it cannot see itself), at every depth >= 2; the
    background is 1 too."""
    scene = jr.load_string(FURNACE.format(depth=depth))
    image = np.asarray(jr.render(scene, spp=64, seed=depth))
    np.testing.assert_allclose(image.mean(), 1.0, atol=0.02)
    np.testing.assert_allclose(image[0, 0], 1.0, atol=1e-6)  # a background pixel
    assert np.abs(image - 1.0).max() < 0.5


def test_depth_one_sees_only_emitters():
    scene = jr.load_string(FURNACE.format(depth=1))
    image = np.asarray(jr.render(scene, spp=4))
    assert image[8, 8].max() == 0.0 and image[0, 0].min() == 1.0


def test_same_key_same_image_bit_for_bit():
    scene = jr.load_file(CBOX, res=16)
    a = jr.render(scene, spp=8, key=jax.random.key(7))
    b = jr.render(scene, spp=8, key=jax.random.key(7))
    c = jr.render(scene, spp=8, key=jax.random.key(8))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_compiler_options_change_speed_only():
    """`jr.compiler_options()` (used by `render` outside a jit, the CLI and
    the benchmarks) changes how XLA:CPU fuses, not what it computes."""
    scene = jr.load_file(CBOX, res=16)
    options = jr.compiler_options()
    assert isinstance(options, dict)
    if jax.default_backend() == "cpu":
        assert options, "this jaxlib rejected the CPU options: renders are ~20% slower"
    key = jax.random.key(5)
    fast = jax.jit(lambda s: jr.render(s, spp=4, key=key), compiler_options=options or None)(scene)
    plain = jax.jit(lambda s: jr.render(s, spp=4, key=key))(scene)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(plain), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(jr.render(scene, spp=4, key=key)), np.asarray(plain), rtol=1e-4, atol=1e-6)


def test_materialize_is_the_identity_under_transformations():
    """The opaque copy path.py uses to stop XLA from fusing across bounces."""
    from jaxrender.integrators._math import materialize

    x = jnp.arange(12.0, dtype=jnp.float32).reshape(4, 3)
    np.testing.assert_array_equal(jax.jit(materialize)(x), x)
    np.testing.assert_array_equal(jax.vmap(materialize)(x), x)
    np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(materialize(x * x)))(x), 2 * x)
    _, t = jax.jvp(materialize, (x,), (jnp.ones_like(x),))
    np.testing.assert_array_equal(t, jnp.ones_like(x))
    assert "jaxrender_materialize" in jax.jit(materialize).lower(x).as_text() or jax.default_backend() != "cpu"


def test_vmap_over_cameras_equals_rendering_each():
    scene = jr.load_file(CBOX, res=16)
    cam = scene.sensors[0]
    moved = jr.translate(jnp.array([30.0, 0.0, 0.0])) @ cam.to_world
    cams = jax.tree.map(lambda *xs: jnp.stack(xs), cam, cam.__class__(**{**cam.__dict__, "to_world": moved}))
    key = jax.random.key(3)
    batch = jax.vmap(lambda c: jr.render(scene, sensor=c, spp=4, key=key))(cams)
    for i in range(2):
        one = jr.render(scene, sensor=jax.tree.map(lambda x: x[i], cams), spp=4, key=key)
        np.testing.assert_allclose(np.asarray(batch[i]), np.asarray(one), rtol=1e-5, atol=1e-6)


def test_cli_render(tmp_path, capsys):
    out = tmp_path / "cbox.exr"
    assert cli.main(["render", "cbox", "-o", str(out), "--spp", "4", "--resolution", "16x16", "-q"]) == 0
    image = jr.read_image(str(out))
    assert image.shape == (16, 16, 3) and np.isfinite(image).all() and image.mean() > 0.01
    assert "wrote" in capsys.readouterr().out


def test_cli_render_aovs_to_named_exr_channels(tmp_path):
    """--integrator aov:... writes one named EXR channel per AOV channel, the
    values `render` returns."""
    import OpenEXR

    out = tmp_path / "aov.exr"
    argv = ["render", "cbox", "-o", str(out), "--spp", "1", "--resolution", "8x8", "-q", "--integrator", "aov:d:depth,nn"]
    assert cli.main(argv) == 0
    with OpenEXR.File(str(out)) as f:
        channels = {name: np.asarray(c.pixels) for name, c in f.channels().items()}
    assert sorted(channels) == ["d", "nn.X", "nn.Y", "nn.Z"]
    scene = jr.load_file("cbox")
    camera = scene.sensors[0]
    film = camera.film.__class__(8, 8, camera.film.rfilter)
    camera = camera.__class__(**{**camera.__dict__, "film": film})
    # The CLI's one pass: key fold_in(key(seed 0), 0).
    ref = np.asarray(jr.render(scene, "aov:d:depth,nn", sensor=camera, spp=1,
                               key=jax.random.fold_in(jax.random.key(0), 0)))
    got = np.stack([channels[k] for k in ("d", "nn.X", "nn.Y", "nn.Z")], -1)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    assert got[..., 0].max() > 0


def test_cli_refuses_to_write_a_non_finite_render(tmp_path, capsys):
    """A render that overflows float32 is a one-line error; nothing is written."""
    scene = tmp_path / "hot.xml"
    scene.write_text("""<scene version="3.0.0">
  <sensor type="perspective"><film type="hdrfilm"><integer name="width" value="4"/><integer name="height" value="4"/>
  </film><transform name="to_world"><lookat origin="0, 0, 4" target="0, 0, 0" up="0, 1, 0"/></transform></sensor>
  <shape type="sphere"/><emitter type="constant"><rgb name="radiance" value="3e38, 3e38, 3e38"/></emitter>
</scene>""")
    out = tmp_path / "hot.exr"
    assert cli.main(["render", str(scene), "-o", str(out), "--spp", "2", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "non-finite values" in err and "\n" not in err and not out.exists()


def test_far_clip_hides_distant_geometry():
    """Mitsuba's primary rays end at the far clip plane."""
    xml = FURNACE.replace('<float name="fov" value="30"/>',
                          '<float name="fov" value="30"/><float name="far_clip" value="{far}"/>')
    near = np.asarray(jr.render(jr.load_string(xml.format(depth=1, far=10.0)), "aov:mask", spp=1))
    far = np.asarray(jr.render(jr.load_string(xml.format(depth=1, far=3.0)), "aov:mask", spp=1))
    assert near[8, 8, 0] == 1.0 and far[8, 8, 0] == 0.0  # the sphere is at distance 4..6


def test_bad_arguments_are_named():
    scene = jr.load_file(CBOX, res=8)
    with pytest.raises(ValueError, match="spp"):
        jr.render(scene, spp=0)
    with pytest.raises(ValueError, match="sensor"):
        jr.render(scene, sensor=5)
    with pytest.raises(ValueError, match="integrator"):
        jr.render(scene, "bidir")


def test_aov_first_hit_fields():
    """A plane z = 0 (rectangle scaled by 2) seen head-on from z = 4: depth =
    distance from the ray origin, which Mitsuba 3 puts on the near clip plane
    (near_clip / cos along the ray), position on the plane, normals +z, uv in
    [0, 1], mask 1 on the plane and 0 outside, albedo = the diffuse reflectance."""
    scene = jr.load_string("""<scene version="3.0.0">
      <sensor type="perspective"><float name="fov" value="60"/>
        <transform name="to_world"><lookat origin="0, 0, 4" target="0, 0, 0" up="0, 1, 0"/></transform>
        <film type="hdrfilm"><integer name="width" value="9"/><integer name="height" value="9"/></film>
      </sensor>
      <shape type="rectangle"><transform name="to_world"><scale value="2"/></transform>
        <bsdf type="diffuse"><rgb name="reflectance" value="0.2, 0.4, 0.6"/></bsdf></shape>
    </scene>""")
    image = np.asarray(jr.render(scene, "aov:depth,position,ng,nn,uv,mask,albedo,shape_index", spp=1))
    assert image.shape == (9, 9, 1 + 3 + 3 + 3 + 2 + 1 + 3 + 1)
    depth, pos, ng, nn = image[..., 0], image[..., 1:4], image[..., 4:7], image[..., 7:10]
    uv, mask, albedo, shape = image[..., 10:12], image[..., 12], image[..., 13:16], image[..., 16]
    np.testing.assert_allclose(pos[4, 4, 2], 0.0, atol=1e-5)
    hit = mask > 0.5
    assert hit[4, 4] and hit.sum() < 81  # the plane does not fill a 60-degree view at distance 4
    np.testing.assert_allclose(pos[hit][:, 2], 0.0, atol=1e-5)
    cam = np.array([0.0, 0.0, 4.0])
    dist = np.linalg.norm(pos[hit] - cam, axis=-1)
    near = 0.01 * dist / 4.0  # near_clip / cos(angle to the view axis)
    np.testing.assert_allclose(depth[hit], dist - near, rtol=1e-5)
    np.testing.assert_allclose(ng[hit], np.tile([0, 0, 1.0], (hit.sum(), 1)), atol=1e-6)
    np.testing.assert_allclose(nn[hit], ng[hit], atol=1e-6)
    assert (uv[hit] >= 0).all() and (uv[hit] <= 1).all()
    np.testing.assert_allclose(albedo[hit], np.tile([0.2, 0.4, 0.6], (hit.sum(), 1)), atol=1e-6)
    assert (shape[hit] == 0).all() and (shape[~hit] == -1).all() and (depth[~hit] == 0).all()


def test_gradient_of_a_material_matches_finite_differences():
    """d mean(red channel) / d red-wall reflectance through the whole path
    tracer (Russian roulette included) equals central differences with the
    same key (the image is linear in the reflectance's bounce terms only to
    first order, so the differences use a small step); jvp agrees with grad."""
    scene = jr.load_file(CBOX, res=12, max_depth=6)
    red = jr.traverse(scene)["red.reflectance.value"]
    key = jax.random.key(0)

    def loss(r):
        image = jr.render(jr.replace(scene, {"red.reflectance.value": r}), spp=8, key=key)
        return jnp.mean(image[..., 0])

    g = np.asarray(jax.jit(jax.grad(loss))(red))
    assert np.isfinite(g).all()
    eps = 1e-2
    fd = (loss(red.at[0].add(eps)) - loss(red.at[0].add(-eps))) / (2 * eps)
    np.testing.assert_allclose(g[0], float(fd), rtol=0.03)
    assert abs(g[1]) < 1e-3 and abs(g[2]) < 1e-3  # green/blue reflectance barely changes red
    _, tangent = jax.jvp(loss, (red,), (jnp.array([1.0, 0.0, 0.0]),))
    np.testing.assert_allclose(float(tangent), g[0], rtol=1e-4)


def test_scene_without_shapes_renders_its_environment():
    """No geometry, no BSDFs: every ray escapes and sees the constant emitter."""
    scene = jr.load_string("""<scene version="3.0.0"><sensor type="perspective">
      <film type="hdrfilm"><integer name="width" value="4"/><integer name="height" value="4"/></film>
      </sensor><emitter type="constant"><rgb name="radiance" value="0.5, 1, 2"/></emitter></scene>""")
    for integrator in ("path", "direct"):
        image = np.asarray(jr.render(scene, integrator, spp=2))
        np.testing.assert_allclose(image, np.broadcast_to([0.5, 1.0, 2.0], image.shape), rtol=1e-6)
    aov = np.asarray(jr.render(scene, "aov:depth,shape_index", spp=1))
    assert (aov[..., 0] == 0).all() and (aov[..., 1] == -1).all()


def test_depth_integrator_matches_mitsuba():
    """Mitsuba's `depth` integrator (the first hit's distance, 0 for a miss,
    in all three channels), by name and from a scene file, against
    Mitsuba's own render of the same file."""
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    path = os.path.join(HERE, "data", "scenes", "instances.xml")
    ref = np.array(mi.render(mi.load_file(path), integrator=mi.load_dict({"type": "depth"}), spp=64, seed=3))
    scene = jr.load_file(path)
    img = np.asarray(jr.render(scene, "depth", spp=64, key=jax.random.key(0)))
    assert img.shape == ref.shape == (24, 32, 3)
    np.testing.assert_array_equal(img[..., 0], img[..., 2])
    assert (img == 0).any() and img.max() > 5  # misses and hits
    # Pixels differ only where a pixel's samples straddle a silhouette.
    assert np.abs(img - ref).mean() / ref.mean() < 0.03
    with open(path) as f:
        xml = f.read().replace('<emitter type="constant">', '<integrator type="depth"/><emitter type="constant">')
    loaded = jr.load_string(xml)
    assert loaded.integrator.type == "depth"
    np.testing.assert_array_equal(np.asarray(jr.render(loaded, spp=64, key=jax.random.key(0))), img)
