"""Mitsuba 3's crop window (`crop_offset_x/_y`, `crop_width/_height` of
`hdrfilm`) and the perspective camera's principal point offset.

References: Mitsuba 3 (scalar_rgb) itself: the primary rays of every camera
type against its `sample_ray` at the same sample positions, and a render of
the same file (relative MAE of 4x4-downsampled images against our
seed-to-seed noise, as test_render.py). Derivatives: central finite
differences of an object's motion, whose silhouette and point-light shadow
cross the cropped, off-centre image (the boundary terms project edges into
the crop window).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrender as jr
from jaxrender import cli
from reference import rel_mae, translation_jvp_and_fd

FILM = """<film type="hdrfilm"><integer name="width" value="{w}"/><integer name="height" value="{h}"/>
  <integer name="crop_offset_x" value="{ox}"/><integer name="crop_offset_y" value="{oy}"/>
  <integer name="crop_width" value="{cw}"/><integer name="crop_height" value="{ch}"/>{rfilter}</film>"""
LOOKAT = '<transform name="to_world"><lookat origin="1,2,3" target="0,0,0" up="0,1,0"/></transform>'
PINHOLE = ('<float name="fov" value="50"/><float name="principal_point_offset_x" value="0.07"/>'
           '<float name="principal_point_offset_y" value="-0.13"/>')
CAMERAS = {
    "perspective": PINHOLE,
    "orthographic": "",
    "thinlens": ('<float name="fov" value="50"/><float name="aperture_radius" value="0.1"/>'
                 '<float name="focus_distance" value="3"/>'),
}


def _sensor(kind, extra, **film):
    f = dict(w=40, h=20, ox=6, oy=3, cw=17, ch=9, rfilter="")
    f.update(film)
    return f'<sensor type="{kind}">{extra}{LOOKAT}{FILM.format(**f)}</sensor>'


@pytest.mark.parametrize("kind", sorted(CAMERAS))
def test_cropped_rays_match_mitsuba(kind):
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    xml = f'<scene version="3.0.0">{_sensor(kind, CAMERAS[kind])}</scene>'
    cam = jr.load_string(xml).sensors[0]
    assert cam.film.cropped and (cam.film.crop_width, cam.film.crop_height) == (17, 9)
    ms = mi.load_string(xml).sensors()[0]
    rng = np.random.default_rng(0)
    off = rng.random((9, 17, 2)).astype(np.float32)
    lens = rng.random((9, 17, 2)).astype(np.float32)
    o, d = map(np.asarray, jr.camera_rays(cam, off, lens))
    assert o.shape == (9, 17, 3)
    for i, j in [(0, 0), (0, 16), (8, 0), (8, 16), (4, 7), (2, 11)]:
        # Mitsuba's integrators pass positions over the crop window.
        pos = mi.Point2f((j + off[i, j, 0]) / 17, (i + off[i, j, 1]) / 9)
        ray, _ = ms.sample_ray(0, 0.5, pos, mi.Point2f(*lens[i, j]))
        np.testing.assert_allclose(o[i, j], np.array(ray.o), atol=2e-6)
        np.testing.assert_allclose(d[i, j], np.array(ray.d), atol=2e-6)


SCENE = """<scene version="3.0.0">
<integrator type="path"><integer name="max_depth" value="3"/></integrator>
{sensor}
<shape type="sphere" id="ball"><transform name="to_world"><scale value="0.6"/><translate y="0.1"/></transform>
  <bsdf type="diffuse"><rgb name="reflectance" value="0.2,0.5,0.8"/></bsdf></shape>
<shape type="rectangle"><transform name="to_world"><scale value="3"/><rotate x="1" angle="-90"/>
  <translate y="-0.5"/></transform><bsdf type="diffuse"/></shape>
<emitter type="constant"><rgb name="radiance" value="0.3"/></emitter>
<emitter type="point"><point name="position" x="1" y="3" z="1"/><rgb name="intensity" value="10"/></emitter>
</scene>"""


def test_crop_and_principal_point_render_matches_mitsuba():
    """An off-centre window of an off-centre camera, with a gaussian filter
    (whose footprint crosses the window's edges)."""
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    xml = SCENE.format(sensor=_sensor("perspective", PINHOLE, w=48, h=36, ox=8, oy=12, cw=24, ch=16,
                                      rfilter='<rfilter type="gaussian"/>'))
    ref = np.array(mi.render(mi.load_string(xml), spp=1024, seed=1))
    scene = jr.load_string(xml)
    ours = np.asarray(jr.render(scene, spp=256, seed=0))
    again = np.asarray(jr.render(scene, spp=256, seed=1))
    assert ours.shape == ref.shape == (16, 24, 3)
    noise = rel_mae(ours, again)
    err = rel_mae(ours, ref)
    print(f"crop + principal point: {err:.4f} (noise {noise:.4f})")
    assert err < max(2.5 * noise, 0.01), (err, noise)


def test_crop_is_a_window_of_the_whole_film():
    """Depth seen through pixel centres: the cropped image is the whole
    image's window: the same rays (exactly on the CPU; XLA:GPU contracts
    multiply-adds differently in the two compilations, a few ulps)."""
    full = jr.load_string(SCENE.format(sensor=_sensor("perspective", PINHOLE, ox=0, oy=0, cw=40, ch=20)))
    crop = jr.load_string(SCENE.format(sensor=_sensor("perspective", PINHOLE)))
    centres = np.full((20, 40, 2), 0.5, np.float32)
    o, d = jr.camera_rays(full.sensors[0], centres)
    oc, dc = jr.camera_rays(crop.sensors[0], centres[:9, :17])
    atol = 0.0 if jax.default_backend() == "cpu" else 1e-6
    np.testing.assert_allclose(np.asarray(oc), np.asarray(o)[3:12, 6:23], rtol=0, atol=atol)
    np.testing.assert_allclose(np.asarray(dc), np.asarray(d)[3:12, 6:23], rtol=0, atol=atol)


SQUARE = """<scene version="3.0.0">
<integrator type="direct"/>
{sensor}
<shape type="rectangle" id="obj"><transform name="to_world"><scale value="0.5"/><rotate z="1" angle="20"/>
  <rotate x="1" angle="-60"/><translate y="0.2"/></transform>
  <bsdf type="twosided"><bsdf type="diffuse"><rgb name="reflectance" value="0.2,0.5,0.8"/></bsdf></bsdf></shape>
<shape type="rectangle"><transform name="to_world"><scale value="3"/><rotate x="1" angle="-90"/>
  <translate y="-0.5"/></transform><bsdf type="diffuse"/></shape>
<emitter type="point"><point name="position" x="0.5" y="3" z="0.5"/><rgb name="intensity" value="10"/></emitter>
</scene>"""


def test_crop_and_principal_point_derivative_matches_finite_differences():
    """A square moving sideways: its silhouette and its point-light shadow
    move across a cropped window of an off-centre camera (primary-edge and
    delta-shadow boundary terms)."""
    xml = SQUARE.format(sensor=_sensor("perspective", PINHOLE, w=32, h=24, ox=6, oy=6, cw=16, ch=16))
    d, fd = translation_jvp_and_fd(jr.load_string(xml), "obj.to_world", (1.0, 0.0, -0.4))

    def down(x):
        return np.asarray(x)[..., 0].reshape(4, 4, 4, 4).mean((1, 3))

    a, b = down(d), down(fd)
    err = float(np.linalg.norm(a - b) / np.linalg.norm(b))
    print(f"relative error {err:.3f}")
    assert err < 0.15, err


def test_crop_loader_rules(capsys):
    def load(sensor):
        return jr.load_string(f'<scene version="3.0.0">{sensor}</scene>')

    # A window outside the film: an error naming the line, as Mitsuba refuses it.
    with pytest.raises(jr.SceneError, match=r"hdrfilm \(<string>:\d+\): the crop window \(17x9 at \(30, 3\)\) must lie inside"):
        load(_sensor("perspective", "", ox=30))
    with pytest.raises(jr.SceneError, match="crop_width"):
        load(_sensor("perspective", "", cw=0))
    # Mitsuba's thinlens has no principal point.
    with pytest.raises(jr.SceneError, match="principal_point_offset_x"):
        load(_sensor("thinlens", CAMERAS["thinlens"] + '<float name="principal_point_offset_x" value="0.1"/>'))
    batch = ('<sensor type="batch">' + FILM.format(w=40, h=20, ox=0, oy=2, cw=40, ch=10, rfilter="")
             + '<sensor type="perspective"/><sensor type="perspective"/></sensor>')
    with pytest.raises(jr.SceneError, match="batch sensor's film cannot be cropped"):
        load(batch)
    # A crop of the whole film is no crop.
    whole = load(_sensor("perspective", "", ox=0, oy=0, cw=40, ch=20)).sensors[0].film
    assert whole == jr.Film(40, 20) and not whole.cropped
    with pytest.raises(ValueError, match="must lie inside"):
        jr.Film(8, 8, crop_offset_x=4, crop_width=5)
    with pytest.raises(ValueError, match="principal_point"):
        jr.PerspectiveCamera(to_world=jnp.eye(4), fov=jnp.float32(40), principal_point=(0.1, float("nan")))


def test_crop_cli(tmp_path, capsys):
    path = tmp_path / "crop.xml"
    path.write_text(SCENE.format(sensor=_sensor("perspective", PINHOLE)))
    assert cli.main(["params", str(path)]) == 0
    assert "film 40x20 (crop 17x9 at 6,3)" in capsys.readouterr().out
    out = tmp_path / "crop.exr"
    assert cli.main(["render", str(path), "-o", str(out), "--spp", "1", "--max-depth", "1"]) == 0
    assert jr.read_image(str(out)).shape == (9, 17, 3)
