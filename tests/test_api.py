"""The public API and the `jaxrender` command: loading by name, world-space
flattening checked against Mitsuba's bounding boxes (stored in
tests/data/scenes/expected.json), CLI success and error paths."""

from __future__ import annotations

import json
import os

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


@pytest.mark.parametrize("path", ["jaxrender/data/cbox/cbox.xml", "tests/data/scenes/plugins_v3_a.xml"])
def test_flattened_world_geometry_matches_mitsuba_bboxes(path):
    """Every shape's world-space bounding box equals Mitsuba 3's (expected.json)."""
    scene = jr.load_file(os.path.join(ROOT, path))
    geometry = flatten_scene(scene)
    verts = np.asarray(geometry.vertices)
    shapes = _expected(path)["shapes"]
    checked = 0
    for i, mesh in enumerate(scene.shapes):
        if mesh.id not in shapes or "bbox" not in shapes[mesh.id]:
            continue
        mine = verts[np.unique(geometry.faces[geometry.shape_index == i])]
        box = shapes[mesh.id]["bbox"]
        scale = max(1.0, float(np.abs(box["max"]).max()))
        np.testing.assert_allclose(mine.min(0), box["min"], atol=2e-5 * scale, err_msg=mesh.id)
        np.testing.assert_allclose(mine.max(0), box["max"], atol=2e-5 * scale, err_msg=mesh.id)
        checked += 1
    assert checked >= 3
    assert geometry.faces.shape[0] == sum(m.num_faces for m in scene.shapes)


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
    return {
        "empty.xml": "empty.xml:1: malformed XML",
        "binary.xml": "binary.xml:1: malformed XML",
        "inc0.xml": "inc32.xml:1: includes nested more than 32 levels deep",
        "nested.xml": "nested.xml:1: <bsdf> is nested more than 100 objects deep",
        "folder.xml": "folder.xml: is a directory",
    }


def test_cli_never_prints_a_traceback_for_bad_input(tmp_path, capsys):
    for name, message in _write_hostile(tmp_path).items():
        for argv in (["params", str(tmp_path / name)], ["raycast", str(tmp_path / name), "-o", "x.png"]):
            assert cli.main(argv) == 2, argv
            err = capsys.readouterr().err.strip()
            assert err.startswith("jaxrender: error:") and message in err and "\n" not in err, err
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
    hit = namespace["hit"]
    # The open front of the box is a little narrower than the view at z = 0.
    assert hit.prim.shape == (64, 64) and float((hit.prim >= 0).mean()) > 0.9
