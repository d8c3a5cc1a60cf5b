"""Mesh attributes and the `mesh_attribute` texture (Mitsuba 3's).

References: Mitsuba 3 itself (scalar_rgb) for which PLY properties become
which attributes and for the texture's value at ray hits; central finite
differences for derivatives with respect to attribute values and `scale`.
Whole renders are compared with Mitsuba in test_render.py
(mesh_attributes, mesh_attributes_light).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrender as jr
from jaxrender import io as jio
from jaxrender.scene import bind_mesh_attributes
from jaxrender.scene.textures import eval_texture

V4 = np.array([[-1, -1, 0], [1, -1, 0], [-1, 1, 0], [1, 1, 0]], np.float32)
F2 = np.array([[0, 1, 2], [1, 3, 2]])


def _ply_text(vprops, vrows, fprops=(), frows=((3, 0, 1, 2),), vtype="float"):
    """An ASCII PLY with the given vertex properties (x, y, z first) and
    face rows (count, indices..., face properties...)."""
    head = ["ply", "format ascii 1.0", f"element vertex {len(vrows)}"]
    head += [f"property {'float' if p in 'xyz' else vtype} {p}" for p in vprops]
    head += [f"element face {len(frows)}", "property list uchar int vertex_indices"]
    head += [f"property float {p}" for p in fprops] + ["end_header"]
    return "\n".join(head + [" ".join(map(str, r)) for r in list(vrows) + list(frows)]) + "\n"


# name: (vertex properties after x y z, face properties), as Mitsuba 3.9 groups them.
PLY_CASES = {
    "rgb": (["r", "g", "b"], []),
    "red_green_blue_alpha": (["red", "green", "blue", "alpha"], []),
    "prefix_xyz": (["foo_x", "foo_y", "foo_z"], []),
    "red_green_blue_a": (["red", "green", "blue", "a"], []),
    "rgb_alpha": (["r", "g", "b", "alpha"], []),
    "prefix_rgb": (["foo_r", "foo_g", "foo_b"], []),
    "prefix_123_and_single": (["foo_1", "foo_2", "foo_3", "bar_x"], []),
    "two_fields_dropped": (["foo_0", "foo_1", "w_x"], []),
    "no_postfix_dropped": (["quality", "my_weight", "k_x"], []),
    # (Mitsuba 3.9 also drops the first field after a broken sequence, and
    # with it the next attribute; jaxrender keeps that one: not compared.)
    "broken_sequence": (["bar_r", "bar_g", "bar_b", "foo_x", "foo_z", "foo_y"], []),
    "face": (["nx", "ny", "nz", "u", "v"], ["r", "g", "b", "tag_x"]),
}


@pytest.mark.parametrize("case", sorted(PLY_CASES))
def test_ply_attributes_are_mitsubas(case, tmp_path):
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    vprops, fprops = PLY_CASES[case]
    rng = np.random.default_rng(len(case))
    vrows = [list(V4[i, :3]) + list(np.round(rng.uniform(0, 1, len(vprops)), 4)) for i in range(3)]
    if "nx" in vprops:
        for r in vrows:
            r[3:6] = [0, 0, 1]
    frows = [[3, 0, 1, 2] + list(np.round(rng.uniform(0, 1, len(fprops)), 4))]
    path = tmp_path / f"{case}.ply"
    path.write_text(_ply_text(["x", "y", "z"] + vprops, vrows, fprops, frows))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        ours = jio.read_ply(str(path)).attributes
    params = mi.traverse(mi.load_dict({"type": "ply", "filename": str(path)}))
    theirs = {k: np.array(params[k]) for k in params.keys() if k.startswith(("vertex_", "face_"))
              and k not in ("vertex_positions", "vertex_normals", "vertex_texcoords", "faces")}
    assert sorted(ours) == sorted(theirs), case
    assert ours or case in ("two_fields_dropped",), "the case must produce attributes"
    for k, a in ours.items():
        np.testing.assert_allclose(a.ravel(), theirs[k], rtol=1e-6, err_msg=k)


def test_ply_attribute_rules_warn_and_keep_raw_values(tmp_path):
    path = tmp_path / "u8.ply"
    path.write_text(_ply_text(["x", "y", "z", "red", "green", "blue"],
                              [[0, 0, 0, 255, 128, 0], [1, 0, 0, 0, 0, 0], [0, 1, 0, 10, 20, 30]], vtype="uchar"))
    with pytest.warns(jr.SceneWarning, match="integer fields"):
        m = jio.read_ply(str(path))
    np.testing.assert_array_equal(m.attributes["vertex_color"][0], [255, 128, 0])  # as stored, as Mitsuba
    # Common non-attribute properties are skipped quietly; a field that looks
    # like an attribute's but is not is named.
    path.write_text(_ply_text(["x", "y", "z", "quality", "foo_x", "foo_y"],
                              [[0, 0, 0, 1, 1, 1], [1, 0, 0, 2, 1, 1], [0, 1, 0, 3, 1, 1]]))
    with pytest.warns(jr.SceneWarning, match="foo_x, foo_y are ignored .it has 2 fields") as record:
        assert jio.read_ply(str(path)).attributes == {}
    assert not any("quality" in str(w.message) for w in record)


@pytest.mark.parametrize("extra, what", [(["u"], "texture coordinates need a pair.*only u present"),
                                          (["texture_s"], "only texture_s present"),
                                          (["nx", "ny"], "normals need nx, ny and nz; only nx, ny present")])
def test_ply_half_normals_or_uvs_are_named(tmp_path, extra, what):
    # A half set of normals or UVs cannot be used; it is dropped with a word
    # (it used to vanish silently), and the mesh still loads.
    path = tmp_path / "half.ply"
    path.write_text(_ply_text(["x", "y", "z"] + extra, [list(V4[i]) + [0.5] * len(extra) for i in range(3)]))
    with pytest.warns(jr.SceneWarning, match=what):
        m = jio.read_ply(str(path))
    assert m.texcoords is None and m.normals is None and m.attributes == {}


def test_face_attributes_of_polygons_and_round_trips(tmp_path):
    # A quad and a triangle: the quad's value goes to both of its fan's triangles.
    path = tmp_path / "poly.ply"
    path.write_text(_ply_text(["x", "y", "z"], V4.tolist(), ["w_x"], [[4, 0, 1, 3, 2, 0.25], [3, 0, 1, 2, 0.75]]))
    m = jio.read_ply(str(path))
    np.testing.assert_array_equal(m.faces, [[0, 1, 3], [0, 3, 2], [0, 1, 2]])
    np.testing.assert_allclose(m.attributes["face_w"][:, 0], [0.25, 0.25, 0.75])
    rng = np.random.default_rng(0)
    attrs = {"vertex_color": rng.random((4, 3)), "vertex_w": rng.random((4, 1)), "face_color": rng.random((2, 3)),
             "face_tint_color": rng.random((2, 3)), "face_q": rng.random(2), "vertex_a_b": rng.random((4, 3))}
    for ascii in (True, False):
        jio.write_ply(tmp_path / "rt.ply", V4, F2, attributes=attrs, ascii=ascii)
        back = jio.read_ply(str(tmp_path / "rt.ply")).attributes
        assert sorted(back) == sorted(attrs)
        for k, a in attrs.items():
            np.testing.assert_allclose(back[k], np.asarray(a, np.float32).reshape(back[k].shape), rtol=1e-6)
    with pytest.raises(ValueError, match="one row per face"):
        jio.MeshData(V4, F2, attributes={"face_x": np.zeros((3, 1))})
    with pytest.raises(ValueError, match="start with 'vertex_' or 'face_'"):
        jio.MeshData(V4, F2, attributes={"colour": np.zeros((4, 3))})
    # Attributes whose PLY properties would clash are refused, not lost.
    with pytest.raises(ValueError, match="cannot be written so that it reads back"):
        jio.write_ply(tmp_path / "x.ply", V4, F2, attributes={"vertex_foo": np.ones((4, 3)),
                                                              "vertex_foo_color": np.ones((4, 3))})
    # A PLY's r g b a colour (4 channels, as Mitsuba reads it) round trips.
    rgba = {"vertex_color": rng.random((4, 4)).astype(np.float32)}
    jio.write_ply(tmp_path / "rgba.ply", V4, F2, attributes=rgba)
    np.testing.assert_array_equal(jio.read_ply(str(tmp_path / "rgba.ply")).attributes["vertex_color"],
                                  rgba["vertex_color"])
    # List properties named like colours, and properties that would make a
    # reserved name, are skipped rather than fatal.
    path = tmp_path / "odd.ply"
    head = ["ply", "format ascii 1.0", "element vertex 3", "property float x", "property float y", "property float z",
            "property float positions_x", "property list uchar float r", "property float g", "property float b",
            "element face 1", "property list uchar int vertex_indices", "end_header"]
    path.write_text("\n".join(head + ["0 0 0 1 1 0.5 1 1", "1 0 0 1 1 0.5 1 1", "0 1 0 1 1 0.5 1 1",
                                        "3 0 1 2"]) + "\n")
    with pytest.warns(jr.SceneWarning, match="positions_x are ignored"):
        assert jio.read_ply(str(path)).attributes == {}


def _plane_xml(tmp_path, texture, attributes, bsdf="diffuse", param="reflectance", extra=""):
    jio.write_ply(tmp_path / "plane.ply", V4, F2, attributes=attributes)
    return f"""<scene version="3.0.0">
      <shape type="ply"><string name="filename" value="{tmp_path / 'plane.ply'}"/>
        <bsdf type="{bsdf}">{extra}<texture type="mesh_attribute" name="{param}">{texture}</texture></bsdf></shape>
    </scene>"""


ATTRS = {"vertex_color": np.array([[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9], [0.8, 0.8, 0.8]]),
         "face_color": np.array([[0.2, 0.4, 0.6], [0.7, 0.5, 0.3]]),
         "vertex_w": np.array([0.1, 0.3, 0.5, 0.7]), "face_w": np.array([0.25, 0.75])}


@pytest.mark.parametrize("name", ["vertex_color", "face_color", "vertex_w", "face_w"])
def test_texture_at_hits_equals_mitsubas(name, tmp_path):
    """The texture's value (diffuse reflectance, scale 0.8) at ray hits, as
    Mitsuba's `eval_diffuse_reflectance` at the same hits."""
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    from jaxrender.integrators import interaction
    from jaxrender.integrators.bsdfs import texture_at

    xml = _plane_xml(tmp_path, f'<string name="name" value="{name}"/><float name="scale" value="0.8"/>', ATTRS)
    rng = np.random.default_rng(3)
    o = np.column_stack([rng.uniform(-0.95, 0.95, (200, 2)), np.full(200, 2.0)])
    d = np.tile([0.0, 0.0, -1.0], (200, 1))
    ms = mi.load_string(xml)
    want = np.array([np.array(ms.ray_intersect(mi.Ray3f(o[i], d[i])).bsdf().eval_diffuse_reflectance(
        ms.ray_intersect(mi.Ray3f(o[i], d[i])))) for i in range(len(o))])
    scene = bind_mesh_attributes(jr.load_string(xml))
    arrays = interaction.prepare_scene(scene)
    hit = interaction.trace(arrays, jnp.asarray(o, jnp.float32), jnp.asarray(d, jnp.float32))
    si = interaction.surface_interaction(arrays, hit, jnp.asarray(o, jnp.float32), jnp.asarray(d, jnp.float32))
    got = np.asarray(texture_at(scene.bsdfs[0].reflectance, si.uv))
    np.testing.assert_allclose(np.broadcast_to(got, want.shape), want, rtol=1e-5, atol=1e-6)
    assert np.ptp(want[:, 0]) > 0.1  # the attribute varies over the hits


def test_derivatives_of_attribute_values_and_scale_match_finite_differences(tmp_path):
    xml = _plane_xml(tmp_path, '<string name="name" value="vertex_color"/><float name="scale" value="0.7"/>', ATTRS)
    xml = xml.replace("</scene>", """<emitter type="constant"><rgb name="radiance" value="1"/></emitter>
      <sensor type="perspective"><float name="fov" value="60"/>
        <transform name="to_world"><lookat origin="0.2, 0.1, 2" target="0, 0, 0" up="0, 1, 0"/></transform>
        <film type="hdrfilm"><integer name="width" value="12"/><integer name="height" value="12"/>
          <rfilter type="box"/></film></sensor></scene>""")
    scene = jr.load_string(xml)
    params = jr.traverse(scene)
    assert {"Mesh[0].vertex_color", "BSDF[0].reflectance.scale"} <= set(params)
    key = jax.random.key(0)
    names = ["Mesh[0].vertex_color", "BSDF[0].reflectance.scale"]

    def img(values):
        return jr.render(jr.replace(scene, dict(zip(names, values))), "direct", spp=4, key=key)

    x0 = [params[n] for n in names]
    rng = np.random.default_rng(0)
    dx = [jnp.asarray(rng.normal(size=np.shape(x)), jnp.float32) for x in x0]
    _, tangent = jax.jvp(img, (x0,), (dx,))
    h = 1e-2
    fd = (img([x + h * t for x, t in zip(x0, dx)]) - img([x - h * t for x, t in zip(x0, dx)])) / (2 * h)
    tangent, fd = np.asarray(tangent), np.asarray(fd)
    assert np.abs(fd).max() > 1e-2
    np.testing.assert_allclose(tangent, fd, rtol=2e-3, atol=2e-4 * np.abs(fd).max())
    # Reverse mode agrees with forward mode (dot-product test).
    w = jnp.asarray(rng.normal(size=tangent.shape), jnp.float32)
    _, vjp = jax.vjp(img, x0)
    (grads,) = vjp(w)
    lhs = float(jnp.sum(w * tangent))
    rhs = float(sum(jnp.sum(g * t) for g, t in zip(grads, dx)))
    assert abs(lhs - rhs) <= 1e-3 * abs(lhs)


def test_errors_name_the_attribute_and_the_source(tmp_path):
    tex = '<string name="name" value="vertex_nope"/>'
    with pytest.raises(jr.SceneError, match=r'no mesh attribute "vertex_nope".*vertex_color'):
        jr.load_string(_plane_xml(tmp_path, tex, ATTRS))
    with pytest.raises(jr.SceneError, match='must start with "vertex_" or "face_"'):
        jr.load_string(_plane_xml(tmp_path, '<string name="name" value="color"/>', ATTRS))
    # Mitsuba: Texture::mean() is not implemented for mesh_attribute.
    with pytest.raises(jr.SceneError, match="plastic.*mean"):
        jr.load_string(_plane_xml(tmp_path, '<string name="name" value="vertex_color"/>', ATTRS,
                                  bsdf="plastic", param="diffuse_reflectance"))
    # A PLY's r, g, b, a make a 4-channel vertex_color (as Mitsuba's), which no texture reads.
    path = tmp_path / "rgba.ply"
    path.write_text(_ply_text(["x", "y", "z", "r", "g", "b", "a"], [[0, 0, 0, 1, 0, 0, 1], [1, 0, 0, 0, 1, 0, 1],
                                                                    [0, 1, 0, 0, 0, 1, 1]]))
    xml = f"""<scene version="3.0.0"><shape type="ply"><string name="filename" value="{path}"/>
      <bsdf type="diffuse"><texture type="mesh_attribute" name="reflectance">
        <string name="name" value="vertex_color"/></texture></bsdf></shape></scene>"""
    with pytest.raises(jr.SceneError, match="4 channels"):
        jr.load_string(xml)
    # A three-channel attribute cannot fill a scalar parameter (Mitsuba's eval_1 refuses it too).
    scene = jr.load_string(_plane_xml(tmp_path, '<string name="name" value="vertex_color"/>', ATTRS,
                                      bsdf="roughconductor", param="alpha").replace(
        "</scene>", '<emitter type="constant"/>' + SENSOR))
    with pytest.raises(ValueError, match="3 channels and fills a scalar"):
        jr.render(scene, "direct", spp=1)
    # A height field with no uv gradient would be silently flat.
    with pytest.raises(jr.SceneError, match="bumpmap's height cannot be a mesh_attribute"):
        jr.load_string(_plane_xml(tmp_path, '<string name="name" value="vertex_w"/>', ATTRS, bsdf="bumpmap",
                                  param="height", extra='<bsdf type="diffuse"/>'))
    # Outside a render the texture has no hit to read.
    with pytest.raises(ValueError, match="not bound"):
        eval_texture(scene.bsdfs[0].alpha_u, jnp.zeros((1, 2)))


SENSOR = """<sensor type="perspective"><float name="fov" value="60"/>
        <transform name="to_world"><lookat origin="0, 0.2, 2" target="0, 0, 0" up="0, 1, 0"/></transform>
        <film type="hdrfilm"><integer name="width" value="8"/><integer name="height" value="8"/>
          <rfilter type="box"/></film></sensor></scene>"""


def test_one_channel_attributes_fill_scalar_parameters(tmp_path):
    """A one-channel face attribute as a rough conductor's alpha equals the
    constant alpha it holds (both faces carry the same value)."""
    attrs = dict(ATTRS, face_w=np.array([0.3, 0.3]))
    extra = '<string name="material" value="Au"/>'
    xml = _plane_xml(tmp_path, '<string name="name" value="face_w"/><float name="scale" value="0.5"/>', attrs,
                     bsdf="roughconductor", param="alpha", extra=extra)
    tail = """<emitter type="point"><point name="position" x="0.3" y="0.5" z="1.5"/>
      <rgb name="intensity" value="3"/></emitter>""" + SENSOR
    a = jr.render(jr.load_string(xml.replace("</scene>", tail)), "direct", spp=4, seed=1)
    const = xml.replace('<texture type="mesh_attribute" name="alpha"><string name="name" value="face_w"/>'
                        '<float name="scale" value="0.5"/></texture>', '<float name="alpha" value="0.15"/>')
    assert const != xml
    b = jr.render(jr.load_string(const.replace("</scene>", tail)), "direct", spp=4, seed=1)
    assert float(jnp.max(b)) > 0.05
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_aov_uv_stays_two_channels_and_hand_built_scenes_work():
    """A scene built from the pytree types: the uv AOV is the uv alone (the
    attributes ride after it inside the renderer), and a mesh without the
    attribute its BSDF reads is a clear error at render time."""
    from jaxrender.scene import StaticArray

    cam = jr.PerspectiveCamera(to_world=jr.look_at([0, 0, 3], [0, 0, 0], [0, 1, 0]), fov=jnp.float32(40.0),
                               film=jr.Film(width=6, height=6))
    mesh = jr.Mesh(vertex_positions=jnp.asarray(V4), to_world=jnp.eye(4), vertex_normals=None,
                   vertex_texcoords=None, faces=StaticArray(F2.astype(np.int32)), face_normals=True,
                   attributes={"vertex_color": jnp.asarray(ATTRS["vertex_color"], jnp.float32)})
    bsdf = jr.Diffuse(reflectance=jr.MeshAttributeTexture(name="vertex_color", scale=jnp.float32(1.0)))
    scene = jr.Scene(shapes=(mesh,), bsdfs=(bsdf,), emitters=(jr.ConstantEmitter(radiance=jr.ConstantTexture(value=jnp.ones(3, jnp.float32))),),
                     sensors=(cam,))
    img = jr.render(scene, "aov:uv:uv,albedo:albedo", spp=1)
    assert img.shape == (6, 6, 5)
    centre = np.asarray(img[3, 3])
    assert 0 < centre[0] < 1 and 0 < centre[1] < 1  # (b1, b2) of a mesh without uvs
    assert np.ptp(np.asarray(img[..., 2:]).reshape(-1, 3), axis=0).max() > 0.05  # albedo from the colours
    bare = scene.replace(shapes=(mesh.replace(attributes={}),))
    with pytest.raises(ValueError, match='shape 0 has no mesh attribute "vertex_color"'):
        jr.render(bare, spp=1)
    short = scene.replace(shapes=(mesh.replace(attributes={"vertex_color": jnp.ones((3, 3))}),))
    with pytest.raises(ValueError, match=r"has shape \(3, 3\); it needs one row per vertex: \(4, C\)"):
        jr.render(short, spp=1)
    # A 1-D array is one channel.
    grey = scene.replace(shapes=(mesh.replace(attributes={"vertex_color": jnp.full(4, 0.5)}),))
    assert np.allclose(np.asarray(jr.render(grey, "aov:a:albedo", spp=1))[3, 3], 0.5)


def test_prb_gradient_of_attributes_equals_paths(tmp_path):
    """Path replay carries the attribute tables through its custom VJP:
    its gradient with respect to vertex and face colours and `scale`
    equals `path`'s reverse mode."""
    xml = _plane_xml(tmp_path, '<string name="name" value="vertex_color"/><float name="scale" value="0.8"/>', ATTRS)
    panel = """<shape type="rectangle"><transform name="to_world"><scale value="0.5"/><translate z="0.6"/></transform>
      <bsdf type="diffuse"><texture type="mesh_attribute" name="reflectance"><string name="name" value="face_w"/>
      </texture></bsdf></shape>"""
    xml = xml.replace("</scene>", '<integrator type="path"><integer name="max_depth" value="3"/></integrator>'
                      '<emitter type="constant"/>' + panel + SENSOR)
    jio.write_ply(tmp_path / "plane.ply", V4, F2, attributes=ATTRS)
    with pytest.raises(jr.SceneError, match='no mesh attribute "face_w"'):  # a rectangle has none
        jr.load_string(xml)
    xml = xml.replace('<shape type="rectangle"><transform name="to_world"><scale value="0.5"/><translate z="0.6"/>',
                      f'<shape type="ply"><string name="filename" value="{tmp_path / "plane.ply"}"/>'
                      '<transform name="to_world"><scale value="0.5"/><translate z="0.6"/>')
    scene = jr.load_string(xml)
    names = ["Mesh[0].vertex_color", "Mesh[1].face_w", "BSDF[0].reflectance.scale"]
    params = jr.traverse(scene)
    target = jr.render(scene, spp=2, seed=5)

    def loss(values, integrator):
        img = jr.render(jr.replace(scene, dict(zip(names, values))), integrator, spp=2, seed=1)
        return jnp.mean((img - target) ** 2)

    x = [params[n] * 0.7 for n in names]
    g_prb = jax.grad(loss)(x, "prb")
    g_path = jax.grad(loss)(x, "path")
    for a, b, n in zip(g_prb, g_path, names):
        assert float(jnp.max(jnp.abs(b))) > 0, n
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(b))),
                                   err_msg=n)
