"""The public API and the `jaxrender` command: loading by name, world-space
flattening checked against Mitsuba's bounding boxes (stored in
tests/data/scenes/expected.json), CLI success and error paths."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrender as jr
from jaxrender import cli
from jaxrender.geometry.world import flatten_scene

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENES = os.path.join(ROOT, "tests", "data", "scenes")


def _expected(key):
    with open(os.path.join(SCENES, "expected.json")) as f:
        return json.load(f)[key]


def test_builtin_cbox_by_name_and_by_path_agree():
    by_name = jr.load_file("cbox", res=32, spp=4)
    by_path = jr.load_file(str(jr.BUILTIN_SCENES["cbox"]), res=32, spp=4)
    a, b = jr.traverse(by_name), jr.traverse(by_path)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    cam = by_name.sensors[0]
    assert (cam.film.width, cam.film.height, cam.sample_count) == (32, 32, 4)
    assert by_name.integrator.type == "path" and by_name.integrator.max_depth == 8


ALL_SCENES = ["jaxrender/data/cbox/cbox.xml", "tests/data/scenes/plugins_v3_a.xml",
              "tests/data/scenes/plugins_v3_b.xml", "tests/data/scenes/plugins_v3_c.xml",
              "tests/data/scenes/psdr_v05.xml", "tests/data/scenes/psdr_microfacet_v05.xml"]
# psdr_microfacet_v05.xml has no entry of its own (Mitsuba rejects it): its
# shapes are psdr_v05.xml's (tests/data/scenes/README.md).
_EXPECTED_AS = {"tests/data/scenes/psdr_microfacet_v05.xml": "tests/data/scenes/psdr_v05.xml"}


def _load_quietly(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jr.SceneWarning)  # PSDR's microfacet approximation
        return jr.load_file(os.path.join(ROOT, path))


@pytest.mark.parametrize("path", ALL_SCENES)
def test_flattened_world_geometry_matches_mitsuba(path):
    """Every shape's world-space bounding box, face count and face normals
    (from the winding) equal Mitsuba 3's (expected.json)."""
    scene = _load_quietly(path)
    geometry = flatten_scene(scene)
    verts = np.asarray(geometry.vertices, np.float64)
    shapes = _expected(_EXPECTED_AS.get(path, path))["shapes"]
    checked = 0
    for i, mesh in enumerate(scene.shapes):
        if mesh.id not in shapes:
            continue
        want = shapes[mesh.id]
        faces = geometry.faces[geometry.shape_index == i]
        mine = verts[np.unique(faces)]
        box = want["bbox"]
        scale = max(1.0, float(np.abs(box["max"]).max()))
        np.testing.assert_allclose(mine.min(0), box["min"], atol=2e-5 * scale, err_msg=mesh.id)
        np.testing.assert_allclose(mine.max(0), box["max"], atol=2e-5 * scale, err_msg=mesh.id)
        if "face_count" in want:  # meshes (Mitsuba's sphere and disk are analytic)
            assert mesh.num_faces == want["face_count"], mesh.id
            n = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
            n /= np.linalg.norm(n, axis=1, keepdims=True)
            np.testing.assert_allclose(n, want["face_normals"], atol=1e-5, err_msg=mesh.id)
            assert mesh.flip_normals == want["has_flipped_normals"], mesh.id
            assert (mesh.vertex_normals is not None) == want["has_vertex_normals"], mesh.id
        assert (mesh.emitter >= 0) == want["is_emitter"], mesh.id
        checked += 1
    assert checked == len(scene.shapes) if path not in _EXPECTED_AS else checked == 3
    assert geometry.faces.shape[0] == sum(m.num_faces for m in scene.shapes)


@pytest.mark.parametrize("path", ALL_SCENES[:5])
def test_emitters_match_mitsuba(path):
    """Positions, directions and attachments of every emitter (expected.json)."""
    scene = _load_quietly(path)
    expected = _expected(path)["emitters"]
    # Keyed by the XML id, else (area lights without one) by "<shape>.emitter",
    # which is our parameter-name prefix.
    by_id = {e.id: e for e in scene.emitters}
    by_id.update({k: scene.emitters[i] for k, (c, i) in scene.ids.items() if c == "emitters"})
    assert len(expected) == len(scene.emitters)
    for eid, want in expected.items():
        e = by_id[eid]
        kind = {"AreaLight": jr.AreaLight, "PointLight": jr.PointLight, "SpotLight": jr.SpotLight,
                "DirectionalEmitter": jr.DirectionalLight, "EnvironmentMapEmitter": jr.EnvironmentMap,
                "ConstantBackgroundEmitter": jr.ConstantEmitter}[want["type"]]
        assert isinstance(e, kind), eid
        if isinstance(e, jr.PointLight):
            np.testing.assert_allclose(e.position, want["position"], atol=1e-6)
        if isinstance(e, (jr.SpotLight, jr.DirectionalLight)):
            m = np.asarray(e.to_world, np.float64)
            if "position" in want:
                np.testing.assert_allclose(m[:3, 3], want["position"], atol=1e-6)
            d = m[:3, 2] / np.linalg.norm(m[:3, 2])
            np.testing.assert_allclose(d, want["direction"], atol=1e-6, err_msg=eid)
        if isinstance(e, jr.AreaLight):
            assert scene.shapes[e.shape].id == want["shape"] and scene.shapes[e.shape].emitter == \
                scene.emitters.index(e)
    if path.endswith("plugins_v3_a.xml"):
        # tests/data/scenes/README.md: the spot's cone.
        spot = by_id["spot_light"]
        assert (float(spot.cutoff_angle), float(spot.beam_width)) == (30.0, 20.0)


def test_include_file_loads_on_its_own():
    """plugins_v3_include.xml alone: no shapes or sensors, its BSDFs with the
    values Mitsuba gives them inside plugins_v3_a.xml, and its own <default>
    for $tex_dir (which the includer's overrides there)."""
    path = os.path.join(SCENES, "plugins_v3_include.xml")
    d = jr.io.parse_xml(path)
    assert d["png_nearest"]["filename"] == os.path.join(SCENES, "textures", "checker8x4.png")
    scene = jr.load_file(path)
    assert (len(scene.shapes), len(scene.bsdfs), len(scene.emitters), len(scene.sensors)) == (0, 4, 0, 0)
    assert [b.id for b in scene.bsdfs] == ["gold", "rough_ggx", "plastic", "glass"]
    params = jr.traverse(scene)
    expected = _expected("tests/data/scenes/plugins_v3_a.xml")["params"]
    checked = 0
    for name, value in expected.items():
        if name.split(".")[0] not in ("gold", "rough_ggx", "plastic", "glass"):
            continue
        if name.endswith(".eta") and name not in params:  # Mitsuba stores int_ior / ext_ior
            prefix = name[:-4]
            ours = params[prefix + ".int_ior"] / params[prefix + ".ext_ior"]
        else:
            ours = params[name]
        np.testing.assert_allclose(ours, value, rtol=2e-6, err_msg=name)
        checked += 1
    assert checked == 9


def test_mitsuba2_envmap_workflow():
    """Mitsuba 2's envmap tutorial, as written there: the test scene's
    envmap has the id "env" (plugins_v3_b.xml), the tutorial's "my_envmap"."""
    scene = _load_quietly("tests/data/scenes/plugins_v3_b.xml")
    params = jr.traverse(scene)
    ref = params["env.data"]
    assert ref.shape == (8, 16, 3) and ref.dtype == jnp.float32
    scene2 = jr.replace(scene, {"env.data": jnp.ones_like(ref)})
    params2 = jr.traverse(scene2)
    assert params2.keys() == params.keys()
    np.testing.assert_array_equal(params2["env.data"], np.ones((8, 16, 3), np.float32))
    np.testing.assert_array_equal(jr.traverse(scene)["env.data"], ref)  # the original is unchanged
    for name in params:
        if name != "env.data":
            np.testing.assert_array_equal(params2[name], params[name], err_msg=name)
    # The tutorial's optimization step: a loss of the envmap through replace.
    loss = lambda data: jnp.mean((jr.traverse(jr.replace(scene, {"env.data": data}))["env.data"] - ref) ** 2)
    g = jax.grad(loss)(jnp.ones_like(ref))
    np.testing.assert_allclose(g, 2 * (1 - np.asarray(ref)) / ref.size, rtol=1e-5)


PSDR_STYLE = """<scene version="0.5.0">
  <sensor type="perspective"><float name="fov" value="40"/>
    <transform name="toWorld"><lookat origin="0, 2, 6" target="0, 0.5, 0" up="0, 1, 0"/></transform>
    <film type="hdrfilm"><integer name="width" value="8"/><integer name="height" value="8"/></film>
  </sensor>
  <shape type="obj"><string name="filename" value="{scenes}/meshes/quad.obj"/>
    <transform name="toWorld"><rotate x="1" angle="30"/><translate x="0.5" y="0.2" z="0.1"/></transform>
  </shape>
  <shape type="obj"><string name="filename" value="{scenes}/meshes/plane.obj"/></shape>
</scene>"""


def test_psdr_to_world_workflow_jvp_matches_finite_differences():
    """PSDR-CUDA's workflow: Mesh[0]'s to_world left-multiplied by a rotation
    about z by P degrees; d(world vertices)/dP by jax.jvp equals central
    finite differences, and Mesh[1] does not move."""
    scene = jr.load_string(PSDR_STYLE.format(scenes=SCENES))
    base = jr.traverse(scene)["Mesh[0].to_world"]
    n0 = scene.shapes[0].num_vertices

    def world_vertices(p):
        moved = jr.replace(scene, {"Mesh[0].to_world": jr.rotate([0, 0, 1], p) @ base})
        return jr.flatten_scene(moved).vertices

    p0, eps = jnp.float32(20.0), 0.25
    value, tangent = jax.jvp(world_vertices, (p0,), (jnp.float32(1.0),))
    np.testing.assert_allclose(value, world_vertices(p0))
    fd = (np.asarray(world_vertices(p0 + eps), np.float64) - np.asarray(world_vertices(p0 - eps), np.float64)) / (2 * eps)
    assert np.abs(tangent[:n0]).max() > 1e-3
    np.testing.assert_allclose(tangent, fd, rtol=1e-3, atol=2e-5)
    np.testing.assert_array_equal(tangent[n0:], 0.0)
    # Analytically: d/dP (R_z(P) x) = (pi / 180) (-y, x, 0) for x = R_z(P) x0.
    v = np.asarray(value[:n0], np.float64)
    np.testing.assert_allclose(tangent[:n0], np.pi / 180 * np.stack([-v[:, 1], v[:, 0], 0 * v[:, 0]], 1), atol=1e-6)


@pytest.mark.parametrize("path", ["jaxrender/data/cbox/cbox.xml", "tests/data/scenes/plugins_v3_b.xml"])
def test_jit_cache_is_reused_across_replace_and_reload(path):
    """Changing values with replace, or loading the same file again, hits the
    same jit cache entry: only the static parts of a scene are hashed."""
    traces = []

    @jax.jit
    def f(scene):
        traces.append(1)  # runs once per trace
        return flatten_scene(scene).vertices.sum() + sum(jnp.sum(v) for v in jr.traverse(scene).values())

    scene = _load_quietly(path)
    first = f(scene)
    params = jr.traverse(scene)
    changed = jr.replace(scene, {k: v * 1.5 + 0.25 for k, v in params.items() if "to_world" not in k})
    assert float(f(changed)) != float(first)
    again = _load_quietly(path)
    assert again is not scene and float(f(again)) == float(first)
    assert len(traces) == 1
    # A static change (here the film size) is a new entry, as it must be.
    cam = scene.sensors[0]
    resized = dataclasses.replace(cam, film=dataclasses.replace(cam.film, width=cam.film.width + 1))
    f(dataclasses.replace(scene, sensors=(resized,) + scene.sensors[1:]))
    assert len(traces) == 2


def test_flatten_scene_is_differentiable_through_to_world():
    scene = jr.load_file("cbox", res=16)

    def spread(t):
        moved = jr.replace(scene, {"tall_box.to_world": jr.translate(jnp.stack([t, 0.0, 0.0]))})
        return jnp.sum(flatten_scene(moved).vertices[:, 0])

    g = jax.grad(spread)(jnp.float32(0.0))
    # d/dt of the summed x coordinates = number of the tall box's vertices.
    n = next(m.num_vertices for m in scene.shapes if m.id == "tall_box")
    assert float(g) == pytest.approx(n)


def test_load_string_and_errors_name_the_source(tmp_path):
    scene = jr.load_string(
        '<scene version="3.0.0"><default name="w" value="8"/>'
        '<sensor type="perspective"><film type="hdrfilm"><integer name="width" value="$w"/>'
        '<integer name="height" value="4"/></film></sensor>'
        '<shape type="rectangle"/></scene>', w=6)
    assert scene.sensors[0].film.width == 6 and len(scene.shapes) == 1
    with pytest.raises(jr.SceneError, match=r"malformed\.xml:\d+"):
        jr.load_file(os.path.join(SCENES, "bad", "malformed.xml"))
    with pytest.raises(FileNotFoundError, match="built-in scenes: cbox"):
        jr.load_file(tmp_path / "missing.xml")


def test_cli_raycast_scene_and_mesh(tmp_path, capsys):
    out = tmp_path / "cbox.png"
    assert cli.main(["raycast", "cbox", "-o", str(out), "--resolution", "24x16", "--repeat", "1"]) == 0
    image = jr.read_image(str(out))
    assert image.shape == (16, 24, 3)
    # The red wall is on the left and the green wall on the right (classic view).
    left, right = image[8, 1], image[8, -2]
    assert left[0] > 2 * left[1] and right[1] > 2 * right[0]
    out2 = tmp_path / "torus.exr"
    assert cli.main(["raycast", "torus", "-o", str(out2), "--resolution", "16x16", "--repeat", "1"]) == 0
    assert jr.read_image(str(out2)).max() > 0.5
    assert "wrote" in capsys.readouterr().out


def test_cli_params_lists_traverse(capsys):
    assert cli.main(["params", "cbox", "-D", "res=8"]) == 0
    out = capsys.readouterr().out
    assert "red.reflectance.value" in out and "camera.to_world" in out and "film 8x8" in out


@pytest.mark.parametrize("argv, message", [
    (["raycast", os.path.join(SCENES, "bad", "unknown_plugin.xml"), "-o", "x.png"], "unknown_plugin.xml"),
    (["raycast", "nothere.xml", "-o", "x.png"], "not found"),
    (["raycast", "cbox", "-o", "x.png", "--sensor", "3"], "--sensor 3"),
    (["params", "cbox", "-D", "nosuch=1"], "nosuch"),
    # Outputs and options are checked before anything is rendered.
    (["render", "cbox", "-o", "x.xyz"], "unsupported image format '.xyz'"),
    (["render", "cbox", "-o", "no/such/x.png"], "does not exist"),
    (["render", "cbox", "-o", "x.png", "--max-depth", "-5"], "--max-depth must be -1"),
    (["render", "cbox", "-o", "x.png", "--integrator", "bogus"], "'bogus'"),
    (["render", "cbox", "-o", "x.png", "--integrator", "aov:depth,nn"], "need an .exr output"),
    (["render", "cbox", "-o", "x.png", "--integrator", "aov:dp_du"], "unknown AOV type"),
    (["raycast", "sphere", "-o", "x.png", "--subdivisions", "12"], "--subdivisions must be in [0, 9]"),
    (["raycast", "torus", "-o", "x.png", "-D", "res=8"], "-D and --sensor apply to scenes"),
    # Values beyond the int32 loop counters and JAX's 32-bit seeds.
    (["render", "cbox", "-o", "x.png", "--max-depth", "1099511627776"], "--max-depth must be -1"),
    (["render", "cbox", "-o", "x.png", "--spp", "1000000000000"], "--spp must be a positive integer below 2^31"),
    (["render", "cbox", "-o", "x.png", "--seed", "4294967296"], "--seed must be in [-2^31, 2^32)"),
    (["render", "cbox", "-o", "x.exr", "--integrator", "aov:depth,depth"], "depth repeated"),
])
def test_cli_errors_are_one_line_with_exit_code_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxrender: error:") and message in err and "\n" not in err


def _write_hostile(folder):
    """Bad inputs for the CLI: {file name: what its one-line error must say}."""
    (folder / "empty.xml").write_bytes(b"")
    (folder / "binary.xml").write_bytes(bytes(range(256)) * 8)
    for i in range(600):
        body = f'<include filename="inc{i + 1}.xml"/>' if i < 599 else ""
        (folder / f"inc{i}.xml").write_text(f'<scene version="3.0.0">{body}</scene>')
    nested = '<bsdf type="twosided">' * 500 + "</bsdf>" * 500
    (folder / "nested.xml").write_text(f'<scene version="3.0.0">{nested}</scene>')
    (folder / "folder.xml").mkdir()
    (folder / "encoding.xml").write_text('<?xml version="1.0" encoding="bogus-99"?>\n<scene version="3.0.0"/>')
    (folder / "overflow.xml").write_text(
        '<scene version="3.0.0"><shape type="cube"><transform name="to_world">\n<scale value="1e30"/>'
        '<scale value="1e30"/></transform></shape></scene>')
    return {
        "encoding.xml": "encoding.xml:1: cannot decode the file: unknown encoding: bogus-99",
        "overflow.xml": 'overflow.xml:1): parameter "to_world" does not fit in float32',
        "empty.xml": "empty.xml:1: malformed XML",
        "binary.xml": "binary.xml:1: malformed XML",
        "inc0.xml": "inc32.xml:1: includes nested more than 32 levels deep",
        "nested.xml": "nested.xml:1: <bsdf> is nested more than 100 objects deep",
        "folder.xml": "folder.xml: is a directory",
    }


def test_cli_reports_running_out_of_memory_in_one_line(monkeypatch, capsys):
    """XLA's RESOURCE_EXHAUSTED (a film too large for this machine) and
    Python's MemoryError are one line with exit code 2; other runtime
    errors (bugs) keep their traceback."""
    for error in (jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 7864320000 bytes."),
                  MemoryError()):
        def fail(args, error=error):
            raise error
        monkeypatch.setattr(cli, "_cmd_render", fail)
        assert cli.main(["render", "cbox", "-o", "x.png"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("jaxrender: error: out of memory") and "\n" not in err, err
    monkeypatch.setattr(cli, "_cmd_render", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main(["render", "cbox", "-o", "x.png"])


def test_cli_never_prints_a_traceback_for_bad_input(tmp_path, capsys):
    for name, message in _write_hostile(tmp_path).items():
        for argv in (["params", str(tmp_path / name)], ["raycast", str(tmp_path / name), "-o", "x.png"]):
            assert cli.main(argv) == 2, argv
            err = capsys.readouterr().err.strip()
            assert err.startswith("jaxrender: error:") and message in err and "\n" not in err, err
    # An absurd --resolution is refused before anything is allocated.
    with pytest.raises(SystemExit) as info:
        cli.main(["raycast", "torus", "-o", "x.png", "--resolution", "100000x100000"])
    assert info.value.code == 2 and "--resolution '100000x100000' is too large" in capsys.readouterr().err
    # A value that starts with '-' reaches its flag's own check (argparse
    # alone took "-4x4" for a flag and said "expected one argument").
    with pytest.raises(SystemExit) as info:
        cli.main(["raycast", "torus", "-o", "x.png", "--resolution", "-4x4"])
    assert info.value.code == 2 and "--resolution must be positive, got '-4x4'" in capsys.readouterr().err
    # An output path that is a folder is refused before rendering.
    (tmp_path / "out.png").mkdir()
    assert cli.main(["render", "cbox", "-o", str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxrender: error:") and "out.png: is a directory" in err and "\n" not in err
    # An output that cannot be written is an OSError, reported the same way.
    argv = ["raycast", "torus", "-o", str(tmp_path / "no" / "such" / "dir.png"), "--resolution", "4x4",
            "--repeat", "1"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxrender: error:") and "dir.png" in err and "\n" not in err


def test_readme_api_snippet_runs():
    """The README's "API in five lines" block, executed as written."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    start = text.index("## The API in five lines")
    code = text[text.index("```python\n", start) + len("```python\n"):text.index("```\n", start + 30)]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["image"].shape == (64, 64, 3)
    grads = namespace["grads"]
    # The red wall was made green-ish: the loss pulls its red reflectance up
    # (negative gradient) and its green down; the box's pose gradient is real.
    g_red = np.asarray(grads["red.reflectance.value"])
    assert g_red[0] < 0 < g_red[1], g_red
    assert np.isfinite(np.asarray(grads["tall_box.to_world"])).all()
    assert np.abs(np.asarray(grads["tall_box.to_world"])).max() > 0


def test_render_and_replace_refuse_bad_arguments():
    """Wrong types reach the user as errors that name the argument, and NaN
    parameters are refused where they can be seen (outside jit): rendered,
    they would not show as NaN pixels but would poison gradients."""
    scene = jr.load_file("cbox")
    with pytest.raises(TypeError, match=r"render expects a Scene, got str \(load it first"):
        jr.render("cbox")
    with pytest.raises(TypeError, match="seed must be an integer"):
        jr.render(scene, seed=1.5)
    with pytest.raises(ValueError, match="the aov integrator needs at least one AOV"):
        jr.render(scene, "aov:", spp=1)
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match='"red.reflectance.value" has non-finite values'):
            jr.replace(scene, {"red.reflectance.value": [bad, 0.2, 0.3]})
    # Keys, sample counts and depths that JAX would reject deep inside.
    for key in (3, np.zeros(3, np.uint32), jax.random.split(jax.random.key(0), 2)):
        with pytest.raises(TypeError, match=r"key must be a single jax.random.key"):
            jr.render(scene, key=key, spp=1)
    with pytest.raises(TypeError, match=r"key_grad must be a single jax.random.key"):
        jr.render(scene, key_grad="k", spp=1)
    with pytest.raises(ValueError, match=r"spp must be a positive integer below 2\^31, got 2147483648"):
        jr.render(scene, spp=2**31)
    for field, value in (("max_depth", 2**40), ("max_depth", -2), ("rr_depth", 0), ("bsdf_samples", -1)):
        cfg = dataclasses.replace(scene.integrator, **{field: value})
        with pytest.raises(ValueError, match=rf"integrator {field} must be an integer in"):
            jr.render(scene, cfg, spp=1)


def test_seed_range_and_numpy_sensor_index(tmp_path):
    scene = jr.load_file("cbox")
    with pytest.raises(ValueError, match=r"seed must be in \[-2\^31, 2\^32\)"):
        jr.render(scene, seed=2**32)
    a = jr.render(scene, "aov:depth", sensor=np.int64(0), spp=1, seed=3)
    b = jr.render(scene, "aov:depth", sensor=0, spp=1, seed=3)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # A one-row environment map names the file and the line.
    jr.write_image(str(tmp_path / "row.exr"), np.ones((1, 4, 3), np.float32))
    xml = tmp_path / "env.xml"
    xml.write_text('<scene version="3.0.0">\n<emitter type="envmap"><string name="filename" value="row.exr"/>'
                   '</emitter></scene>')
    with pytest.raises(jr.SceneError, match=r"env\.xml:2.*row\.exr.*at least 2 rows"):
        jr.load_file(str(xml))


def test_pass_size_follows_the_backend(monkeypatch):
    """2^16 samples a pass on the CPU; 2^20 on a GPU, where 2^16 would leave
    most of it idle (and the CLI's passes follow the same size)."""
    import importlib

    R = importlib.import_module("jaxrender.integrators.render")  # the module, not the function
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert R.pass_samples() == R.PASS_SAMPLES == 1 << 16
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert R.pass_samples() == R.GPU_PASS_SAMPLES == 1 << 20
