"""jaxrender.io: Mitsuba XML (3.x and the 0.5 dialect), OBJ/PLY, EXR/PNG/HDR/PFM.

Expected values are worked out by hand or with numpy; where Mitsuba 3 is
installed, the same files are also checked against what it reads.
"""

from __future__ import annotations

import math
import os
import re
import struct
import time
import zlib

import numpy as np
import pytest

from jaxrender.io import (
    MeshData,
    SceneError,
    SceneWarning,
    parse_xml,
    read_image,
    read_obj,
    read_ply,
    read_serialized,
    write_image,
    write_obj,
    write_ply,
    write_serialized,
)
from jaxrender.io._color import linear_to_srgb, srgb_to_linear

DATA = os.path.join(os.path.dirname(__file__), "data", "io")


def scene(body: str, version: str = "3.0.0", **params) -> dict:
    return parse_xml(f'<scene version="{version}">\n{body}\n</scene>', params, is_string=True)


def mitsuba():
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    return mi


def mitsuba_parser():
    mi = mitsuba()
    if not hasattr(mi, "parser"):
        pytest.skip("this Mitsuba has no mi.parser")
    return mi, mi.parser.ParserConfig("scalar_rgb")


def objects(d: dict):
    """All plugin objects of a scene dict, depth first."""
    for v in d.values():
        if isinstance(v, dict) and "__tag__" in v:
            yield v
            yield from objects(v)


# ---------------------------------------------------------------------------
# Scene dict structure


def test_scene_structure_and_naming():
    d = scene("""
<integrator type="path"><integer name="max_depth" value="3"/></integrator>
<sensor type="perspective">
  <float name="fov" value="40"/>
  <sampler type="independent"><integer name="sample_count" value="16"/></sampler>
  <film type="hdrfilm"><integer name="width" value="32"/><integer name="height" value="24"/>
    <rfilter type="gaussian"/></film>
</sensor>
<bsdf type="diffuse" id="red"><rgb name="reflectance" value="0.9, 0.1, 0.1"/></bsdf>
<shape type="sphere"><ref id="red"/></shape>
<shape type="rectangle" id="light">
  <emitter type="area"><rgb name="radiance" value="5"/></emitter>
  <bsdf type="twosided"><bsdf type="diffuse"/><bsdf type="conductor"/></bsdf>
</shape>
<shape type="cube"><ref name="bsdf" id="red"/><ref id="red"/><ref id="light"/></shape>
""")
    assert list(d) == [
        "type",
        "__tag__",
        "__source__",
        "integrator_0",
        "sensor_0",
        "red",
        "shape_0",
        "light",
        "shape_1",
    ]
    assert d["type"] == "scene" and d["__source__"] == "<string>:1"
    assert d["integrator_0"] == {
        "type": "path",
        "__tag__": "integrator",
        "__source__": "<string>:3",
        "max_depth": 3,
    }
    sensor = d["sensor_0"]
    assert list(sensor) == ["type", "__tag__", "__source__", "fov", "sampler", "film"]
    assert sensor["sampler"]["sample_count"] == 16 and sensor["sampler"]["__tag__"] == "sampler"
    assert sensor["film"]["rfilter"] == {
        "type": "gaussian",
        "__tag__": "rfilter",
        "__source__": "<string>:8",
    }
    assert d["red"]["id"] == "red" and d["red"]["reflectance"] == {
        "type": "rgb",
        "value": [0.9, 0.1, 0.1],
    }
    assert d["shape_0"]["ref_0"] == {"type": "ref", "id": "red", "__source__": "<string>:11"}
    light = d["light"]
    assert light["emitter"]["radiance"] == {"type": "rgb", "value": [5.0, 5.0, 5.0]}
    assert [light["bsdf"][k]["type"] for k in ("bsdf_0", "bsdf_1")] == ["diffuse", "conductor"]
    cube = d["shape_1"]
    assert [(k, cube[k]["id"]) for k in ("bsdf", "ref_0", "ref_1")] == [
        ("bsdf", "red"),
        ("ref_0", "red"),
        ("ref_1", "light"),
    ]


def test_value_types():
    d = scene("""
<shape type="x" id="s">
  <float name="f" value="-1.5e-3"/> <float name="g" value=" 2 "/>
  <float name="inf" value="inf"/>
  <integer name="i" value="-7"/> <boolean name="b" value="True"/> <boolean name="c" value="false"/>
  <string name="s" value="hello world"/>
  <rgb name="gray" value="0.25"/> <rgb name="col" value="0.1 0.2,0.3"/>
  <srgb name="s1" value="#ff8000"/> <srgb name="s2" value="0.5, 0.5, 0.5"/>
  <spectrum name="sp" value="0.7"/>
  <point name="p" x="1" y="2" z="3"/> <point name="q" value="4, 5, 6"/> <vector name="v" value="2"/>
</shape>""")["s"]
    assert d["f"] == -1.5e-3 and d["g"] == 2.0 and d["inf"] == math.inf
    assert d["i"] == -7 and type(d["i"]) is int
    assert d["b"] is True and d["c"] is False and d["s"] == "hello world"
    assert d["gray"] == {"type": "rgb", "value": [0.25] * 3}
    assert d["col"] == {"type": "rgb", "value": [0.1, 0.2, 0.3]}
    # sRGB decoding: 0xff -> 1, 0x80 -> ((128/255 + 0.055) / 1.055)^2.4, 0 -> 0.
    half = ((128 / 255 + 0.055) / 1.055) ** 2.4
    np.testing.assert_allclose(d["s1"]["value"], [1.0, half, 0.0], rtol=1e-12)
    np.testing.assert_allclose(d["s2"]["value"], [((0.5 + 0.055) / 1.055) ** 2.4] * 3)
    assert d["sp"] == {"type": "spectrum", "value": 0.7}
    assert d["p"] == [1.0, 2.0, 3.0] and d["q"] == [4.0, 5.0, 6.0] and d["v"] == [2.0] * 3


def test_sampled_spectra_match_mitsuba():
    # Reflectances are D65-lit (a flat 0.5 gives gray 0.5), emitted radiance
    # integrates the plain colour matching functions (flat 1 has luminance 1).
    body = """
<bsdf type="diffuse" id="b"><spectrum name="reflectance" value="{v}"/></bsdf>
<shape type="sphere" id="s"><emitter type="area"><spectrum name="radiance" value="{v}"/></emitter></shape>"""
    values = [
        "360:0.5, 830:0.5",
        "400:0.1, 500:0.2, 600:0.3, 700:0.4",
        "380:0.2, 450:0.9, 520:0.1, 780:0.3",
    ]
    ours = [scene(body.format(v=v)) for v in values]
    np.testing.assert_allclose(ours[0]["b"]["reflectance"]["value"], [0.5] * 3, atol=2e-3)
    luminance = np.dot([0.212671, 0.715160, 0.072169], ours[0]["s"]["emitter"]["radiance"]["value"])
    assert abs(luminance - 0.5) < 5e-3
    mi = mitsuba()
    for v, d in zip(values, ours, strict=True):
        params = mi.traverse(mi.load_string(f'<scene version="3.0.0">{body.format(v=v)}</scene>'))
        refl = [p for k, p in params.items() if k.endswith("reflectance.value") and "bsdf" not in k]
        rad = [p for k, p in params.items() if k.endswith("radiance.value")]
        np.testing.assert_allclose(
            d["b"]["reflectance"]["value"], np.array(refl[0]), rtol=0.02, atol=2e-3
        )
        np.testing.assert_allclose(
            d["s"]["emitter"]["radiance"]["value"], np.array(rad[0]), rtol=0.02, atol=2e-3
        )


def test_spectrum_file_and_gamut_clamp(tmp_path):
    (tmp_path / "s.spd").write_text("# flat\n360 0.25\n830 0.25\n")
    path = tmp_path / "scene.xml"
    path.write_text(
        '<scene version="3.0.0"><bsdf type="diffuse" id="b">'
        '<spectrum name="reflectance" filename="s.spd"/></bsdf>\n'
        '<bsdf type="diffuse" id="c"><spectrum name="reflectance" value="500:1, 510:1"/>'
        "</bsdf></scene>"
    )
    with pytest.warns(SceneWarning, match=r"scene\.xml:2: .*out of the sRGB gamut"):
        d = parse_xml(path)
    np.testing.assert_allclose(d["b"]["reflectance"]["value"], [0.25] * 3, atol=1e-3)
    r = d["c"]["reflectance"]["value"]
    assert r[0] == 0.0 and 0 < r[1] < 1


def test_defaults_and_parameters():
    body = """<default name="spp" value="8"/><default name="spp_max" value="64"/>
<default name="spp" value="999"/>
<sampler type="independent" id="s"><integer name="sample_count" value="$spp"/>
<integer name="cap" value="$spp_max"/><string name="label" value="$spp-$kind"/></sampler>"""
    d = scene(body, kind="a")
    # The first default of a name wins; longer names are substituted first.
    assert d["s"]["sample_count"] == 8 and d["s"]["cap"] == 64 and d["s"]["label"] == "8-a"
    d = scene(body, spp=32, kind=True)
    assert d["s"]["sample_count"] == 32 and d["s"]["label"] == "32-true"
    # Attributes other than values are substituted too.
    d = scene('<default name="t" value="obj"/><shape type="$t" id="m_$t"/>')
    assert d["m_obj"]["type"] == "obj"
    with pytest.raises(SceneError, match=r"<string>:5: undefined parameter \$kind"):
        scene(body)
    with pytest.raises(SceneError, match=r"never used in the scene: \$nope"):
        scene(body, kind="a", nope=1)
    with pytest.raises(SceneError, match=r"<string>:3: undefined parameter \$b"):
        scene('<shape type="x">\n<float name="a" value="$b"/></shape><default name="b" value="1"/>')


# ---------------------------------------------------------------------------
# Transforms


def T(x, y, z):
    m = np.eye(4)
    m[:3, 3] = [x, y, z]
    return m


def S(x, y, z):
    return np.diag([x, y, z, 1.0])


def R(axis, deg):
    x, y, z = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    t = np.radians(deg)
    m = np.eye(4)
    m[:3, :3] = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k
    return m


TRANSFORM_CASES = [
    ('<translate x="1" y="-2"/>', T(1, -2, 0)),
    ('<translate value="1, 2, 3"/>', T(1, 2, 3)),
    ('<scale value="3"/>', S(3, 3, 3)),
    ('<scale y="2"/>', S(1, 2, 1)),
    ('<scale value="1 2 3"/>', S(1, 2, 3)),
    ('<rotate y="1" angle="30"/>', R([0, 1, 0], 30)),
    ('<rotate value="0, 0, 1" angle="-45"/>', R([0, 0, 1], -45)),
    (  # (a to_world must be invertible: not 1..12, whose 3x3 part is singular)
        '<matrix value="1 2 3 4  5 6 7 8  9 10 12 12  0 0 0 1"/>',
        np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 12, 12], [0, 0, 0, 1.0]]),
    ),
    (
        '<matrix value="0 -1 0 1 0 0 0 0 1"/>',
        np.array([[0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),
    ),
    # Document order: each element is applied after (left of) the previous ones.
    (
        '<scale x="2"/><rotate z="1" angle="90"/><translate x="5"/>',
        T(5, 0, 0) @ R([0, 0, 1], 90) @ S(2, 1, 1),
    ),
    (
        '<translate x="5"/><rotate x="1" angle="90"/><scale value="0.5"/><rotate y="1" angle="10"/>',
        R([0, 1, 0], 10) @ S(0.5, 0.5, 0.5) @ R([1, 0, 0], 90) @ T(5, 0, 0),
    ),
    # x = up x direction ("left" in Mitsuba's lookat), y = up, z = direction.
    (
        '<lookat origin="1, 2, 3" target="1, 2, 4" up="0, 1, 0"/>',
        np.array([[1, 0, 0, 1], [0, 1, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1.0]]),
    ),
    (
        '<lookat origin="0, 0, 0" target="0, 0, 1"/>',  # Mitsuba's choice of up
        np.array([[0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),
    ),
    (
        '<rotate y="1" angle="90"/><lookat origin="0 0 5" target="0 0 0" up="0 1 0"/>',
        np.array([[-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, 5], [0, 0, 0, 1.0]]) @ R([0, 1, 0], 90),
    ),
]


@pytest.mark.parametrize("ops,expected", TRANSFORM_CASES)
def test_transform_by_hand(ops, expected):
    m = scene(f'<shape type="x" id="s"><transform name="to_world">{ops}</transform></shape>')["s"][
        "to_world"
    ]
    assert m.shape == (4, 4) and m.dtype == np.float64
    np.testing.assert_allclose(m, expected, atol=1e-12)


@pytest.mark.parametrize("ops, line, message", [
    ('\n<scale value="0"/>', 3, r"<scale> makes the to_world transform singular"),
    ('<translate x="1"/>\n<scale y="0"/>', 3, r"<scale> makes the to_world transform singular"),
    ('\n<matrix value="0 0 0 0  0 0 0 0  0 0 0 0  0 0 0 1"/>', 3, r"<matrix> makes the to_world transform singular"),
    ('\n<matrix value="1 2 3 4  5 6 7 8  9 10 11 12  0 0 0 1"/>', 3, r"<matrix> makes the to_world"),
    ('\n<matrix value="1 0 0  1 0 0  0 0 1"/>', 3, r"<matrix> makes the to_world"),
    # Each step invertible; the product is flat (within 1e-6 of Hadamard's bound).
    ('\n<scale x="1e-8"/><rotate z="1" angle="45"/><scale x="1e8"/>', 2, r"the to_world transform is singular"),
])
def test_singular_to_world_is_rejected(ops, line, message):
    # Normals need the inverse of to_world; these used to load (Mitsuba too).
    body = f'<shape type="x" id="s"><transform name="to_world">{ops}</transform></shape>'
    with pytest.raises(SceneError, match=rf"<string>:{line}: {message}"):
        scene(body)
    # Other transforms may be singular (a to_uv that collapses the texture).
    assert scene(body.replace("to_world", "to_uv"))["s"]["to_uv"].shape == (4, 4)


def test_small_and_anisotropic_to_world_is_fine():
    m = scene('<shape type="x" id="s"><transform name="to_world"><scale value="1e-6"/>'
              '<scale x="1e5"/><rotate y="1" angle="30"/></transform></shape>')["s"]["to_world"]
    assert abs(np.linalg.det(m[:3, :3])) > 0


def test_transform_lookat_is_orthonormal_camera_frame():
    m = scene(
        '<shape type="x" id="s"><transform name="t">'
        '<lookat origin="1, 2, 3" target="4, -1, 0.5" up="0.3, 1, 0.2"/></transform></shape>'
    )["s"]["t"]
    d = np.array([3, -3, -2.5]) / np.linalg.norm([3, -3, -2.5])
    np.testing.assert_allclose(m[:3, 2], d, atol=1e-12)  # camera +z looks at the target
    np.testing.assert_allclose(m[:3, :3].T @ m[:3, :3], np.eye(3), atol=1e-12)
    assert np.linalg.det(m[:3, :3]) == pytest.approx(1.0)
    np.testing.assert_allclose(m[:3, 3], [1, 2, 3])
    assert np.dot(m[:3, 1], [0.3, 1, 0.2]) > 0  # up stays up


@pytest.mark.parametrize(
    "ops,_",
    TRANSFORM_CASES
    + [
        ('<lookat origin="1, 2, 3" target="4, -1, 0.5" up="0.3, 1, 0.2"/>', None),
        ('<lookat origin="0, 0, 0" target="-1, 0.2, -0.1"/>', None),
        ('<lookat origin="0, 0, 0" target="0.3, 0.2, -1"/>', None),
    ],
)
def test_transform_matches_mitsuba(ops, _):
    mi, cfg = mitsuba_parser()
    xml = f'<scene version="3.0.0"><shape type="x"><transform name="to_world">{ops}</transform></shape></scene>'
    state = mi.parser.parse_string(cfg, xml)
    expected = np.array(state.nodes[1].props["to_world"].matrix)
    np.testing.assert_allclose(parse_xml(xml)["shape_0"]["to_world"], expected, atol=1e-9)


def test_camera_transform_matches_mitsuba_sensor():
    mi = mitsuba()
    xml = """<scene version="3.0.0"><sensor type="perspective">
  <transform name="to_world"><rotate z="1" angle="20"/>
    <lookat origin="3, 4, -2" target="0, 0.5, 0" up="0, 1, 0"/><translate value="0.5 0 1"/></transform>
</sensor></scene>"""
    expected = np.array(mi.load_string(xml).sensors()[0].world_transform().matrix)
    np.testing.assert_allclose(parse_xml(xml)["sensor_0"]["to_world"], expected, atol=1e-5)


# ---------------------------------------------------------------------------
# The 0.5 dialect (PSDR-CUDA)


def test_snake_case_matches_mitsuba():
    names = [
        "sampleCount",
        "toWorld",
        "intIOR",
        "extIOR",
        "maxDepth",
        "rrDepth",
        "hideEmitters",
        "fovAxis",
        "nearClip",
        "farClip",
        "diffuseReflectance",
        "specularReflectance",
        "specularTransmittance",
        "faceNormals",
        "flipNormals",
        "uvscale",
        "filterType",
        "wrapMode",
        "cutoffAngle",
        "beamWidth",
        "useMIS",
        "HDRFilm",
        "ABCDef",
        "a1B",
        "eta_K",
        "aBC_dE",
        "x",
        "already_snake",
    ]
    body = "".join(f'<float name="{n}" value="{i}"/>' for i, n in enumerate(names))
    d = scene(f'<shape type="x" id="s">{body}</shape>', version="0.5.0")["s"]
    ours = [k for k in d if not k.startswith("__") and k not in ("type", "id")]
    assert ours[:12] == [
        "sample_count",
        "to_world",
        "int_ior",
        "ext_ior",
        "max_depth",
        "rr_depth",
        "hide_emitters",
        "fov_axis",
        "near_clip",
        "far_clip",
        "diffuse_reflectance",
        "specular_reflectance",
    ]
    assert [d[k] for k in ours] == [float(i) for i in range(len(names))]
    mi, cfg = mitsuba_parser()
    state = mi.parser.parse_string(
        cfg, f'<scene version="0.5.0"><shape type="x">{body}</shape></scene>'
    )
    mi.parser.transform_upgrade(cfg, state)
    assert ours == list(state.nodes[1].props.keys())


def test_psdr_scene_file():
    path = os.path.join(DATA, "psdr_scene.xml")
    with pytest.warns(SceneWarning) as record:
        d = parse_xml(path)
    messages = [str(w.message) for w in record]
    assert any(
        re.match(rf"{re.escape(path)}:26: ignoring film parameter 'banner'", m) for m in messages
    )
    assert any(re.match(rf"{re.escape(path)}:47: PSDR-CUDA bsdf 'microfacet'", m) for m in messages)
    assert len(messages) == 2

    assert d["integrator_0"]["max_depth"] == 2 and d["integrator_0"]["hide_emitters"] is False
    sensor = d["sensor_0"]
    assert sensor["__source__"] == f"{path}:12"
    assert (sensor["fov_axis"], sensor["near_clip"], sensor["far_clip"]) == ("x", 0.01, 1000.0)
    np.testing.assert_allclose(
        sensor["to_world"], [[-1, 0, 0, 0], [0, 1, 0, 1], [0, 0, -1, 5], [0, 0, 0, 1]], atol=1e-12
    )
    assert sensor["sampler"]["sample_count"] == 4
    assert "banner" not in sensor["film"] and sensor["film"]["width"] == 64
    # <srgb> is decoded; a diffuse's diffuseReflectance becomes reflectance.
    assert d["white"]["reflectance"]["value"] == pytest.approx(
        [float(srgb_to_linear(0xBC / 255))] * 3
    )
    tex = d["checker"]["reflectance"]
    assert tex["type"] == "bitmap" and tex["filter_type"] == "bilinear"
    assert tex["filename"] == os.path.join(DATA, "textures", "checker.png")
    np.testing.assert_allclose(tex["to_uv"], S(4, 2, 1) @ T(0.5, 0, 0))  # as Mitsuba 3 upgrades it
    assert "uscale" not in tex and "uoffset" not in tex
    assert d["glass"]["int_ior"] == 1.5 and d["glass"]["ext_ior"] == 1.0
    # PSDR's microfacet: GGX alpha = roughness^2, F0 = 0.04 <-> IOR 1.5.
    shiny = d["shiny"]
    assert shiny["type"] == "roughplastic" and shiny["distribution"] == "ggx"
    assert shiny["alpha"] == pytest.approx(0.09) and shiny["int_ior"] == pytest.approx(1.5)
    assert shiny["specular_reflectance"]["value"] == pytest.approx([1.0] * 3)
    assert shiny["diffuse_reflectance"] == {"type": "rgb", "value": [0.6, 0.3, 0.2]}
    assert shiny["__psdr__"]["roughness"] == 0.3
    # PSDR reads three plain numbers in a <spectrum> as RGB.
    assert d["metal"]["eta"] == {"type": "rgb", "value": [0.2, 0.9, 1.1]}
    light = d["shape_0"]
    assert light["filename"] == os.path.join(DATA, "quad.obj") and light["face_normals"] is True
    np.testing.assert_allclose(
        light["to_world"], T(0, 3, 0) @ R([1, 0, 0], 90) @ S(2, 2, 2), atol=1e-12
    )
    assert light["ref_0"]["id"] == "white"
    # One number in a 0.5-dialect <spectrum> is gray, as PSDR-CUDA reads it.
    assert light["emitter"]["radiance"] == {"type": "rgb", "value": [10.0, 10.0, 10.0]}
    assert d["floor"]["bsdf"]["id"] == "shiny" and d["floor"]["flip_normals"] is False
    assert d["emitter_0"]["filename"] == os.path.join(DATA, "textures", "sky.exr")


def test_psdr_scene_matches_mitsuba_upgrade():
    # Mitsuba 3 cannot parse <lookAt> or <srgb>: give it the same file with
    # those spelled its way, then compare every object's parameters.
    mi, cfg = mitsuba_parser()
    # (nor PSDR's three-number spectra).
    with open(os.path.join(DATA, "psdr_scene.xml")) as f:
        text = f.read()
    text = text.replace("lookAt", "lookat").replace(
        '<srgb name="diffuseReflectance" value="#bcbcbc"/>',
        '<rgb name="diffuseReflectance" value="0.5"/>',
    )
    text = re.sub(r'<spectrum (name="(?:eta|k)" value="[^:"]*")/>', r"<rgb \1/>", text)
    with pytest.warns(SceneWarning):
        ours = parse_xml(text, is_string=True)
    state = mi.parser.parse_string(cfg, text)
    mi.parser.transform_upgrade(cfg, state)
    by_line = {int(o["__source__"].rsplit(":", 1)[1]): o for o in objects(ours)}
    checked = 0
    for node in list(state.nodes)[1:]:
        line = int(re.search(r"line (\d+)", mi.parser.file_location(state, node)).group(1))
        obj = by_line[line]
        props = node.props
        if props.plugin_name() == "microfacet":
            continue
        assert obj["type"] == props.plugin_name()
        keys = [k for k in props.keys() if "Reference" not in str(props.type(k))]
        ours_keys = [
            k
            for k, v in obj.items()
            if not k.startswith("__")
            and k not in ("type", "id")
            and not (isinstance(v, dict) and ("__tag__" in v or v.get("type") == "ref"))
        ]
        if obj["__tag__"] == "film":
            keys.remove("banner")  # dropped on purpose
        assert sorted(ours_keys) == sorted(keys), obj["__source__"]
        for k in keys:
            if str(props.type(k)).endswith("Transform"):
                np.testing.assert_allclose(obj[k], np.array(props[k].matrix), atol=1e-9)
            elif isinstance(obj[k], (bool, int, float)):
                assert obj[k] == pytest.approx(props[k])
        checked += 1
    assert checked >= 12


PSDR_SENSORS = """
<sensor type="perspective" id="a">
  <sampler type="independent"><integer name="sampleCount" value="7"/></sampler>
  <film type="hdrfilm" id="the_film"><integer name="width" value="32"/><integer name="height" value="16"/>
    <rfilter type="tent"/></film>
</sensor>
<sensor type="perspective" id="b"><float name="fov" value="30"/></sensor>
<sensor type="perspective" id="c"><film type="hdrfilm"><integer name="width" value="8"/></film></sensor>
"""


def test_psdr_sensors_share_the_first_sensors_film_and_sampler():
    # PSDR-CUDA renders every sensor with the first one's film and sampler:
    # a later sensor without its own gets a copy (used to get the defaults).
    d = scene(PSDR_SENSORS, version="0.5.0")
    first, b, c = d["a"], d["b"], d["c"]
    assert b["film"]["width"] == 32 and b["film"]["height"] == 16 and b["film"]["rfilter"]["type"] == "tent"
    assert b["sampler"]["sample_count"] == 7
    assert "id" not in b["film"] and first["film"]["id"] == "the_film"  # ids stay unique
    assert b["film"] is not first["film"] and b["film"]["__source__"] == first["film"]["__source__"]
    assert c["film"] == {"type": "hdrfilm", "__tag__": "film", "__source__": c["film"]["__source__"], "width": 8}
    assert c["sampler"]["sample_count"] == 7
    # Mitsuba 3 files keep Mitsuba's rule: no film means the default film.
    d3 = scene(PSDR_SENSORS.replace("sampleCount", "sample_count"))
    assert "film" not in d3["b"] and "sampler" not in d3["b"] and "sampler" not in d3["c"]


@pytest.mark.parametrize("tag", ["lookat", "lookAt", "look_at"])
def test_lookat_spellings(tag):
    body = (f'<shape type="x" id="s"><transform name="to_world">\n'
            f'<{tag} origin="1, 2, 3" target="0, 0, 0" up="0, 1, 0"/></transform></shape>')
    expected = scene(body.replace(tag, "lookat"))["s"]["to_world"]
    # Version 0.x files take all of PSDR-CUDA's spellings.
    np.testing.assert_array_equal(scene(body, version="0.5.0")["s"]["to_world"], expected)
    if tag == "lookat":
        np.testing.assert_array_equal(scene(body)["s"]["to_world"], expected)
    else:
        # Mitsuba 3 rejects all but <lookat>, and so do we in 3.x files.
        with pytest.raises(SceneError, match=rf"<string>:3: unexpected <{tag}> element inside <transform>: "
                           r"Mitsuba 3 files spell it <lookat>"):
            scene(body)


# ---------------------------------------------------------------------------
# Files: includes and paths


def test_include_and_paths(tmp_path, monkeypatch):
    (tmp_path / "parts" / "meshes").mkdir(parents=True)
    (tmp_path / "parts" / "meshes" / "a.obj").write_text("")
    (tmp_path / "top.ply").write_text("")
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "here.obj").write_text("")
    (tmp_path / "parts" / "inc.xml").write_text("""<scene version="0.6.0">
  <bsdf type="diffuse" id="inc_bsdf"><rgb name="diffuseReflectance" value="0.3"/></bsdf>
  <shape type="obj"><string name="filename" value="meshes/a.obj"/><boolean name="faceNormals" value="true"/></shape>
  <shape type="ply"><string name="filename" value="top.ply"/></shape>
  <include filename="single.xml"/>
</scene>""")
    (tmp_path / "parts" / "single.xml").write_text(
        '<emitter type="constant" id="sky"><rgb name="radiance" value="1"/></emitter>'
    )
    (tmp_path / "main.xml").write_text("""<scene version="3.0.0">
  <shape type="obj" id="first"><string name="filename" value="parts/meshes/a.obj"/></shape>
  <include filename="parts/inc.xml"/>
  <shape type="obj"><string name="filename" value="here.obj"/><ref id="inc_bsdf"/></shape>
  <shape type="obj"><string name="filename" value="missing.obj"/></shape>
  <shape type="obj"><string name="filename" value="/abs/elsewhere.obj"/></shape>
</scene>""")
    monkeypatch.chdir(tmp_path / "cwd")
    d = parse_xml(tmp_path / "main.xml")
    assert list(d)[3:] == [
        "first",
        "inc_bsdf",
        "shape_0",
        "shape_1",
        "sky",
        "shape_2",
        "shape_3",
        "shape_4",
    ]
    # The included file keeps its own version (0.6: upgraded) and its own folder.
    assert d["inc_bsdf"]["reflectance"]["value"] == [0.3] * 3
    assert d["inc_bsdf"]["__source__"] == f"{tmp_path / 'parts' / 'inc.xml'}:2"
    assert d["shape_0"]["face_normals"] is True
    assert d["first"]["filename"] == str(tmp_path / "parts" / "meshes" / "a.obj")
    assert d["shape_0"]["filename"] == str(tmp_path / "parts" / "meshes" / "a.obj")
    assert d["shape_1"]["filename"] == str(tmp_path / "top.ply")  # found in the includer's folder
    assert d["sky"]["__source__"] == f"{tmp_path / 'parts' / 'single.xml'}:1"
    assert d["shape_2"]["filename"] == str(tmp_path / "cwd" / "here.obj")  # current directory last
    assert d["shape_3"]["filename"] == str(tmp_path / "missing.obj")  # not found: next to the file
    assert d["shape_4"]["filename"] == "/abs/elsewhere.obj"


def test_include_errors(tmp_path):
    (tmp_path / "a.xml").write_text('<scene version="3.0.0">\n<include filename="b.xml"/></scene>')
    (tmp_path / "b.xml").write_text(
        '<scene version="3.0.0">\n\n<include filename="a.xml"/></scene>'
    )
    with pytest.raises(
        SceneError, match=r"b\.xml:3: include cycle: .*a\.xml -> .*b\.xml -> .*a\.xml"
    ):
        parse_xml(tmp_path / "a.xml")
    (tmp_path / "c.xml").write_text(
        '<scene version="3.0.0">\n<include filename="nope/x.xml"/></scene>'
    )
    with pytest.raises(
        SceneError,
        match=rf"c\.xml:2: included file 'nope/x.xml' not found "
        rf"\(tried {re.escape(str(tmp_path / 'nope' / 'x.xml'))}",
    ):
        parse_xml(tmp_path / "c.xml")
    with pytest.raises(SceneError, match=r"nothere\.xml: scene file not found"):
        parse_xml(tmp_path / "nothere.xml")


def _include_chain(folder, n):
    """f0.xml includes f1.xml ... includes f{n}.xml, which holds a shape."""
    for i in range(n + 1):
        body = f'<include filename="f{i + 1}.xml"/>' if i < n else '<shape type="cube"/>'
        (folder / f"f{i}.xml").write_text(f'<scene version="3.0.0">\n{body}\n</scene>')
    return folder / "f0.xml"


def test_include_depth_limit(tmp_path):
    # 32 nested includes load; one more is an error at the include that
    # goes too deep (Mitsuba 3 stops at 15). 600 used to be a RecursionError.
    assert parse_xml(_include_chain(tmp_path, 32))["shape_0"]["type"] == "cube"
    deep = tmp_path / "deep"
    deep.mkdir()
    with pytest.raises(SceneError, match=r"f32\.xml:2: includes nested more than 32 levels deep "
                       r"\(.*f0\.xml -> .*f1\.xml -> \.\.\. \(30 more\) -> .*f33\.xml\)"):
        parse_xml(_include_chain(deep, 600))


def test_object_nesting_limit():
    ok = "\n".join(['<texture type="t" name="a">'] * 100 + ["</texture>"] * 100)
    assert scene(ok)["texture_0"]["__tag__"] == "texture"
    deep = "\n".join(['<texture type="t" name="a">'] * 500 + ["</texture>"] * 500)
    # Line 2 holds the outermost object, so the 101st is on line 102.
    with pytest.raises(SceneError, match=r"<string>:102: <texture> is nested more than 100 objects deep"):
        scene(deep)


@pytest.mark.parametrize("name, data, match", [
    ("empty.xml", b"", r"empty\.xml:1: malformed XML: no element found"),
    ("binary.xml", bytes(range(256)) * 4, r"binary\.xml:1: malformed XML: not well-formed"),
    ("bad_utf8.xml", b'<scene version="3.0.0"><shape type="x" id="c\xff"/></scene>',
     r"bad_utf8\.xml:1: malformed XML: not well-formed \(invalid token\)"),
    ("comment_only.xml", b"<!-- nothing -->", r"comment_only\.xml:1: malformed XML: no element found"),
])
def test_hostile_files_are_scene_errors(tmp_path, name, data, match):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(SceneError, match=match):
        parse_xml(tmp_path / name)


@pytest.mark.parametrize("encoding, data", [
    ("utf-8 with BOM", b"\xef\xbb\xbf" + '<?xml version="1.0" encoding="utf-8"?>\n<scene version="3.0.0">'
     '<shape type="x" id="caf\u00e9"/></scene>'.encode()),
    ("utf-16 with BOM", '<scene version="3.0.0">\n<shape type="x" id="caf\u00e9"/></scene>'.encode("utf-16")),
    ("utf-16-le, declared", '<?xml version="1.0" encoding="utf-16"?>\n<scene version="3.0.0">'
     '<shape type="x" id="caf\u00e9"/></scene>'.encode("utf-16-le")),
    ("latin-1, declared", '<?xml version="1.0" encoding="iso-8859-1"?>\n<scene version="3.0.0">'
     '<shape type="x" id="caf\u00e9"/></scene>'.encode("latin-1")),
])
def test_encodings(tmp_path, encoding, data):
    (tmp_path / "s.xml").write_bytes(data)
    d = parse_xml(tmp_path / "s.xml")
    assert d["caf\u00e9"]["type"] == "x" and d["caf\u00e9"]["__source__"] == f"{tmp_path / 's.xml'}:2"


def test_path_element_and_alias(tmp_path):
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "m.obj").write_text("")
    (tmp_path / "s.xml").write_text("""<scene version="3.0.0"><path value="assets"/>
<bsdf type="diffuse" id="base"/><alias id="base" as="other"/>
<shape type="obj"><string name="filename" value="m.obj"/><ref id="other"/></shape></scene>""")
    d = parse_xml(tmp_path / "s.xml")
    assert d["shape_0"]["filename"] == str(tmp_path / "assets" / "m.obj")
    assert d["shape_0"]["ref_0"]["id"] == "base"


# ---------------------------------------------------------------------------
# Errors: file and line in every message


ERROR_CASES = [
    (
        '<shape type="x">\n<float name="a" value="1"/>\n',
        r"<string>:5: malformed XML: mismatched tag",
    ),
    (
        '<shape type="x">\n<floot name="a" value="1"/></shape>',
        r"<string>:3: unknown element <floot>",
    ),
    (
        '<shape type="x">\n<float name="a" value="abc"/></shape>',
        r"<string>:3: could not parse <float name='a'> value 'abc' as a number",
    ),
    (
        '<shape type="x">\n<float name="a" value="1.0f"/></shape>',
        r"<string>:3: could not parse .* '1.0f'",
    ),
    ('<shape type="x">\n<float name="a" value="nan"/></shape>', r"<string>:3: .* is NaN"),
    (
        '<shape type="x">\n<integer name="a" value="3.0"/></shape>',
        r"<string>:3: could not parse <integer name='a'> value '3.0' as an integer",
    ),
    (
        '<shape type="x">\n<integer name="a" value="2147483648"/></shape>',
        r"<string>:3: <integer name='a'> value '2147483648' is out of range for a 32-bit integer",
    ),
    (
        '<shape type="x">\n<integer name="a" value="-99999999999999999999"/></shape>',
        r"<string>:3: .* is out of range for a 32-bit integer \[-2147483648, 2147483647\]",
    ),
    (
        '<shape type="x">\n<boolean name="a" value="1"/></shape>',
        r"<string>:3: .*must be 'true' or 'false'",
    ),
    (
        '<shape type="x">\n<rgb name="a" value="1 2"/></shape>',
        r"<string>:3: .* must have 1 or 3 numbers, got 2",
    ),
    (
        '<shape type="x">\n<point name="a" value="1,2"/></shape>',
        r"<string>:3: .* must have 1 or 3 numbers, got 2",
    ),
    (
        '<shape type="x">\n<point name="a" x="1" y="2"/></shape>',
        r"<string>:3: .*missing required attribute 'z'",
    ),
    (
        '<shape type="x">\n<float value="1"/></shape>',
        r"<string>:3: missing required attribute 'name' in <float>",
    ),
    (
        '<shape type="x">\n<float name="a"/></shape>',
        r"<string>:3: missing required attribute 'value' in <float>",
    ),
    (
        '<shape type="x">\n<float name="a" value="1" units="m"/></shape>',
        r"<string>:3: unexpected attribute 'units' in <float>",
    ),
    ("<shape>\n</shape>", r"<string>:2: missing required attribute 'type' in <shape>"),
    (
        '<shape type="x">\n<ref id="nobody"/></shape>',
        r"<string>:3: reference to unknown id 'nobody'",
    ),
    (
        '<shape type="x" id="a"/>\n<bsdf type="y" id="a"/>',
        r"<string>:3: duplicate id 'a' \(first at <string>:2\)",
    ),
    (
        '<shape type="x">\n<float name="a" value="1"/>\n<integer name="a" value="1"/></shape>',
        r"<string>:4: duplicate name 'a' \(first at <string>:3\)",
    ),
    (
        '<shape type="x"><transform name="t">\n<matrix value="1 2 3 4"/></transform></shape>',
        r"<string>:3: <matrix> value must have 9 or 16 numbers, got 4",
    ),
    (
        '<shape type="x"><transform name="t">\n<rotate angle="30"/></transform></shape>',
        r"<string>:3: rotation axis cannot be zero",
    ),
    (
        '<shape type="x"><transform name="t">\n<rotate x="1"/></transform></shape>',
        r"<string>:3: missing required attribute 'angle' in <rotate>",
    ),
    (
        '<shape type="x"><transform name="t">\n<lookat origin="0 0 0" target="0 0 0"/></transform></shape>',
        r"<string>:3: invalid lookat transformation",
    ),
    (
        '<shape type="x"><transform name="t">\n<lookat origin="0 0 0" target="0 1 0" up="0 2 0"/></transform></shape>',
        r"<string>:3: invalid lookat transformation \(up is parallel",
    ),
    (
        '<shape type="x"><transform name="t">\n<translate x="1" value="1 2 3"/></transform></shape>',
        r"<string>:3: <translate>: cannot mix 'value' and x/y/z",
    ),
    (
        '<shape type="x"><transform name="t">\n<skew value="1"/></transform></shape>',
        r"<string>:3: unexpected <skew> element inside <transform>",
    ),
    (
        '<shape type="x">\n<transform><translate x="1"/></transform></shape>',
        r"<string>:3: missing required attribute 'name' in <transform>",
    ),
    ('\n<translate x="1"/>', r"<string>:3: <translate> is only allowed inside <transform>"),
    (
        '<shape type="x">\n<spectrum name="s" value="0.5, 0.3"/></shape>',
        r"<string>:3: .*expected one number or wavelength:value pairs",
    ),
    (
        '<shape type="x">\n<spectrum name="s" value="500:1, 400:2"/></shape>',
        r"<string>:3: .*wavelengths must increase",
    ),
    ('<shape type="x">\n<srgb name="s" value="#12345"/></shape>', r"<string>:3: .*as #rrggbb"),
    ('<alias id="zz" as="b"/>', r"<string>:2: alias source id 'zz' not found"),
    (
        '<shape type="x">\n<scene version="3.0.0"/></shape>',
        r"<string>:3: <scene> is only allowed as the root",
    ),
]


@pytest.mark.parametrize("body,message", ERROR_CASES)
def test_errors_name_file_and_line(body, message):
    with pytest.raises(SceneError, match=message):
        scene(body)


def test_root_errors(tmp_path):
    with pytest.raises(
        SceneError, match=r"<string>:1: the root element must be <scene>, got <shape>"
    ):
        parse_xml('<shape type="x"/>')
    with pytest.raises(
        SceneError, match=r"<string>:1: missing required attribute 'version' in <scene>"
    ):
        parse_xml("<scene/>")
    with pytest.raises(SceneError, match=r"<string>:1: invalid version number 'new'"):
        parse_xml('<scene version="new"/>')
    p = tmp_path / "bad.xml"
    p.write_text('<scene version="3.0.0">\n  <shape type="x">\n</scene>\n')
    with pytest.raises(SceneError, match=rf"^{re.escape(str(p))}:3: malformed XML: mismatched tag"):
        parse_xml(p)
    assert issubclass(SceneError, ValueError)


def test_unknown_plugins_and_parameters_pass_through():
    d = scene('<shape type="teapot" id="t"><float name="spout_length" value="2"/></shape>')
    assert d["t"]["type"] == "teapot" and d["t"]["spout_length"] == 2.0
    with pytest.warns(SceneWarning, match=r"<string>:3: ignoring film parameter 'pixel_format'"):
        d = scene(
            '<sensor type="perspective">\n<film type="hdrfilm"><string name="pixel_format" value="rgba"/>'
            "</film></sensor>"
        )
    assert "pixel_format" not in d["sensor_0"]["film"]


# ---------------------------------------------------------------------------
# Meshes


def grid_mesh(n=6, seed=0):
    """A bumpy n x n grid of quads split into triangles, with normals and UVs."""
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(0, 1, n + 1), np.linspace(0, 1, n + 1), indexing="ij")
    verts = np.stack([u, v, 0.1 * rng.standard_normal(u.shape)], -1).reshape(-1, 3)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = np.concatenate(
        [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    )
    normals = rng.standard_normal(verts.shape)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return MeshData(verts, faces, normals, np.stack([u, v], -1).reshape(-1, 2))


def assert_same_mesh(a: MeshData, b: MeshData):
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.faces, b.faces)
    for x, y in ((a.normals, b.normals), (a.texcoords, b.texcoords)):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_allclose(x, y, atol=1e-7)


@pytest.mark.parametrize("kind", ["obj", "ply_le", "ply_be", "ply_ascii"])
def test_mesh_round_trip(tmp_path, kind):
    mesh = grid_mesh()
    for attrs in ({}, {"normals": None}, {"texcoords": None}, {"normals": None, "texcoords": None}):
        m = MeshData(
            mesh.vertices,
            mesh.faces,
            **{"normals": mesh.normals, "texcoords": mesh.texcoords, **attrs},
        )
        path = tmp_path / ("m.obj" if kind == "obj" else "m.ply")
        if kind == "obj":
            write_obj(path, m)
            got = read_obj(path)
        else:
            write_ply(path, m, ascii=kind == "ply_ascii", big_endian=kind == "ply_be")
            got = read_ply(path)
        assert got.vertices.dtype == np.float32 and got.faces.dtype == np.int32
        assert_same_mesh(got, m)


def test_obj_and_ply_of_same_mesh_agree(tmp_path):
    mesh = grid_mesh(n=9, seed=3)
    write_obj(
        tmp_path / "m.obj",
        mesh.vertices,
        mesh.faces,
        normals=mesh.normals,
        texcoords=mesh.texcoords,
    )
    write_ply(
        tmp_path / "m.ply",
        mesh.vertices,
        mesh.faces,
        normals=mesh.normals,
        texcoords=mesh.texcoords,
    )
    assert_same_mesh(read_obj(tmp_path / "m.obj"), read_ply(tmp_path / "m.ply"))
    mi = mitsuba()
    for name in ("m.obj", "m.ply"):
        params = mi.traverse(mi.load_dict({"type": name[-3:], "filename": str(tmp_path / name)}))
        assert_same_soup(params, mesh)


def assert_same_soup(params, mesh: MeshData):
    """Mitsuba's mesh parameters describe the same triangles, corner by corner
    (Mitsuba may number an OBJ's vertices differently)."""
    faces = np.array(params["faces"]).reshape(-1, 3)
    np.testing.assert_allclose(
        np.array(params["vertex_positions"]).reshape(-1, 3)[faces],
        mesh.vertices[mesh.faces],
        atol=1e-7,
    )
    for key, ours, n in (
        ("vertex_texcoords", mesh.texcoords, 2),
        ("vertex_normals", mesh.normals, 3),
    ):
        if ours is not None:
            np.testing.assert_allclose(
                np.array(params[key]).reshape(-1, n)[faces], ours[mesh.faces], atol=1e-6
            )


OBJ_TEXT = """# polygons, all index forms, relative indices
mtllib x.mtl
o thing
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0   1.0
vt 0 0
vt 1 0
vt 1 1
vn 0 0 1
vn 0 0 -1
g front
usemtl a
s off
f 1/1/1 2/2/1 3/3/1 4/1/1
f -4//-1 -2//-1 -3//-1
v 2 0 0
f 2/2 5/3 3/3
f 1 2 5 3 4
"""


def test_obj_by_hand(tmp_path):
    (tmp_path / "m.obj").write_text(OBJ_TEXT)
    with pytest.warns(SceneWarning) as record:
        m = read_obj(tmp_path / "m.obj")
    # Not every corner has a texture coordinate or a normal: both are dropped,
    # and vertices are the positions.
    assert sorted(str(w.message).split(": ", 1)[1] for w in record) == [
        "some face corners have normals and some do not; normals ignored",
        "some face corners have texture coordinates and some do not; texture coordinates ignored",
    ]
    np.testing.assert_array_equal(
        m.vertices, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0]]
    )
    # Fans of the polygons; "-4//-1 -2//-1 -3//-1" counts back from vertex 4.
    np.testing.assert_array_equal(
        m.faces, [[0, 1, 2], [0, 2, 3], [0, 2, 1], [1, 4, 2], [0, 1, 4], [0, 4, 2], [0, 2, 3]]
    )
    assert m.normals is None and m.texcoords is None


def test_obj_attributes_and_flip_match_mitsuba(tmp_path):
    text = (
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0.1 0.2\nvt 0.9 0.2\nvt 0.9 0.8\nvn 0 0 1\nvn 0 0.6 0.8\n"
        "f 4/2/2 1/1/1 3/3/2\nf 1/1/1 2/2/1 3/3/2\nf 1/1/1 2/2/2 3/3/2\n"
    )
    (tmp_path / "m.obj").write_text(text)
    m = read_obj(tmp_path / "m.obj")
    # Triplets (v, vt, vn) sorted: (1,1,1) (2,2,1) (2,2,2) (3,3,2) (4,2,2).
    np.testing.assert_array_equal(
        m.vertices, [[0, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]
    )
    np.testing.assert_array_equal(m.faces, [[4, 0, 3], [0, 1, 3], [0, 2, 3]])
    np.testing.assert_allclose(
        m.texcoords, [[0.1, 0.8], [0.9, 0.8], [0.9, 0.8], [0.9, 0.2], [0.9, 0.8]], atol=1e-7
    )  # v flipped
    np.testing.assert_allclose(
        m.normals, [[0, 0, 1], [0, 0, 1], [0, 0.6, 0.8], [0, 0.6, 0.8], [0, 0.6, 0.8]]
    )
    mi = mitsuba()
    assert_same_soup(
        mi.traverse(mi.load_dict({"type": "obj", "filename": str(tmp_path / "m.obj")})), m
    )


PLY_HEADER = """ply
format {fmt} 1.0
comment hand written
element vertex 5
property float x
property float y
property float z
property uchar red
property double s
property double t
element face 3
property uchar flags
property list uchar uint vertex_index
element edge 1
property int a
property int b
end_header
"""
PLY_VERTS = [
    (0, 0, 0, 255, 0.0, 0.5),
    (1, 0, 0, 0, 1.0, 0.5),
    (1, 1, 0, 7, 1.0, 1.0),
    (0, 1, 0, 9, 0.0, 1.0),
    (2, 0, 1, 3, 0.5, 0.0),
]
PLY_FACES = [(1, [0, 1, 2, 3]), (0, [1, 4, 2]), (2, [0, 4, 1, 2, 3])]


def write_hand_ply(path, fmt):
    head = PLY_HEADER.format(fmt=fmt).encode()
    if fmt == "ascii":
        body = "".join("%g %g %g %d %g %g\n" % v for v in PLY_VERTS)
        body += "".join(f"{fl} {len(ix)} " + " ".join(map(str, ix)) + "\n" for fl, ix in PLY_FACES)
        body += "\n5 6\n"
        path.write_bytes(head + body.encode())
        return
    e = "<" if fmt == "binary_little_endian" else ">"
    body = b"".join(struct.pack(e + "fffBdd", *v) for v in PLY_VERTS)
    body += b"".join(
        struct.pack(e + "BB" + "I" * len(ix), fl, len(ix), *ix) for fl, ix in PLY_FACES
    )
    body += struct.pack(e + "ii", 5, 6)
    path.write_bytes(head + body)


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_ply_by_hand(tmp_path, fmt):
    write_hand_ply(tmp_path / "m.ply", fmt)
    m = read_ply(tmp_path / "m.ply")
    np.testing.assert_array_equal(m.vertices, [v[:3] for v in PLY_VERTS])
    np.testing.assert_array_equal(
        m.faces, [[0, 1, 2], [0, 2, 3], [1, 4, 2], [0, 4, 1], [0, 1, 2], [0, 2, 3]]
    )
    np.testing.assert_array_equal(m.texcoords, [v[4:] for v in PLY_VERTS])
    assert m.normals is None


def test_ply_matches_mitsuba(tmp_path):
    # Mitsuba reads triangles only.
    faces = [(1, [0, 1, 2]), (0, [1, 4, 2]), (2, [0, 4, 1])]
    head = PLY_HEADER.format(fmt="binary_little_endian").replace("face 3", "face 3").encode()
    body = b"".join(struct.pack("<fffBdd", *v) for v in PLY_VERTS)
    body += b"".join(struct.pack("<BB" + "I" * 3, fl, 3, *ix) for fl, ix in faces)
    (tmp_path / "m.ply").write_bytes(head + body + struct.pack("<ii", 5, 6))
    m = read_ply(tmp_path / "m.ply")
    np.testing.assert_array_equal(m.faces, [ix for _, ix in faces])
    mi = mitsuba()
    params = mi.traverse(mi.load_dict({"type": "ply", "filename": str(tmp_path / "m.ply")}))
    np.testing.assert_array_equal(np.array(params["vertex_positions"]).reshape(-1, 3), m.vertices)
    np.testing.assert_array_equal(np.array(params["faces"]).reshape(-1, 3), m.faces)
    np.testing.assert_array_equal(np.array(params["vertex_texcoords"]).reshape(-1, 2), m.texcoords)


def _serialized_meshes():
    rng = np.random.default_rng(5)
    v = rng.normal(size=(7, 3)).astype(np.float32)
    n = v / np.linalg.norm(v, axis=1, keepdims=True)
    f = np.array([[0, 1, 2], [2, 3, 4], [3, 4, 5], [6, 0, 2]])
    return [MeshData(v, f, n, rng.uniform(size=(7, 2))), MeshData(2 * v[:6], f[:3]),
            MeshData(v[:4], f[:1], None, rng.uniform(size=(4, 2)))]


@pytest.mark.parametrize("double", [False, True])
def test_serialized_round_trip_and_matches_mitsuba(tmp_path, double):
    """Written here, read by us and by Mitsuba's own `serialized` plugin:
    positions, faces, normals and uvs of every mesh of a multi-mesh file
    (one with normals and uvs, one bare, one with uvs only)."""
    meshes = _serialized_meshes()
    path = tmp_path / "m.serialized"
    write_serialized(path, meshes, double=double)
    mi = mitsuba()
    for k, want in enumerate(meshes):
        got = read_serialized(path, k)
        np.testing.assert_array_equal(got.faces, want.faces)
        np.testing.assert_array_equal(got.vertices, want.vertices)
        for a, b in ((got.normals, want.normals), (got.texcoords, want.texcoords)):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a, b)
        params = mi.traverse(mi.load_dict({"type": "serialized", "filename": str(path), "shape_index": k}))
        np.testing.assert_array_equal(np.array(params["vertex_positions"]).reshape(-1, 3), got.vertices)
        np.testing.assert_array_equal(np.array(params["faces"]).reshape(-1, 3), got.faces)
        if got.texcoords is not None:
            np.testing.assert_array_equal(np.array(params["vertex_texcoords"]).reshape(-1, 2), got.texcoords)
        if got.normals is not None:
            np.testing.assert_allclose(np.array(params["vertex_normals"]).reshape(-1, 3), got.normals, atol=2e-7)


def test_serialized_shape_matches_mitsuba(tmp_path):
    """The `serialized` shape: shape_index, to_world, face_normals, normals
    computed where the file has none, uvs as stored; and the file's own
    face-normals flag ignored, as Mitsuba 3.9 does."""
    import jaxrender as jr
    from jaxrender.scene.transform import transform_points

    meshes = _serialized_meshes()
    write_serialized(tmp_path / "a.serialized", meshes, face_normals=True)
    xml = """<scene version="3.0.0">
      <shape type="serialized" id="a"><string name="filename" value="a.serialized"/>
        <transform name="to_world"><rotate y="1" angle="30"/><translate x="1"/></transform></shape>
      <shape type="serialized" id="b"><string name="filename" value="a.serialized"/><integer name="shape_index" value="1"/></shape>
      <shape type="serialized" id="c"><string name="filename" value="a.serialized"/><integer name="shape_index" value="2"/>
        <boolean name="face_normals" value="true"/></shape>
    </scene>"""
    (tmp_path / "s.xml").write_text(xml)
    ours = jr.load_file(str(tmp_path / "s.xml"))
    mi = mitsuba()
    theirs = mi.traverse(mi.load_file(str(tmp_path / "s.xml")))
    for mesh in ours.shapes:
        world = np.asarray(transform_points(mesh.to_world, mesh.vertex_positions))
        np.testing.assert_allclose(world, np.array(theirs[f"{mesh.id}.vertex_positions"]).reshape(-1, 3), atol=1e-6)
        np.testing.assert_array_equal(np.asarray(mesh.faces), np.array(theirs[f"{mesh.id}.faces"]).reshape(-1, 3))
    assert ours.shapes[0].vertex_normals is not None and ours.shapes[2].vertex_normals is None
    np.testing.assert_allclose(np.asarray(ours.shapes[1].vertex_normals)[:5],
                               np.array(theirs["b.vertex_normals"]).reshape(-1, 3)[:5], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(ours.shapes[2].vertex_texcoords), meshes[2].texcoords)


def test_serialized_errors(tmp_path):
    import jaxrender as jr

    path = tmp_path / "m.serialized"
    write_serialized(path, _serialized_meshes())
    data = path.read_bytes()

    def fails(blob, index, *patterns):
        p = tmp_path / "bad.serialized"
        p.write_bytes(blob)
        with pytest.raises(SceneError) as info:
            read_serialized(p, index)
        for pat in (str(p),) + patterns:
            assert pat in str(info.value)

    fails(b"\x1c\x04", 0, "too short")
    fails(b"PK\x03\x04" + data[4:], 0, "magic")
    fails(data[:2] + struct.pack("<H", 9) + data[4:], 0, "version 9")
    fails(data, 3, "out of range", "0..2")
    fails(data[:4] + b"\x00" * 40, 0, "corrupt")
    fails(data[:60], 0, "truncated")
    # A triangle pointing past the vertices.
    bad = MeshData(np.zeros((3, 3)), [[0, 1, 2]])
    write_serialized(p := tmp_path / "idx.serialized", bad)
    raw = p.read_bytes()
    body = zlib.decompress(raw[4:-12])
    body = body[:-4] + struct.pack("<I", 7)
    p.write_bytes(raw[:4] + zlib.compress(body) + struct.pack("<QI", 0, 1))
    with pytest.raises(SceneError, match="outside"):
        read_serialized(p)
    # Through the loader: the shape's source and the file.
    with pytest.raises(SceneError) as info:
        jr.load_dict({"type": "scene", "s": {"type": "serialized", "filename": str(path), "shape_index": 5,
                                             "__source__": "s.xml:4"}})
    assert "s.xml:4" in str(info.value) and "out of range" in str(info.value)
    with pytest.raises(SceneError, match="shape_index"):
        jr.load_dict({"type": "scene", "s": {"type": "serialized", "filename": str(path), "shape_index": -1}})


FLOAT_INDEX_PLY = """ply
format {fmt} 1.0
element vertex 4
property float x
property float y
property float z
element face 2
property list uchar {itype} vertex_indices
end_header
"""


def write_float_index_ply(path, fmt, itype, faces):
    head = FLOAT_INDEX_PLY.format(fmt=fmt, itype=itype).encode()
    verts = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)]
    if fmt == "ascii":
        body = "".join("%g %g %g\n" % v for v in verts)
        body += "".join("3 " + " ".join(repr(float(i)) for i in f) + "\n" for f in faces)
        path.write_bytes(head + body.encode())
        return
    e = "<" if fmt == "binary_little_endian" else ">"
    code = {"float": "f", "double": "d"}[itype]
    body = b"".join(struct.pack(e + "fff", *v) for v in verts)
    body += b"".join(struct.pack(e + "B" + code * 3, 3, *f) for f in faces)
    path.write_bytes(head + body)


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
@pytest.mark.parametrize("itype", ["float", "double"])
def test_ply_float_face_indices(tmp_path, fmt, itype):
    # Whole numbers stored as floats are indices; anything else is an error
    # naming the file and the face (binary files used to truncate 2.7 to 2).
    path = tmp_path / "m.ply"
    write_float_index_ply(path, fmt, itype, [(0, 1, 2), (0, 2, 3)])
    np.testing.assert_array_equal(read_ply(path).faces, [[0, 1, 2], [0, 2, 3]])
    for bad, shown in ((2.7, "2.7"), (float("nan"), "nan")):
        write_float_index_ply(path, fmt, itype, [(0, 1, 2), (0, bad, 3)])
        with pytest.raises(SceneError, match=rf"{re.escape(str(path))}: face 1 has the non-integer "
                           rf"vertex index {shown}"):
            read_ply(path)


def test_ply_float_list_length_is_rejected(tmp_path):
    head = FLOAT_INDEX_PLY.format(fmt="binary_little_endian", itype="int").replace("list uchar", "list float")
    body = struct.pack("<12f", *[0.0] * 12) + struct.pack("<f3i", 3.5, 0, 1, 2) * 2
    (tmp_path / "m.ply").write_bytes(head.encode() + body)
    with pytest.raises(SceneError, match=r"m\.ply:8: a list's length must have an integer type, got 'float'"):
        read_ply(tmp_path / "m.ply")


def test_binary_ply_is_fast(tmp_path):
    # A million triangles.
    n = 708
    u, v = np.meshgrid(np.arange(n + 1, dtype=np.float32), np.arange(n + 1, dtype=np.float32))
    verts = np.stack([u, v, np.sin(u + v)], -1).reshape(-1, 3)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = np.concatenate(
        [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    )
    assert faces.shape[0] > 1_000_000
    write_ply(tmp_path / "big.ply", verts, faces)
    t0 = time.perf_counter()
    m = read_ply(tmp_path / "big.ply")
    elapsed = time.perf_counter() - t0
    assert m.faces.shape == faces.shape and (m.faces == faces).all()
    assert elapsed < 2.0, f"read_ply took {elapsed:.2f} s"


MESH_ERRORS = [
    (
        "m.obj",
        b"v 0 0 0\nv 1 0 0\nv 0 1 0\n\nf 1 2 4\n",
        r"m\.obj:5: vertex index '4' out of range \(the file has 3",
    ),
    (
        "m.obj",
        b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 -4\n",
        r"m\.obj:4: vertex index '-4' out of range",
    ),
    (
        "m.obj",
        b"v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/2 2/1 3/1\n",
        r"m\.obj:5: texture coordinate index '1/2' out of range",
    ),
    ("m.obj", b"v 0 0 0\nv 1 nan 0\nv 0 1 0\nf 1 2 3\n", r"m\.obj:2: vertex 1 is not finite"),
    ("m.obj", b"v 0 0 0\nv 1 0\nv 0 1 0\nf 1 2 3\n", r"m\.obj:2: vertex needs 3 numbers, got 2"),
    ("m.obj", b"v 0 0 0\nv 1 0 zero\nv 0 1 0\nf 1 2 3\n", r"m\.obj:2: could not parse vertex"),
    (
        "m.obj",
        b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 x\n",
        r"m\.obj:4: could not parse face corner 'x'",
    ),
    ("m.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 0\n", r"m\.obj:4: index 0 in face corner '0'"),
    ("m.obj", b"v 0 0 0\nv 1 0 0\nf 1 2\n", r"m\.obj:3: face with 2 vertices"),
    ("m.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", r"m\.obj: mesh has no faces"),
    (
        "m.ply",
        b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
        b"element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n",
        r"m\.ply: triangle 0 = \[0, 1, 3\] indexes a vertex outside \[0, 3\)",
    ),
    (
        "m.ply",
        b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
        b"element face 0\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n",
        r"m\.ply: mesh has no faces",
    ),
    (
        "m.ply",
        b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
        b"element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 inf 0\n0 1 0\n3 0 1 2\n",
        r"m\.ply: vertex 1 is not finite",
    ),
    (
        "m.ply",
        b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
        b"end_header\n0 0 0\n1 0 0\n",
        r"m\.ply: element 'vertex' declares 3 rows, the file has 2",
    ),
    (
        "m.ply",
        b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
        b"property float z\nend_header\n" + b"\0" * 20,
        r"m\.ply: file ends inside element 'vertex'",
    ),
    (
        "m.ply",
        b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
        b"property float z\nelement face 2\nproperty list uchar int vertex_indices\nend_header\n"
        + b"\0" * 36
        + b"\x03"
        + b"\0" * 12
        + b"\x04"
        + b"\0" * 8,
        r"m\.ply: file ends inside element 'face'",
    ),
    (
        "m.ply",
        b"ply\nformat binary_middle_endian 1.0\nend_header\n",
        r"m\.ply:2: unsupported PLY format",
    ),
    (
        "m.ply",
        b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n",
        r"m\.ply:4: bad property declaration",
    ),
    ("m.ply", b"solid stl\n", r"m\.ply: not a PLY file"),
]


@pytest.mark.parametrize("name,content,message", MESH_ERRORS)
def test_mesh_errors(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    reader = read_obj if name.endswith(".obj") else read_ply
    with pytest.raises(SceneError, match=message):
        reader(tmp_path / name)


def test_mesh_missing_file_and_bad_arrays(tmp_path):
    with pytest.raises(
        SceneError, match=rf"{re.escape(str(tmp_path / 'nope.obj'))}: mesh file not found"
    ):
        read_obj(tmp_path / "nope.obj")
    with pytest.raises(SceneError, match="mesh file not found"):
        read_ply(tmp_path / "nope.ply")
    with pytest.raises(ValueError, match=r"faces must have shape \(N, 3\), got \(2, 4\)"):
        MeshData(np.zeros((3, 3)), np.zeros((2, 4), np.int32))
    with pytest.raises(TypeError, match="faces must be an integer array"):
        MeshData(np.zeros((3, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"normals must have one row per vertex \(3\), got 2"):
        MeshData(np.zeros((3, 3)), [[0, 1, 2]], normals=np.zeros((2, 3)))


# ---------------------------------------------------------------------------
# Images


def test_exr_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    img = (rng.standard_normal((7, 5, 3)) * 1e3).astype(np.float32)
    img[0, 0] = [np.inf, -np.inf, 1e-45]
    img[0, 1] = [np.finfo(np.float32).max, -0.0, np.finfo(np.float32).tiny]
    write_image(tmp_path / "a.exr", img)
    back = read_image(tmp_path / "a.exr")
    assert back.dtype == np.float32 and back.shape == (7, 5, 3)
    assert back.tobytes() == img.tobytes()
    half = (img[1:] / 1e3).astype(np.float16)
    write_image(tmp_path / "h.exr", half)
    assert read_image(tmp_path / "h.exr").tobytes() == half.astype(np.float32).tobytes()


def test_exr_channel_layouts(tmp_path):
    import OpenEXR

    rng = np.random.default_rng(1)
    r, g, b, a = (rng.random((4, 6)).astype(np.float32) for _ in range(4))
    cases = {
        "sep.exr": ({"R": r, "G": g, "B": b}, np.stack([r, g, b], -1)),
        "rgba.exr": ({"R": r, "G": g, "B": b, "A": a}, np.stack([r, g, b], -1)),
        "y.exr": ({"Y": r}, np.stack([r, r, r], -1)),
        "ya.exr": ({"Y": r, "A": a}, np.stack([r, r, r], -1)),
        "layer.exr": (
            {"diffuse.R": r, "diffuse.G": g, "diffuse.B": b, "depth.Z": a},
            np.stack([r, g, b], -1),
        ),
        "half.exr": (
            {"R": r.astype(np.float16), "G": g.astype(np.float16), "B": b.astype(np.float16)},
            np.stack([r, g, b], -1).astype(np.float16).astype(np.float32),
        ),
    }
    for name, (channels, expected) in cases.items():
        OpenEXR.File({"compression": OpenEXR.PIZ_COMPRESSION}, channels).write(str(tmp_path / name))
        np.testing.assert_array_equal(read_image(tmp_path / name), expected)
    OpenEXR.File({}, {"Z": r, "W": g}).write(str(tmp_path / "zw.exr"))
    with pytest.raises(
        SceneError, match=r"zw\.exr: EXR file has no R, G, B or Y channels \(it has W, Z\)"
    ):
        read_image(tmp_path / "zw.exr")
    # A lone channel other than Y is not gray (alpha-only files used to load
    # as gray RGB); Mitsuba's bitmap texture refuses these files too.
    for name, channels in (("a.exr", {"A": a}), ("z.exr", {"Z": a}), ("ra.exr", {"R": r, "A": a})):
        OpenEXR.File({}, channels).write(str(tmp_path / name))
        found = ", ".join(sorted(channels))
        with pytest.raises(SceneError, match=rf"{re.escape(name)}: EXR file has no R, G, B or Y channels "
                           rf"\(it has {found}\)"):
            read_image(tmp_path / name)
    OpenEXR.File({}, {"light.Y": r, "light.A": a}).write(str(tmp_path / "layer_y.exr"))
    np.testing.assert_array_equal(read_image(tmp_path / "layer_y.exr"), np.stack([r, r, r], -1))
    # RGBA and gray writes.
    write_image(tmp_path / "w4.exr", np.stack([r, g, b, a], -1))
    np.testing.assert_array_equal(read_image(tmp_path / "w4.exr"), np.stack([r, g, b], -1))
    write_image(tmp_path / "w1.exr", r)
    np.testing.assert_array_equal(read_image(tmp_path / "w1.exr"), np.stack([r, r, r], -1))


def test_exr_written_by_mitsuba(tmp_path):
    mi = mitsuba()
    img = np.random.default_rng(2).random((5, 7, 3)).astype(np.float32)
    mi.Bitmap(img).write(str(tmp_path / "m.exr"))
    np.testing.assert_array_equal(read_image(tmp_path / "m.exr"), img)
    write_image(tmp_path / "ours.exr", img)
    np.testing.assert_array_equal(np.array(mi.Bitmap(str(tmp_path / "ours.exr"))), img)


def test_png_srgb_round_trip(tmp_path):
    lin = np.random.default_rng(3).random((16, 9, 3)).astype(np.float32)
    lin[0, :3] = [[0, 0, 0], [1, 1, 1], [0.002, 0.5, 0.999]]
    write_image(tmp_path / "a.png", lin)
    back = read_image(tmp_path / "a.png")
    assert back.dtype == np.float32 and back.shape == lin.shape
    # Within one 8-bit step of the encoded value.
    assert np.abs(linear_to_srgb(back) - linear_to_srgb(lin)).max() <= 0.5 / 255 + 1e-6
    assert back[0, 0].tolist() == [0, 0, 0] and back[0, 1].tolist() == [1, 1, 1]
    # raw: the stored 8-bit values themselves.
    stored = np.round(linear_to_srgb(lin) * 255) / 255
    np.testing.assert_allclose(read_image(tmp_path / "a.png", raw=True), stored, atol=1e-6)
    # Clamped on write, values outside [0, 1] saturate.
    write_image(tmp_path / "c.png", np.full((2, 2, 3), [-1.0, 0.5, 7.0]))
    half = srgb_to_linear(np.round(linear_to_srgb(0.5) * 255) / 255)  # 188 / 255 encoded
    np.testing.assert_allclose(read_image(tmp_path / "c.png")[0, 0], [0, half, 1], atol=1e-6)
    write_image(tmp_path / "raw.png", np.full((2, 2, 3), 0.5), raw=True)
    assert read_image(tmp_path / "raw.png", raw=True)[0, 0, 0] == pytest.approx(128 / 255)


def test_png_matches_mitsuba(tmp_path):
    mi = mitsuba()
    lin = np.random.default_rng(4).random((6, 4, 3)).astype(np.float32)
    write_image(tmp_path / "a.png", lin)
    bmp = mi.Bitmap(str(tmp_path / "a.png")).convert(
        mi.Bitmap.PixelFormat.RGB, mi.Struct.Type.Float32, False
    )
    np.testing.assert_allclose(read_image(tmp_path / "a.png"), np.array(bmp), atol=1e-6)


def test_png_modes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(5)
    gray = rng.integers(0, 256, (5, 4), dtype=np.uint8)
    rgba = rng.integers(0, 256, (5, 4, 4), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "l.png")
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(np.stack([gray, gray], -1), mode="LA").save(tmp_path / "la.png")
    Image.fromarray(rgba[..., :3]).convert("P", palette=Image.ADAPTIVE).save(tmp_path / "p.png")
    np.testing.assert_allclose(
        read_image(tmp_path / "l.png", raw=True), np.repeat(gray[..., None], 3, 2) / 255
    )
    np.testing.assert_allclose(
        read_image(tmp_path / "la.png", raw=True), np.repeat(gray[..., None], 3, 2) / 255
    )
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png", raw=True), rgba[..., :3] / 255)
    assert read_image(tmp_path / "p.png").shape == (5, 4, 3)
    np.testing.assert_allclose(
        read_image(tmp_path / "l.png"),
        srgb_to_linear(np.repeat(gray[..., None], 3, 2) / 255),
        atol=1e-6,
    )
    g16 = rng.integers(0, 65536, (5, 4), dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    np.testing.assert_allclose(
        read_image(tmp_path / "g16.png", raw=True), np.repeat(g16[..., None], 3, 2) / 65535
    )


def png16(path, img: np.ndarray, filters):
    """Writes a 16-bit PNG with the given filter type for each row."""
    h, w, c = img.shape
    data = img.astype(">u2").view(np.uint8).reshape(h, w * 2 * c).astype(np.int64)
    bpp = 2 * c
    rows = []
    for y in range(h):
        cur = data[y]
        up = data[y - 1] if y else np.zeros_like(cur)
        left = np.concatenate([np.zeros(bpp, np.int64), cur[:-bpp]])
        up_left = np.concatenate([np.zeros(bpp, np.int64), up[:-bpp]])
        f = filters[y % len(filters)]
        p = left + up - up_left
        pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
        pred = [0, left, up, (left + up) // 2, paeth][f]
        rows.append(bytes([f]) + ((cur - pred) % 256).astype(np.uint8).tobytes())

    def chunk(kind, payload):
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")
    path.write_bytes(png)


@pytest.mark.parametrize("channels", [3, 4, 2])
def test_png16_all_filters(tmp_path, channels):
    img = np.random.default_rng(channels).integers(0, 65536, (10, 7, channels)).astype(np.uint16)
    png16(tmp_path / "a.png", img, filters=[0, 1, 2, 3, 4])
    got = read_image(tmp_path / "a.png", raw=True)
    color = img[..., :3] if channels >= 3 else np.repeat(img[..., :1], 3, 2)
    np.testing.assert_allclose(got, color / 65535, atol=1e-7)
    np.testing.assert_allclose(
        read_image(tmp_path / "a.png"), srgb_to_linear(color / 65535), atol=1e-6
    )


def test_png16_written_by_mitsuba(tmp_path):
    mi = mitsuba()
    img = np.random.default_rng(6).integers(0, 65536, (9, 11, 3)).astype(np.uint16)
    mi.Bitmap(img, pixel_format=mi.Bitmap.PixelFormat.RGB).write(str(tmp_path / "m.png"))
    np.testing.assert_allclose(read_image(tmp_path / "m.png", raw=True), img / 65535, atol=1e-7)


def test_jpeg(tmp_path):
    lin = np.full((8, 8, 3), [0.2, 0.5, 0.8], np.float32)
    write_image(tmp_path / "a.jpg", lin)
    np.testing.assert_allclose(
        linear_to_srgb(read_image(tmp_path / "a.jpg")), linear_to_srgb(lin), atol=3 / 255
    )
    with pytest.raises(ValueError, match="JPEG files cannot store alpha"):
        write_image(tmp_path / "b.jpg", np.zeros((2, 2, 4)))


def test_hdr_and_pfm(tmp_path):
    rng = np.random.default_rng(7)
    img = (rng.random((6, 40, 3)) * np.array([1, 100, 0.01])).astype(np.float32)
    img[0, 0] = 0
    write_image(tmp_path / "a.pfm", img)
    assert read_image(tmp_path / "a.pfm").tobytes() == img.tobytes()
    write_image(tmp_path / "a.hdr", img)
    back = read_image(tmp_path / "a.hdr")
    # RGBE keeps 8 bits of mantissa relative to the largest channel.
    assert np.all(np.abs(back - img) <= img.max(axis=2, keepdims=True) / 128)
    assert back[0, 0].tolist() == [0, 0, 0]
    mi = mitsuba()
    for ext in ("hdr", "pfm"):
        np.testing.assert_allclose(
            np.array(mi.Bitmap(str(tmp_path / f"a.{ext}"))),
            read_image(tmp_path / f"a.{ext}"),
            rtol=1e-6,
        )
        mi.Bitmap(img).write(str(tmp_path / f"m.{ext}"))  # Mitsuba's files (RLE for .hdr)
        np.testing.assert_allclose(
            read_image(tmp_path / f"m.{ext}"),
            np.array(mi.Bitmap(str(tmp_path / f"m.{ext}"))),
            rtol=1e-6,
        )


def test_image_errors(tmp_path):
    with pytest.raises(
        SceneError, match=rf"{re.escape(str(tmp_path / 'x.exr'))}: image file not found"
    ):
        read_image(tmp_path / "x.exr")
    with pytest.raises(SceneError, match=r"x\.gif: unsupported image format '\.gif'"):
        read_image(tmp_path / "x.gif")
    with pytest.raises(SceneError, match=r"x\.tiff: unsupported image format"):
        write_image(tmp_path / "x.tiff", np.zeros((2, 2, 3)))
    (tmp_path / "bad.exr").write_bytes(b"not an exr")
    with pytest.raises(SceneError, match=r"bad\.exr: could not read EXR file"):
        read_image(tmp_path / "bad.exr")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(SceneError, match=r"bad\.png: could not read image"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"image must have shape .* got \(2, 2, 2\)"):
        write_image(tmp_path / "a.exr", np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"got \(4,\)"):
        write_image(tmp_path / "a.png", np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="image must be a floating-point array .* got dtype uint8"):
        write_image(tmp_path / "a.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.warns(SceneWarning, match="NaN"):
        write_image(tmp_path / "n.png", np.full((2, 2, 3), np.nan))
    assert read_image(tmp_path / "n.png").max() == 0


def test_failed_write_keeps_the_old_file(tmp_path):
    """A write that fails half-way (here a 4 KiB file-size limit, as a full
    disk would) raises OSError naming the output, leaves the file that was
    there as it was and no partial file beside it; a successful write keeps
    the old file's permissions."""
    import subprocess
    import sys

    old = np.random.default_rng(0).uniform(size=(8, 8, 3)).astype(np.float32)
    for ext in (".exr", ".png", ".pfm"):
        out = tmp_path / f"keep{ext}"
        write_image(out, old)
        before = out.read_bytes()
        script = ("import resource, sys, numpy as np\n"
                  "from jaxrender.io import write_image\n"
                  "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
                  "img = np.random.default_rng(1).uniform(size=(128, 128, 3)).astype(np.float32)\n"
                  "try:\n"
                  "    write_image(sys.argv[1], img)\n"
                  "except OSError as e:\n"
                  "    print(e)\n"
                  "    sys.exit(3)\n")
        # From tmp_path: `-c` puts the working directory first on sys.path,
        # and the source tree (CI's) holds no compiled modules.
        run = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True,
                             cwd=tmp_path)
        assert run.returncode == 3, (ext, run.stdout, run.stderr)
        assert run.stdout.startswith(str(out)), run.stdout
        assert out.read_bytes() == before, ext
        assert sorted(x.name for x in tmp_path.iterdir() if x.name.startswith(".")) == [], ext
    # Permissions: a new file gets the umask's, an old file keeps its own.
    out = tmp_path / "mode.png"
    write_image(out, old)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    os.chmod(out, 0o640)
    write_image(out, old)
    assert out.stat().st_mode & 0o777 == 0o640
    # A directory is refused before anything is written.
    (tmp_path / "d.png").mkdir()
    with pytest.raises(SceneError, match=r"d\.png: is a directory"):
        write_image(tmp_path / "d.png", old)


def test_damaged_files_name_the_file(tmp_path):
    """A truncated EXR and a binary .spd spectrum are SceneErrors naming
    the file."""
    write_image(tmp_path / "ok.exr", np.random.default_rng(0).uniform(size=(64, 64, 3)).astype(np.float32))
    data = (tmp_path / "ok.exr").read_bytes()
    (tmp_path / "cut.exr").write_bytes(data[:int(len(data) * 0.6)])
    with pytest.raises(SceneError, match=r"cut\.exr: could not read EXR file \(damaged or truncated\?\)"):
        read_image(tmp_path / "cut.exr")
    (tmp_path / "bin.spd").write_bytes(bytes(range(256)))
    (tmp_path / "x.xml").write_text('<scene version="3.0.0">\n<bsdf type="diffuse">\n'
                                    '<spectrum name="reflectance" filename="bin.spd"/></bsdf></scene>')
    with pytest.raises(SceneError, match=r"x\.xml:3: could not read spectrum file .*bin\.spd"):
        parse_xml(str(tmp_path / "x.xml"))


def test_obj_text_variants(tmp_path):
    # CRLF line ends, tabs, indentation, trailing comments, vertex colours, w.
    text = (
        "# header\r\nv 0 0 0 1 0 0\r\n  v\t1 0 0 0 1 0\r\nv 0 1 0 0 0 1 # top\r\n"
        "vt 0 0 0\r\nvt 1 0 0\r\nvt 0 1 0\r\n\tf 1/1 2/2 3/3   # the face\r\n"
    )
    (tmp_path / "m.obj").write_bytes(text.encode())
    m = read_obj(tmp_path / "m.obj")
    np.testing.assert_array_equal(m.vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(m.faces, [[0, 1, 2]])
    np.testing.assert_array_equal(m.texcoords, [[0, 1], [1, 1], [0, 0]])


def test_include_inside_an_object_and_string_input(tmp_path, monkeypatch):
    (tmp_path / "mat.xml").write_text(
        '<bsdf version="0.5.0" type="diffuse"><rgb name="diffuseReflectance" value="0.2"/></bsdf>'
    )
    monkeypatch.chdir(tmp_path)
    # A str starting with "<" is XML text; relative paths resolve in the current directory.
    d = parse_xml(
        '<scene version="3.0.0"><shape type="obj"><include filename="mat.xml"/></shape></scene>'
    )
    assert d["shape_0"]["bsdf"]["reflectance"] == {"type": "rgb", "value": [0.2] * 3}
    assert d["shape_0"]["bsdf"]["__source__"] == f"{tmp_path / 'mat.xml'}:1"


SHARED_BAD = os.path.join(os.path.dirname(__file__), "data", "scenes", "bad")


@pytest.mark.parametrize(
    "name,message",
    [
        ("malformed.xml", r"malformed\.xml:24: malformed XML"),
        ("unresolved_ref.xml", r"unresolved_ref\.xml:19: reference to unknown id 'nope'"),
        ("wrong_value_type.xml", r"wrong_value_type\.xml:9: .*'fov'.*'abc'"),
        ("include_cycle.xml", r"include_cycle_b\.xml:7: include cycle: .*include_cycle\.xml -> "),
        ("meshes/out_of_range.obj", r"out_of_range\.obj:8: vertex index '7' out of range"),
        ("meshes/nan_vertex.obj", r"nan_vertex\.obj:4: vertex 1 is not finite"),
    ],
)
def test_shared_bad_files(name, message):
    """The broken files of tests/data/scenes/bad (each states its expected error)."""
    path = os.path.join(SHARED_BAD, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} not present")
    reader = read_obj if name.endswith(".obj") else parse_xml
    with pytest.raises(SceneError, match=message):
        reader(path)
