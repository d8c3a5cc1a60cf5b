"""Tests of the scene model: load_dict, the pytree types, traverse/replace,
transforms and camera rays.

References: values worked out by hand, numpy, and Mitsuba 3 itself (the tests
that need it skip where it is not installed): the same dict is loaded in
`mitsuba` (variant scalar_rgb) and every parameter `mi.traverse` lists is
compared with ours. Mitsuba bakes `to_world` into mesh vertices and stores a
dielectric's `eta` = int_ior / ext_ior, which `_ours_for` accounts for.

Tolerances: float32 values computed by the same formula in a different order
agree to a few ulps (F32); positions from products of transforms and trig
to 1e-5 (POS).
"""

from __future__ import annotations

import copy
import json
import math
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrender.scene as js
from jaxrender.scene import data as scene_data

F32 = 2e-6
POS = 1e-5
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENES = os.path.join(ROOT, "tests", "data", "scenes")


# --------------------------------------------------------------------------
# Helpers


@pytest.fixture(scope="module")
def mi():
    mitsuba = pytest.importorskip("mitsuba")
    mitsuba.set_variant("scalar_rgb")
    mitsuba.set_log_level(mitsuba.LogLevel.Error)
    return mitsuba


def _io_has(name):
    try:
        import jaxrender.io as jio
    except ImportError:
        return False
    return hasattr(jio, name)


needs_mesh_io = pytest.mark.skipif(not _io_has("read_ply"), reason="jaxrender.io mesh readers not available")
needs_xml_io = pytest.mark.skipif(not _io_has("parse_xml"), reason="jaxrender.io.parse_xml not available")
needs_image_io = pytest.mark.skipif(not _io_has("read_image"), reason="jaxrender.io.read_image not available")


def scene(**objects):
    return js.load_dict({"type": "scene", **objects})


def write_ply(path, vertices, faces, normals=None, uvs=None):
    """A minimal ASCII PLY writer (independent of jaxrender.io)."""
    props = ["x", "y", "z"] + (["nx", "ny", "nz"] if normals is not None else []) + \
        (["u", "v"] if uvs is not None else [])
    with open(path, "w") as f:
        f.write("ply\nformat ascii 1.0\n")
        f.write(f"element vertex {len(vertices)}\n")
        f.writelines(f"property float {p}\n" for p in props)
        f.write(f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
        for i, v in enumerate(vertices):
            row = list(v) + (list(normals[i]) if normals is not None else []) + \
                (list(uvs[i]) if uvs is not None else [])
            f.write(" ".join(repr(float(x)) for x in row) + "\n")
        for t in faces:
            f.write("3 " + " ".join(str(int(i)) for i in t) + "\n")
    return str(path)


def write_obj(path, vertices, faces, uvs=None):
    """A minimal OBJ writer (independent of jaxrender.io); uvs as stored."""
    with open(path, "w") as f:
        for v in vertices:
            f.write("v " + " ".join(repr(float(x)) for x in v) + "\n")
        for t in uvs if uvs is not None else []:
            f.write("vt " + " ".join(repr(float(x)) for x in t) + "\n")
        for t in faces:
            if uvs is None:
                f.write("f " + " ".join(str(i + 1) for i in t) + "\n")
            else:
                f.write("f " + " ".join(f"{i + 1}/{i + 1}" for i in t) + "\n")
    return str(path)


TETRA_V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0.5]], np.float32)
TETRA_F = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 4, 2]], np.int32)


def to_mitsuba(mi, d):
    """Our dict -> the same scene for mi.load_dict: transforms become
    ScalarTransform4f, array data becomes tensors / bitmaps."""
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            if k in ("to_world", "to_uv"):
                out[k] = mi.ScalarTransform4f(np.asarray(v, np.float64).tolist())
            elif k == "data" and d.get("type") == "envmap":
                out["bitmap"] = mi.Bitmap(np.asarray(v, np.float32))
            elif k == "data":
                out[k] = mi.TensorXf(np.asarray(v, np.float32))
            else:
                out[k] = to_mitsuba(mi, v)
        return out
    return d


_SKIP_MI = ("sampling_weight", "silhouette_sampling_weight", "shutter_open", "shutter_open_time",
            "crop_size", "crop_offset", "principal_point_offset_x", "principal_point_offset_y",
            "allow_thread_reordering", "texture.value")


def _ours_for(name, sc, ours):
    """Our value for one of Mitsuba's parameter names."""
    shapes = {m.id: m for m in sc.shapes}
    cams = {c.id: c for c in sc.sensors}
    obj, _, param = name.partition(".")
    if obj in shapes and param in ("vertex_positions", "vertex_normals", "vertex_texcoords", "faces"):
        m = shapes[obj]
        if param == "faces":
            return np.asarray(m.faces)
        if param == "vertex_positions":
            return np.asarray(js.transform_points(m.to_world, m.vertex_positions))
        if param == "vertex_normals":
            if m.vertex_normals is None:
                return np.zeros(0)
            n = np.asarray(js.transform_normals(m.to_world, m.vertex_normals))
            return n / np.linalg.norm(n, axis=1, keepdims=True)
        return np.zeros(0) if m.vertex_texcoords is None else np.asarray(m.vertex_texcoords)
    if obj in cams and param in ("x_fov", "near_clip", "far_clip", "film.size"):
        c = cams[obj]
        return {"x_fov": c.x_fov, "near_clip": c.near_clip, "far_clip": c.far_clip,
                "film.size": [c.film.width, c.film.height]}[param]
    if name.endswith("eta") and not name.endswith(".value") and (name == "eta" or name.endswith(".eta")):
        prefix = name[: -len("eta")]
        return ours[prefix + "int_ior"] / ours[prefix + "ext_ior"]
    if name.endswith("data") and (name == "data" or name.endswith(".data")):
        return ours[name]
    return ours[name]


def compare_with_mitsuba(mi, d, *, unpadded_envmap=True):
    """Loads `d` in both and checks every parameter Mitsuba lists."""
    ours_scene = js.load_dict(d)
    ours = js.traverse(ours_scene)
    obj = mi.load_dict(to_mitsuba(mi, d))  # kept alive: traverse() holds pointers into it
    theirs = mi.traverse(obj)
    checked = 0
    for name in theirs.keys():
        if name.endswith(_SKIP_MI):
            continue
        value = theirs[name]
        if "Transform" in type(value).__name__:
            value = np.array(value.matrix)
        x = np.asarray(value, np.float64)
        y = np.asarray(_ours_for(name, ours_scene, ours), np.float64)
        if name.endswith("data") and x.ndim == 3 and y.shape != x.shape and unpadded_envmap:
            x = x[:, 1:-1]  # Mitsuba pads an envmap with a wrapped column on each side
        assert x.size == y.size, f"{name}: Mitsuba {x.shape} vs ours {y.shape}"
        np.testing.assert_allclose(y.ravel(), x.ravel(), rtol=F32, atol=F32, err_msg=name)
        checked += 1
    return ours_scene, checked


# --------------------------------------------------------------------------
# Pytree plumbing


def test_static_array_hash_eq_and_readonly():
    a = js.StaticArray(np.array([[0, 1, 2]], np.int32))
    b = js.StaticArray(np.array([[0, 1, 2]], np.int32))
    c = js.StaticArray(np.array([[0, 2, 1]], np.int32))
    d = js.StaticArray(np.array([[0, 1, 2]], np.int64))
    assert a == b and hash(a) == hash(b)
    assert a != c and a != d
    assert a.shape == (1, 3) and a.dtype == np.int32 and len(a) == 1
    assert np.asarray(a).tolist() == [[0, 1, 2]]
    with pytest.raises(ValueError):
        a.array[0, 0] = 5
    with pytest.raises(AttributeError):
        a.foo = 1
    src = np.array([[0, 1, 2]], np.int32)
    e = js.StaticArray(src)
    src[0, 0] = 9  # the wrapper holds a copy
    assert e == a


def test_scene_is_a_pytree_with_float_leaves_and_static_topology():
    sc = scene(s={"type": "rectangle"}, c={"type": "perspective"})
    leaves = jax.tree_util.tree_leaves(sc)
    assert leaves and all(isinstance(x, jax.Array) and x.dtype == jnp.float32 for x in leaves)
    # to_world, positions, normals, uvs, reflectance, camera to_world and fov
    assert len(leaves) == 7
    traces = []

    @jax.jit
    def f(sc):
        traces.append(1)
        return sc.shapes[0].vertex_positions.sum() + sc.sensors[0].fov

    f(sc)
    f(js.replace(sc, {"s.to_world": np.eye(4) * 2}))  # same structure: cached
    assert len(traces) == 1
    f(scene(s={"type": "cube"}, c={"type": "perspective"}))  # other faces: retraced
    assert len(traces) == 2
    out = jax.jit(lambda s: s)(sc)
    assert out.shapes[0].faces == sc.shapes[0].faces
    assert out.integrator == sc.integrator and out.ids == sc.ids


# --------------------------------------------------------------------------
# Transforms


def test_transforms_by_hand():
    np.testing.assert_allclose(js.translate([1, 2, 3]), [[1, 0, 0, 1], [0, 1, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]])
    np.testing.assert_allclose(js.scale(2.0), np.diag([2, 2, 2, 1]))
    np.testing.assert_allclose(js.scale([1, 2, 3]), np.diag([1, 2, 3, 1]))
    # 90 degrees about +z takes +x to +y (right-handed).
    np.testing.assert_allclose(js.transform_points(js.rotate([0, 0, 1], 90.0), [1.0, 0, 0]), [0, 1, 0], atol=1e-7)
    np.testing.assert_allclose(js.transform_points(js.rotate([2, 0, 0], 90.0), [0, 1.0, 0]), [0, 0, 1], atol=1e-7)
    m = js.look_at([0, 0, 5], [0, 0, 0], [0, 1, 0])
    # The camera looks down -z; local +x (image left) is world -x.
    np.testing.assert_allclose(m, [[-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, 5], [0, 0, 0, 1]], atol=1e-7)
    n = js.transform_normals(js.scale([1, 1, 4]), jnp.array([0.0, 0.6, 0.8]))
    np.testing.assert_allclose(n, [0, 0.6, 0.2], atol=1e-7)
    with pytest.raises(ValueError, match="axis"):
        js.rotate([1, 0], 10.0)


def test_transforms_match_mitsuba(mi):
    T = mi.ScalarTransform4f
    rng = np.random.default_rng(1)
    for _ in range(5):
        # Mitsuba 3 expects a unit axis (ours normalizes any axis).
        axis, angle = rng.normal(size=3), float(rng.uniform(-400, 400))
        axis /= np.linalg.norm(axis)
        np.testing.assert_allclose(js.rotate(axis, angle), np.array(T().rotate(axis.tolist(), angle).matrix),
                                   atol=F32)
        o, t, u = rng.normal(size=3) * 3, rng.normal(size=3), rng.normal(size=3)
        np.testing.assert_allclose(js.look_at(o, t, u),
                                   np.array(T().look_at(origin=o.tolist(), target=t.tolist(), up=u.tolist()).matrix),
                                   atol=1e-5)
        v = rng.normal(size=3)
        np.testing.assert_allclose(js.translate(v), np.array(T().translate(v.tolist()).matrix), atol=F32)
        np.testing.assert_allclose(js.scale(v), np.array(T().scale(v.tolist()).matrix), atol=F32)


def test_transforms_are_traceable_and_differentiable():
    def f(angle, origin):
        m = js.translate(origin) @ js.rotate([0, 1, 0], angle) @ js.scale(2.0)
        cam = js.look_at(origin, jnp.zeros(3), jnp.array([0.0, 1.0, 0.0]))
        return jnp.sum(m[:3, 0] ** 2) + jnp.sum(cam[:3, 2] * jnp.array([1.0, 2.0, 3.0]))

    g = jax.jit(jax.grad(f, argnums=(0, 1)))(30.0, jnp.array([1.0, 2.0, 3.0]))
    assert all(np.all(np.isfinite(x)) for x in g)
    # d/d angle of |R S e_x|^2 = 0 (rotation keeps length); check against finite differences for origin
    eps = 1e-2
    o = np.array([1.0, 2.0, 3.0])
    fd = [(f(30.0, o + eps * e) - f(30.0, o - eps * e)) / (2 * eps) for e in np.eye(3)]
    np.testing.assert_allclose(g[1], fd, rtol=1e-2, atol=1e-3)
    assert abs(float(g[0])) < 1e-5


def test_degenerate_transforms():
    # Concrete degenerate input is a ValueError naming the argument (these
    # used to return NaN matrices).
    cases = [
        (lambda: js.rotate([0, 0, 0], 30.0), r"rotate: axis must be non-zero"),
        (lambda: js.rotate(np.zeros(3), 0.0), r"rotate: axis must be non-zero"),
        (lambda: js.rotate([0, 0, 1], np.inf), r"rotate: angle must be finite"),
        (lambda: js.rotate([np.nan, 0, 1], 10.0), r"rotate: axis must be finite"),
        (lambda: js.look_at([1, 2, 3], [1, 2, 3], [0, 1, 0]), r"look_at: origin and target are the same point"),
        (lambda: js.look_at([0, 0, 0], [0, 2, 0], [0, 1, 0]), r"look_at: up \[0\.0, 1\.0, 0\.0\] is parallel"),
        (lambda: js.look_at([0, 0, 0], [0, -2, 0], [0, 1, 0]), r"look_at: up .* is parallel"),
        (lambda: js.look_at([0, 0, 0], [0, 1, 1e-8], [0, 1, 0]), r"look_at: up .* is parallel"),
        (lambda: js.look_at([0, 0, 0], [0, 0, 1], [0, 0, 0]), r"look_at: up must be non-zero"),
        (lambda: js.look_at([0, 0, np.inf], [0, 0, 1], [0, 1, 0]), r"look_at: origin must be finite"),
    ]
    for make, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            make()
    # Nearly parallel but well above float32 noise is fine.
    m = js.look_at([0, 0, 0], [0, 1, 1e-3], [0, 1, 0])
    assert np.all(np.isfinite(m))
    # Traced input cannot be checked: the result stays finite (a zero axis is
    # the identity; a parallel up falls back to coordinate_system's tangent,
    # which still gives an orthonormal frame), and so do gradients.
    np.testing.assert_array_equal(jax.jit(js.rotate)(jnp.zeros(3), 30.0), np.eye(4))
    for o, t, u in ((np.zeros(3), np.zeros(3), [0.0, 1, 0]), (np.zeros(3), [0.0, 2, 0], [0.0, 1, 0]),
                    (np.zeros(3), [0.0, 0, 1], np.zeros(3))):
        m = np.asarray(jax.jit(js.look_at)(jnp.asarray(o), jnp.asarray(t), jnp.asarray(u)))
        np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-6)
    for g in (jax.grad(lambda a: js.rotate(a, 30.0).sum())(jnp.zeros(3)),
              jax.grad(lambda t: js.look_at(jnp.zeros(3), t, jnp.array([0.0, 1, 0])).sum())(jnp.array([0.0, 1, 0])),
              jax.grad(lambda t: js.look_at(jnp.zeros(3), t, jnp.array([0.0, 1, 0])).sum())(jnp.zeros(3))):
        assert np.all(np.isfinite(g))
    # vmap over a batch with one degenerate axis.
    batch = jax.vmap(js.rotate, in_axes=(0, None))(jnp.array([[0.0, 0, 1], [0, 0, 0]]), 90.0)
    np.testing.assert_allclose(batch[0], js.rotate([0, 0, 1], 90.0))
    np.testing.assert_array_equal(batch[1], np.eye(4))


# --------------------------------------------------------------------------
# Shapes


def test_rectangle_cube_disk_meshes_by_hand():
    sc = scene(r={"type": "rectangle"}, c={"type": "cube"}, d={"type": "disk"})
    r, c, d = sc.shapes
    np.testing.assert_array_equal(r.vertex_positions, [[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]])
    np.testing.assert_array_equal(r.vertex_texcoords, [[0, 0], [1, 0], [1, 1], [0, 1]])
    np.testing.assert_array_equal(r.vertex_normals, np.tile([0, 0, 1], (4, 1)))
    assert np.asarray(r.faces).tolist() == [[0, 1, 2], [0, 2, 3]]
    assert c.num_vertices == 24 and c.num_faces == 12
    # Faces are counter-clockwise from outside: geometric normals = the stored normals.
    for m in (r, c, d):
        p = np.asarray(m.vertex_positions)[np.asarray(m.faces)]
        n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        np.testing.assert_allclose(n, np.asarray(m.vertex_normals)[np.asarray(m.faces)[:, 0]], atol=1e-6)
    # Disk: area within 1e-4 of pi, rim on the unit circle, uv = (r, phi / 2 pi).
    p = np.asarray(d.vertex_positions)[np.asarray(d.faces)]
    area = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1).sum()
    assert abs(area - np.pi) < 1.1e-4 * np.pi
    pos, uv = np.asarray(d.vertex_positions), np.asarray(d.vertex_texcoords)
    np.testing.assert_allclose(uv[:, 0], np.linalg.norm(pos[:, :2], axis=1), atol=1e-6)
    rim = uv[:, 0] > 0.5
    phi = np.arctan2(pos[rim, 1], pos[rim, 0]) % (2 * np.pi)
    np.testing.assert_allclose(np.minimum(np.abs(uv[rim, 1] - phi / (2 * np.pi)),
                                          np.abs(uv[rim, 1] - phi / (2 * np.pi) - 1)), 0, atol=1e-6)


def test_sphere_mesh_geometry():
    sc = scene(s={"type": "sphere", "center": [1, 2, 3], "radius": 0.5})
    m = sc.shapes[0]
    p = np.asarray(m.vertex_positions, np.float64)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1, atol=1e-6)
    np.testing.assert_array_equal(m.vertex_normals, m.vertex_positions)  # exact normals
    assert 8000 <= m.num_faces <= 20000
    # uv = (phi / 2 pi, theta / pi) at every vertex (seam vertices at u = 1, poles at any u).
    uv = np.asarray(m.vertex_texcoords, np.float64)
    np.testing.assert_allclose(uv[:, 1], np.arccos(np.clip(p[:, 2], -1, 1)) / np.pi, atol=1e-6)
    body = np.abs(p[:, 2]) < 1 - 1e-6
    u = (np.arctan2(p[body, 1], p[body, 0]) / (2 * np.pi)) % 1.0
    du = np.abs(uv[body, 0] - u)
    np.testing.assert_allclose(np.minimum(du, np.abs(du - 1)), 0, atol=1e-6)
    # Closed, outward, area close to 4 pi.
    t = p[np.asarray(m.faces)]
    cross = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    assert np.all(np.sum(cross * t.mean(axis=1), axis=1) > 0)
    area = 0.5 * np.linalg.norm(cross, axis=1).sum()
    assert 0.998 * 4 * np.pi < area < 4 * np.pi
    # center and radius are folded into to_world: translate(center) @ scale(radius).
    np.testing.assert_allclose(m.to_world, np.asarray(js.translate([1, 2, 3]) @ js.scale(0.5)), atol=F32)


def test_shapes_match_mitsuba(mi):
    rot = np.asarray(js.rotate([1, 1, 0], 30.0) @ js.translate([0.5, 0, 0]))
    d = {"type": "scene",
         "r": {"type": "rectangle", "to_world": rot, "flip_normals": True},
         "c": {"type": "cube", "to_world": rot},
         "d": {"type": "disk", "to_world": np.asarray(js.scale([2, 1, 1]))},
         "s": {"type": "sphere", "center": [1, 2, 3], "radius": 2.0, "to_world": rot},
         "y": {"type": "cylinder", "p0": [0.2, 0.1, 0], "p1": [0.5, 1.2, -0.3], "radius": 0.4, "to_world": rot}}
    sc, n = compare_with_mitsuba(mi, d)
    assert n >= 10
    assert sc.shapes[0].flip_normals and not sc.shapes[1].flip_normals


def test_shape_uvs_match_mitsuba_intersections(mi):
    """Interpolated mesh uvs equal Mitsuba's analytic uvs at hit points."""
    rng = np.random.default_rng(0)
    for kind, tol in (("rectangle", 1e-6), ("disk", 1e-2), ("sphere", 5e-3), ("cube", 1e-6)):
        m = scene(s={"type": kind}).shapes[0]
        mscene = mi.load_dict({"type": "scene", "s": {"type": kind}})
        pos, uv, faces = (np.asarray(m.vertex_positions, np.float64), np.asarray(m.vertex_texcoords, np.float64),
                          np.asarray(m.faces))
        for f in rng.choice(len(faces), 20):
            b = rng.dirichlet([2, 2, 2])
            b[0] = b[0] * 0.9 + 0.05  # away from edges/the disk centre
            b /= b.sum()
            x = b @ pos[faces[f]]
            nrm = np.cross(pos[faces[f][1]] - pos[faces[f][0]], pos[faces[f][2]] - pos[faces[f][0]])
            nrm /= np.linalg.norm(nrm)
            ray = mi.Ray3f((x + 0.01 * nrm).tolist(), (-nrm).tolist())
            si = mscene.ray_intersect(ray)
            assert si.is_valid()
            ours = b @ uv[faces[f]]
            theirs = np.array(si.uv)
            du = np.abs(ours - theirs)
            du[0] = min(du[0], abs(du[0] - 1))  # u wraps on the sphere seam
            assert np.all(du < tol), (kind, ours, theirs)


def test_cylinder_hits_match_mitsuba(mi):
    """Rays at a tilted cylinder (p0, p1, radius) hit where Mitsuba's
    analytic cylinder is hit, with its uv and shading normal (up to the
    128-gon's tessellation), and miss where it misses (open ends)."""
    import jaxrender as jr
    from jaxrender.integrators.interaction import prepare_scene, surface_interaction

    d = {"type": "scene", "c": {"type": "cylinder", "p0": [0.2, 0.1, 0], "p1": [0.5, 1.2, 0.3], "radius": 0.4}}
    ours = prepare_scene(js.load_dict(d))
    theirs = mi.load_dict(to_mitsuba(mi, d))
    rng = np.random.default_rng(0)
    o = rng.normal(size=(200, 3)) * 3
    w = np.array([0.35, 0.65, 0.15]) + rng.normal(size=(200, 3)) * 0.3 - o
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    o32, w32 = jnp.asarray(o, jnp.float32), jnp.asarray(w, jnp.float32)
    si = surface_interaction(ours, jr.intersect(ours.accel, ours.vertices, ours.faces, o32, w32), o32, w32)
    hits = 0
    for k in range(len(o)):
        ref = theirs.ray_intersect(mi.Ray3f(o[k].tolist(), w[k].tolist()))
        assert bool(ref.is_valid()) == bool(si.valid[k]), k
        if not ref.is_valid():
            continue
        hits += 1
        np.testing.assert_allclose(si.p[k], np.array(ref.p), atol=2e-3)
        du = abs(float(si.uv[k, 0]) - np.array(ref.uv)[0])
        assert min(du, 1 - du) < 2e-3 and abs(float(si.uv[k, 1]) - np.array(ref.uv)[1]) < 2e-3
        np.testing.assert_allclose(si.sh_n[k], np.array(ref.sh_frame.n), atol=5e-3)
    assert 50 < hits < 200
    for bad, match in (({"p1": [0.2, 0.1, 0]}, "p0.*p1.*differ"), ({"radius": 0.0}, "radius")):
        with pytest.raises(jr.SceneError, match=match):
            js.load_dict({"type": "scene", "c": dict(d["c"], **bad)})


def test_vertex_normals_function_is_angle_weighted_and_differentiable():
    n = js.vertex_normals(TETRA_V, TETRA_F)
    # Vertex 0: faces with normals +z, +x, +y, each with a 90 degree angle.
    np.testing.assert_allclose(n[0], np.ones(3) / np.sqrt(3), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1, atol=1e-6)
    # Unused vertices get (1, 0, 0) as in Mitsuba; zero-area faces add nothing.
    v = np.concatenate([TETRA_V, [[5, 5, 5]]])
    f = np.concatenate([TETRA_F, [[0, 0, 1]]])
    n2 = js.vertex_normals(v, f)
    np.testing.assert_allclose(n2[:5], n, atol=1e-7)
    np.testing.assert_array_equal(n2[5], [1, 0, 0])
    np.testing.assert_allclose(js.vertex_normals(jnp.asarray(v), f), n2, atol=1e-6)  # jax = numpy
    g = jax.jit(jax.grad(lambda v: jnp.sum(js.vertex_normals(v, f)[:, 2])))(jnp.asarray(v))
    assert np.all(np.isfinite(g))


@needs_mesh_io
def test_ply_without_normals_matches_mitsuba(mi, tmp_path):
    path = write_ply(tmp_path / "t.ply", TETRA_V, TETRA_F)
    sc, n = compare_with_mitsuba(mi, {"type": "scene", "m": {"type": "ply", "filename": path}})
    assert n >= 3 and sc.shapes[0].vertex_normals is not None
    sc, _ = compare_with_mitsuba(mi, {"type": "scene", "m": {"type": "ply", "filename": path, "face_normals": True}})
    assert sc.shapes[0].vertex_normals is None and sc.shapes[0].face_normals


@needs_mesh_io
def test_file_normals_normalized_and_texcoord_flips_match_mitsuba(mi, tmp_path):
    uvs = np.array([[0.1 * i, 0.2 * i] for i in range(5)], np.float32)
    normals = np.tile([0, 0, 2.0], (5, 1))
    ply = write_ply(tmp_path / "n.ply", TETRA_V, TETRA_F, normals=normals, uvs=uvs)
    obj = write_obj(tmp_path / "t.obj", TETRA_V, TETRA_F, uvs=uvs)
    for shape in ({"type": "ply", "filename": ply}, {"type": "ply", "filename": ply, "flip_tex_coords": True},
                  {"type": "obj", "filename": obj}, {"type": "obj", "filename": obj, "flip_tex_coords": False}):
        sc, n = compare_with_mitsuba(mi, {"type": "scene", "m": shape})
        assert n >= 4
    sc = scene(m={"type": "ply", "filename": ply})
    np.testing.assert_allclose(sc.shapes[0].vertex_normals, np.tile([0, 0, 1.0], (5, 1)))
    # A zero normal in a file gets the computed smooth normal instead of NaN.
    normals[1] = 0
    zero = write_ply(tmp_path / "z.ply", TETRA_V, TETRA_F, normals=normals)
    n = scene(m={"type": "ply", "filename": zero}).shapes[0].vertex_normals
    np.testing.assert_allclose(n[1], js.vertex_normals(TETRA_V, TETRA_F)[1], atol=1e-6)
    np.testing.assert_allclose(n[0], [0, 0, 1])
    np.testing.assert_allclose(sc.shapes[0].vertex_texcoords, uvs)  # PLY: as stored
    sc = scene(m={"type": "obj", "filename": obj})
    np.testing.assert_allclose(sc.shapes[0].vertex_texcoords[:, 1], 1 - uvs[:, 1], atol=1e-7)  # OBJ: v flipped


# --------------------------------------------------------------------------
# BSDFs, textures, emitters: types, defaults and values


def test_bsdf_types_and_defaults_by_hand():
    sc = scene(
        a={"type": "diffuse"},
        b={"type": "conductor"},
        c={"type": "roughconductor", "distribution": "ggx", "alpha_u": 0.1, "alpha_v": 0.3, "material": "Au"},
        d={"type": "plastic", "int_ior": "water", "nonlinear": True},
        e={"type": "roughplastic", "alpha": 0.25},
        f={"type": "dielectric"},
        g={"type": "roughdielectric", "alpha": {"type": "rgb", "value": [0.1, 0.2, 0.3]}},
        h={"type": "thindielectric", "ext_ior": 1.2},
        i={"type": "twosided", "x": {"type": "diffuse"}, "y": {"type": "ref", "id": "a"}},
    )
    a, b, c, d, e, f, g, h, i = sc.bsdfs
    assert isinstance(a, js.Diffuse) and float(a.reflectance.value) == 0.5
    assert isinstance(b, js.Conductor)
    assert float(b.eta.value) == 0 and float(b.k.value) == 1 and float(b.specular_reflectance.value) == 1
    assert isinstance(c, js.RoughConductor) and c.distribution == "ggx"
    assert float(c.alpha_u.value) == np.float32(0.1) and float(c.alpha_v.value) == np.float32(0.3)
    np.testing.assert_array_equal(c.eta.value, np.float32(scene_data.CONDUCTORS["Au"][0]))
    assert isinstance(d, js.Plastic) and d.nonlinear and float(d.int_ior) == np.float32(1.333)
    assert float(d.ext_ior) == np.float32(1.000277) and float(d.diffuse_reflectance.value) == 0.5
    assert isinstance(e, js.RoughPlastic) and e.distribution == "beckmann" and float(e.alpha) == 0.25
    assert float(e.int_ior) == np.float32(1.49)
    assert isinstance(f, js.Dielectric) and float(f.int_ior) == np.float32(1.5046)
    assert float(f.specular_transmittance.value) == 1
    assert isinstance(g, js.RoughDielectric) and g.alpha_v is None and g.alpha_u.value.shape == (3,)
    assert isinstance(h, js.ThinDielectric) and float(h.ext_ior) == np.float32(1.2)
    assert isinstance(i, js.TwoSided) and len(i.brdf) == 2 and i.brdf[1] is a
    assert [m.bsdf for m in sc.shapes] == []
    names = set(js.traverse(sc))
    assert {"a.reflectance.value", "c.alpha_u.value", "c.alpha_v.value", "e.alpha", "g.alpha.value",
            "i.brdf_0.reflectance.value", "d.int_ior", "h.ext_ior"} <= names


BSDF_CASES = [
    {"type": "diffuse"},
    {"type": "diffuse", "reflectance": {"type": "rgb", "value": [0.2, 0.3, 0.4]}},
    {"type": "diffuse", "reflectance": {"type": "spectrum", "value": 0.3}},
    {"type": "conductor"},
    {"type": "conductor", "material": "Cu", "specular_reflectance": 0.7},
    {"type": "conductor", "eta": {"type": "rgb", "value": [0.2, 0.9, 1.1]}, "k": 3.0},
    {"type": "roughconductor"},
    {"type": "roughconductor", "distribution": "ggx", "alpha": 0.3, "material": "Al"},
    {"type": "roughconductor", "alpha_u": 0.05, "alpha_v": 0.3, "material": "Ag"},
    {"type": "plastic"},
    {"type": "plastic", "int_ior": "diamond", "ext_ior": "water",
     "diffuse_reflectance": {"type": "rgb", "value": [0.5, 0.1, 0.1]}},
    {"type": "roughplastic"},
    {"type": "roughplastic", "distribution": "ggx", "alpha": 0.4, "int_ior": 1.7},
    {"type": "dielectric"},
    {"type": "dielectric", "int_ior": "water", "ext_ior": 1.1},
    {"type": "roughdielectric"},
    {"type": "roughdielectric", "alpha_u": 0.1, "alpha_v": 0.2, "int_ior": "pet"},
    {"type": "thindielectric"},
    {"type": "thindielectric", "int_ior": 1.7, "specular_transmittance": 0.8},
    {"type": "twosided", "b": {"type": "diffuse", "reflectance": 0.2}},
    {"type": "twosided", "a": {"type": "diffuse"}, "b": {"type": "conductor", "material": "Au"}},
]


@pytest.mark.parametrize("bsdf", BSDF_CASES, ids=lambda b: b["type"] + str(len(b)))
def test_bsdfs_match_mitsuba(mi, bsdf):
    d = {"type": "scene", "s": {"type": "rectangle", "bsdf": copy.deepcopy(bsdf)}}
    _, n = compare_with_mitsuba(mi, d)
    assert n >= 2


def test_every_conductor_and_ior_preset_matches_mitsuba(mi):
    for name in ["none"] + list(scene_data.CONDUCTORS):
        obj = mi.load_dict({"type": "conductor", "material": name})
        p = mi.traverse(obj)
        b = scene(m={"type": "conductor", "material": name}).bsdfs[0]
        np.testing.assert_array_equal(b.eta.value, np.asarray(p["eta.value"], np.float32), err_msg=name)
        np.testing.assert_array_equal(b.k.value, np.asarray(p["k.value"], np.float32), err_msg=name)
    for name in scene_data.IOR:
        obj = mi.load_dict({"type": "dielectric", "int_ior": name.upper(), "ext_ior": 1.0})
        p = mi.traverse(obj)
        b = scene(m={"type": "dielectric", "int_ior": name.upper(), "ext_ior": 1.0}).bsdfs[0]
        assert np.float32(b.int_ior) == np.float32(p["eta"]), name


def test_textures():
    img = np.random.default_rng(0).random((4, 6, 3)).astype(np.float32)
    to_uv = np.asarray(js.translate([0.5, 0.25, 0.7]) @ js.scale([2, 3, 4]))
    sc = scene(
        b={"type": "diffuse", "reflectance": {"type": "bitmap", "data": img, "filter_type": "nearest",
                                              "wrap_mode": "clamp", "to_uv": to_uv}},
        c={"type": "diffuse", "reflectance": {"type": "checkerboard", "color0": {"type": "rgb", "value": [1, 0, 0]}}},
        g={"type": "roughconductor", "alpha": {"type": "bitmap", "data": img[..., 0]}},
    )
    b, c, g = (x.reflectance if hasattr(x, "reflectance") else x.alpha_u for x in sc.bsdfs)
    assert isinstance(b, js.BitmapTexture) and b.filter_type == "nearest" and b.wrap_mode == "clamp"
    np.testing.assert_array_equal(b.data, img)
    # A 4x4 to_uv keeps rows/columns x, y and the translation, as Mitsuba.
    np.testing.assert_allclose(b.to_uv, [[2, 0, 0.5], [0, 3, 0.25], [0, 0, 1]])
    assert isinstance(c, js.CheckerboardTexture)
    np.testing.assert_array_equal(c.color0, [1, 0, 0])
    assert float(c.color1) == np.float32(0.2)
    np.testing.assert_array_equal(c.to_uv, np.eye(3))
    assert g.data.shape == (4, 6, 1)
    names = js.traverse(sc)
    assert {"b.reflectance.data", "b.reflectance.to_uv", "c.reflectance.color0.value",
            "c.reflectance.color1.value", "g.alpha.data"} <= set(names)


def test_textures_match_mitsuba(mi):
    img = np.random.default_rng(0).random((4, 6, 3)).astype(np.float32)
    to_uv = np.asarray(js.rotate([0, 0, 1], 30.0) @ js.translate([0.5, 0.25, 0]))
    for tex in ({"type": "bitmap", "data": img, "to_uv": to_uv},
                {"type": "checkerboard", "to_uv": to_uv},
                {"type": "checkerboard", "color0": {"type": "rgb", "value": [0.3, 0.2, 0.1]}, "color1": 0.7}):
        _, n = compare_with_mitsuba(mi, {"type": "scene", "s": {"type": "rectangle", "bsdf": {
            "type": "diffuse", "reflectance": tex}}})
        assert n >= 3


@needs_image_io
def test_bitmap_files_are_decoded_like_mitsuba(mi, tmp_path):
    img = (np.random.default_rng(2).random((3, 5, 3)) * 255).astype(np.uint8)
    path = str(tmp_path / "t.png")
    mi.Bitmap(img).write(path)
    for raw in (False, True):
        d = {"type": "scene", "s": {"type": "rectangle", "bsdf": {
            "type": "diffuse", "reflectance": {"type": "bitmap", "filename": path, "raw": raw}}}}
        ours = js.traverse(js.load_dict(d))["s.bsdf.reflectance.data"]
        obj = mi.load_dict(d)
        # Mitsuba keeps 8-bit data as 0..255 and decodes sRGB at lookup time.
        theirs = np.array(mi.traverse(obj)["s.bsdf.reflectance.data"], np.float64) / 255.0
        if not raw:
            theirs = np.where(theirs <= 0.04045, theirs / 12.92, ((theirs + 0.055) / 1.055) ** 2.4)
        np.testing.assert_allclose(ours, theirs, atol=2e-6)


def test_emitters_by_hand():
    sc = scene(
        light={"type": "rectangle", "emitter": {"type": "area", "radiance": {"type": "rgb", "value": [1, 2, 3]}}},
        p={"type": "point", "position": [1, 2, 3], "intensity": 5.0},
        q={"type": "point", "to_world": np.asarray(js.translate([4, 5, 6]))},
        s={"type": "spot", "cutoff_angle": 40.0},
        d={"type": "directional", "direction": [0, 0, -2], "irradiance": {"type": "rgb", "value": [1, 1, 0.5]}},
        c={"type": "constant"},
        e={"type": "envmap", "data": np.ones((4, 8, 3)), "scale": 2.0},
    )
    area, p, q, s, d, c, e = sc.emitters
    assert isinstance(area, js.AreaLight) and area.shape == 0 and sc.shapes[0].emitter == 0
    np.testing.assert_array_equal(area.radiance.value, [1, 2, 3])
    # An area light without a BSDF gets a black diffuse, as in Mitsuba.
    assert float(sc.bsdfs[sc.shapes[0].bsdf].reflectance.value) == 0
    assert isinstance(p, js.PointLight)
    np.testing.assert_array_equal(p.position, [1, 2, 3])
    np.testing.assert_array_equal(p.intensity.value, [5, 5, 5])  # a float on an emitter is a gray rgb
    np.testing.assert_array_equal(q.position, [4, 5, 6])
    assert float(q.intensity.value) == 1  # the default stays a float, as in Mitsuba
    assert isinstance(s, js.SpotLight) and float(s.cutoff_angle) == 40 and float(s.beam_width) == 30
    assert isinstance(d, js.DirectionalLight)
    np.testing.assert_allclose(js.transform_vectors(d.to_world, jnp.array([0.0, 0, 1])), [0, 0, -1], atol=1e-7)
    assert isinstance(c, js.ConstantEmitter) and float(c.radiance.value) == 1
    assert isinstance(e, js.EnvironmentMap) and e.data.shape == (4, 8, 3) and float(e.scale) == 2
    names = set(js.traverse(sc))
    assert {"light.emitter.radiance.value", "p.position", "s.cutoff_angle", "s.beam_width", "s.to_world",
            "d.irradiance.value", "d.to_world", "c.radiance.value", "e.data", "e.scale", "e.to_world"} <= names


EMITTER_CASES = [
    {"type": "point"},
    {"type": "point", "position": [1, 2, 3], "intensity": {"type": "rgb", "value": [1, 2, 3]}},
    {"type": "point", "to_world": np.asarray(js.translate([4, 5, 6])), "intensity": 3.0},
    {"type": "spot"},
    {"type": "spot", "cutoff_angle": 30.0, "beam_width": 10.0, "intensity": {"type": "spectrum", "value": 2.0},
     "to_world": np.asarray(js.look_at([1, 2, 3], [0, 0, 0], [0, 1, 0]))},
    {"type": "directional"},
    {"type": "directional", "direction": [1, 2, 3]},
    {"type": "directional", "direction": [0, 0, -1], "irradiance": 2.0},
    {"type": "directional", "direction": [-1, 0, 0]},
    {"type": "constant"},
    {"type": "constant", "radiance": {"type": "spectrum", "value": 2.0}},
    {"type": "constant", "radiance": {"type": "uniform", "value": 2.0}},
    {"type": "envmap", "data": np.random.default_rng(1).random((3, 5, 3))},
    {"type": "envmap", "data": np.random.default_rng(0).random((4, 6, 3)), "scale": 0.5,
     "to_world": np.asarray(js.rotate([0, 1, 0], 90.0))},
]


@pytest.mark.parametrize("emitter", EMITTER_CASES, ids=lambda e: e["type"] + str(len(e)))
def test_emitters_match_mitsuba(mi, emitter):
    _, n = compare_with_mitsuba(mi, {"type": "scene", "e": copy.deepcopy(emitter)})
    assert n >= 1


def test_area_light_spectra_match_mitsuba(mi):
    for radiance in (None, 10.0, {"type": "spectrum", "value": 10.0}, {"type": "rgb", "value": [1, 2, 3]}):
        emitter = {"type": "area"} if radiance is None else {"type": "area", "radiance": radiance}
        sc, n = compare_with_mitsuba(mi, {"type": "scene", "light": {"type": "disk", "emitter": emitter}})
        assert n >= 3
    np.testing.assert_allclose(sc.emitters[0].radiance.value, [1, 2, 3])
    # The equal-energy white: Mitsuba's RGB for a uniform emitted spectrum.
    radiance = {"type": "spectrum", "value": 2.0}
    e = scene(l={"type": "disk", "emitter": {"type": "area", "radiance": radiance}}).emitters[0]
    np.testing.assert_allclose(e.radiance.value, 2 * np.asarray(scene_data.EQUAL_ENERGY_RGB), rtol=1e-6)


# --------------------------------------------------------------------------
# Sensors, films, samplers, integrators


def test_sensor_defaults_and_film():
    cam = scene(c={"type": "perspective"}).sensors[0]
    assert cam.film == js.Film(768, 576, js.ReconstructionFilter("box", 0.5))  # box, as DESIGN.md says
    assert cam.fov_axis == "diagonal"  # Mitsuba's default is a 50 mm focal length
    np.testing.assert_allclose(cam.fov, math.degrees(2 * math.atan(math.hypot(36, 24) / 100)), rtol=1e-6)
    np.testing.assert_allclose(cam.x_fov, 38.18484, rtol=1e-6)
    assert (cam.near_clip, cam.far_clip, cam.sample_count) == (0.01, 10000.0, 4)
    np.testing.assert_array_equal(cam.to_world, np.eye(4))
    cam = scene(c={"type": "perspective", "fov": 30.0, "fov_axis": "y", "near_clip": 0.5, "far_clip": 50.0,
                   "to_world": np.asarray(js.translate([1, 2, 3])),
                   "film": {"type": "hdrfilm", "width": 64, "height": 32,
                            "rfilter": {"type": "gaussian", "stddev": 0.25}},
                   "sampler": {"type": "independent", "sample_count": 16}}).sensors[0]
    assert cam.film == js.Film(64, 32, js.ReconstructionFilter("gaussian", 1.0, 0.25))
    assert (cam.fov_axis, cam.near_clip, cam.far_clip, cam.sample_count, cam.id) == ("y", 0.5, 50.0, 16, "c")
    np.testing.assert_allclose(cam.x_fov, math.degrees(2 * math.atan(math.tan(math.radians(15)) * 2)), rtol=1e-6)
    tent = scene(c={"type": "perspective", "film": {"type": "hdrfilm", "rfilter": {"type": "tent"}}}).sensors[0]
    assert tent.film.rfilter == js.ReconstructionFilter("tent", 1.0)
    names = js.traverse(scene(c={"type": "perspective"}, _d={"type": "perspective"}))
    assert set(names) == {"c.to_world", "c.fov", "Sensor[1].to_world", "Sensor[1].fov"}


def test_box_filter_is_the_default():
    """DESIGN.md: a box reconstruction filter unless the scene says otherwise.
    Mitsuba's hdrfilm defaults to a gaussian (stddev 0.5); we do not follow it
    there, on purpose (tests/data/scenes/README.md)."""
    box = js.ReconstructionFilter("box", 0.5)
    assert js.Film().rfilter == box and js.ReconstructionFilter() == box
    assert scene(c={"type": "perspective"}).sensors[0].film.rfilter == box  # no film
    film = scene(c={"type": "perspective", "film": {"type": "hdrfilm", "width": 8}}).sensors[0].film
    assert film.rfilter == box  # a film without rfilter
    rfilter = scene(c={"type": "perspective", "film": {"type": "hdrfilm", "rfilter": {"type": "box"}}})
    assert rfilter.sensors[0].film.rfilter == box  # box's own default radius


@needs_xml_io
def test_box_filter_default_where_mitsuba_uses_a_gaussian():
    from jaxrender.io import parse_xml

    path = "tests/data/scenes/plugins_v3_c.xml"
    want = _expected()[path]["sensors"]["cam_larger"]["film"]
    assert want["rfilter"] == "GaussianFilter"  # Mitsuba's default ...
    cams = {c.id: c for c in js.load_dict(parse_xml(os.path.join(ROOT, path))).sensors}
    assert cams["cam_larger"].film.rfilter == js.ReconstructionFilter("box", 0.5)  # ... and ours
    assert [cams["cam_larger"].film.width, cams["cam_larger"].film.height] == want["size"]


def test_sensor_defaults_match_mitsuba(mi):
    _, n = compare_with_mitsuba(mi, {"type": "scene", "c": {"type": "perspective"}})
    assert n >= 5  # near/far clip, x_fov, film size, to_world


@pytest.mark.parametrize("kw", [{}, {"fov": 45.0}, {"fov": 45.0, "fov_axis": "y"},
                                {"fov": 45.0, "fov_axis": "diagonal"},
                                {"fov": 45.0, "fov_axis": "smaller"}, {"fov": 45.0, "fov_axis": "larger"},
                                {"focal_length": "35mm"}], ids=str)
def test_fov_matches_mitsuba(mi, kw):
    for w, h in ((64, 48), (48, 64)):
        d = {"type": "scene", "c": {"type": "perspective", "film": {"type": "hdrfilm", "width": w, "height": h}, **kw}}
        _, n = compare_with_mitsuba(mi, d)
        assert n >= 4


def test_camera_rays_match_mitsuba(mi):
    to_world = np.asarray(js.look_at([1, 2, 3], [0, 0.5, 0], [0, 1, 0.2]) @ js.scale([-1, 1, 1]))
    for fov_axis, (w, h) in (("x", (8, 6)), ("y", (5, 7)), ("diagonal", (6, 6))):
        d = {"type": "perspective", "fov": 50.0, "fov_axis": fov_axis, "near_clip": 0.5, "far_clip": 100.0,
             "to_world": to_world, "film": {"type": "hdrfilm", "width": w, "height": h}}
        cam = scene(c=d).sensors[0]
        sensor = mi.load_dict(to_mitsuba(mi, d))
        samples = np.random.default_rng(3).random((h, w, 2)).astype(np.float32)
        o, dirs = jax.jit(js.camera_rays)(cam, samples)
        assert o.shape == dirs.shape == (h, w, 3)
        for i, j in ((0, 0), (h - 1, w - 1), (h // 2, w // 3), (1, w - 2)):
            pos = ((j + samples[i, j, 0]) / w, (i + samples[i, j, 1]) / h)
            ray, _ = sensor.sample_ray(0.0, 0.5, mi.Point2f(*pos), mi.Point2f(0.5, 0.5))
            np.testing.assert_allclose(dirs[i, j], np.array(ray.d), atol=1e-6)
            np.testing.assert_allclose(o[i, j], np.array(ray.o), atol=1e-5)
    # Pixel centres of a default camera: the middle ray looks along +z.
    cam = scene(c={"type": "perspective", "fov": 90.0, "film": {"type": "hdrfilm", "width": 2, "height": 2}}).sensors[0]
    _, dirs = js.camera_rays(cam, np.full((2, 2, 2), 0.5))
    # (0, 0) is top-left: +y (up) and +x (camera x is image left).
    assert dirs[0, 0, 0] > 0 and dirs[0, 0, 1] > 0 and dirs[1, 1, 0] < 0 and dirs[1, 1, 1] < 0
    o, dirs = js.sample_ray(cam, jnp.array([0.5, 0.5]))
    np.testing.assert_allclose(dirs, [0, 0, 1], atol=1e-7)
    np.testing.assert_allclose(o, [0, 0, 0.01], atol=1e-7)
    with pytest.raises(ValueError, match=r"\(\.\.\., 2, 2, 2\)"):
        js.camera_rays(cam, np.zeros((3, 2, 2)))


def test_camera_rays_differentiable_in_pose_and_fov():
    cam = scene(c={"type": "perspective", "fov": 40.0, "film": {"type": "hdrfilm", "width": 4, "height": 3}}).sensors[0]
    samples = jnp.full((3, 4, 2), 0.25)

    def f(fov, to_world):
        c = cam.replace(fov=fov, to_world=to_world)
        o, d = js.camera_rays(c, samples)
        return jnp.sum(d[..., 0] * jnp.arange(4.0)) + jnp.sum(o)

    f = jax.jit(f)
    g_fov, g_tw = jax.jit(jax.grad(f, argnums=(0, 1)))(cam.fov, cam.to_world)
    eps = 1e-2
    fd = (f(cam.fov + eps, cam.to_world) - f(cam.fov - eps, cam.to_world)) / (2 * eps)
    np.testing.assert_allclose(g_fov, fd, rtol=1e-2)
    assert np.all(np.isfinite(g_tw)) and float(jnp.abs(g_tw).sum()) > 0


def test_integrator_and_sampler_configs():
    assert scene().integrator == js.IntegratorConfig("path", -1, 5, False, 1, 1, "")
    assert scene(i={"type": "path", "max_depth": 8, "rr_depth": 2, "hide_emitters": True}).integrator == \
        js.IntegratorConfig("path", 8, 2, True)
    assert scene(i={"type": "prb", "max_depth": 3}).integrator.type == "path"
    cfg = scene(i={"type": "direct", "shading_samples": 3, "bsdf_samples": 2}).integrator
    assert (cfg.type, cfg.emitter_samples, cfg.bsdf_samples) == ("direct", 3, 2)
    cfg = scene(i={"type": "aov", "aovs": "dd:depth,nn:sh_normal", "inner": {"type": "path"}}).integrator
    assert cfg.type == "aov" and cfg.aov_list == (("dd", "depth"), ("nn", "sh_normal"))
    assert cfg.nested == js.IntegratorConfig("path")
    assert scene().sensors == ()
    with pytest.warns(UserWarning, match="stratified"):
        cam = scene(c={"type": "perspective", "sampler": {"type": "stratified", "sample_count": 9}}).sensors[0]
    assert cam.sample_count == 9


def test_integrator_defaults_match_mitsuba(mi):
    for d, ours in (({"type": "path"}, {"max_depth": -1, "rr_depth": 5}),
                    ({"type": "direct", "shading_samples": 3}, {"emitter_samples": 3, "bsdf_samples": 3})):
        theirs = str(mi.load_dict(d))
        cfg = scene(i=d).integrator
        for k, v in ours.items():
            assert getattr(cfg, k) == v
            mitsuba_v = 2**32 - 1 if v == -1 else v
            assert f"{k} = {mitsuba_v}" in theirs
    assert mi.load_dict({"type": "independent"}).sample_count() == scene(
        c={"type": "perspective"}).sensors[0].sample_count


# --------------------------------------------------------------------------
# Ids, references and parameter names


def test_ids_refs_and_names():
    d = {
        "type": "scene",
        "white": {"type": "diffuse", "reflectance": {"type": "rgb", "value": [0.7, 0.7, 0.7]}},
        "tex": {"type": "bitmap", "data": np.ones((2, 2, 3))},
        "floor": {"type": "rectangle", "ref_0": {"type": "ref", "id": "white"}},
        "_anon": {"type": "cube", "bsdf": {"type": "diffuse", "reflectance": {"type": "ref", "id": "tex"}}},
        "wall": {"type": "disk", "bsdf": {"type": "diffuse", "id": "wall_bsdf", "reflectance": 0.3}},
        "light": {"type": "sphere", "emitter": {"type": "area", "id": "light_emitter"}},
        "both": {"type": "twosided", "a": {"type": "ref", "id": "white"}, "b": {"type": "diffuse"}},
        "x": {"type": "rectangle", "bsdf": {"type": "ref", "id": "both"}},
        "late": {"type": "rectangle", "bsdf": {"type": "ref", "id": "defined_later"}},
        "defined_later": {"type": "conductor"},
    }
    sc = js.load_dict(d)
    # BSDFs in document order, whatever order the references came in.
    assert [b.id for b in sc.bsdfs] == ["white", None, "wall.bsdf", "light.bsdf", "both", "defined_later"]
    ids = [type(b).__name__ for b in sc.bsdfs]
    assert ids == ["Diffuse", "Diffuse", "Diffuse", "Diffuse", "TwoSided", "Conductor"]
    assert sc.ids["white"] == ("bsdfs", 0) and sc.ids["both"] == ("bsdfs", 4)
    assert sc.ids["defined_later"] == ("bsdfs", 5) and sc.ids["wall_bsdf"] == ("bsdfs", 2)
    assert sc.ids["floor"] == ("shapes", 0) and sc.ids["light_emitter"] == ("emitters", 0)
    assert "_anon" not in sc.ids
    assert [m.bsdf for m in sc.shapes] == [0, 1, 2, 3, 4, 5]
    assert sc.bsdfs[4].brdf[0] is sc.bsdfs[0]
    names = js.traverse(sc)
    expected = {
        "white.reflectance.value", "floor.to_world", "Mesh[1].to_world", "Mesh[1].vertex_positions",
        "tex.data", "tex.to_uv",  # a root texture keeps its id wherever it is used
        "wall.bsdf.reflectance.value",  # nested: named by the parent, as Mitsuba (not wall_bsdf)
        "light.emitter.radiance.value", "light.bsdf.reflectance.value",
        "both.brdf_1.reflectance.value", "defined_later.eta.value",
    }
    assert expected <= set(names), expected - set(names)
    assert not any(n.startswith(("wall_bsdf", "light_emitter", "both.brdf_0")) for n in names)


def test_positional_names():
    sc = js.load_dict({"type": "scene",
                       "_a": {"type": "rectangle", "bsdf": {"type": "diffuse"},
                              "emitter": {"type": "area"}},
                       "_b": {"type": "cube"},
                       "_c": {"type": "point"},
                       "_d": {"type": "diffuse", "reflectance": {"type": "checkerboard"}},
                       "_e": {"type": "perspective"}})
    names = set(js.traverse(sc))
    assert {"Mesh[0].vertex_positions", "Mesh[0].to_world", "Mesh[1].vertex_normals", "BSDF[0].reflectance.value",
            "BSDF[1].reflectance.value", "BSDF[2].reflectance.color0.value", "BSDF[2].reflectance.to_uv",
            "Emitter[0].radiance.value", "Emitter[1].position", "Sensor[0].to_world", "Sensor[0].fov"} <= names
    # Objects converted from XML name themselves only by an explicit id.
    sc = js.load_dict({"type": "scene", "shape_0": {"type": "rectangle", "__source__": "a.xml:3", "__tag__": "shape"}})
    assert "Mesh[0].to_world" in js.traverse(sc)


# --------------------------------------------------------------------------
# traverse / replace


def _small_scene():
    return scene(
        mesh={"type": "cube"},
        red={"type": "diffuse", "reflectance": {"type": "rgb", "value": [0.8, 0.1, 0.1]}},
        tex={"type": "bitmap", "data": np.full((2, 3, 3), 0.5)},
        a={"type": "rectangle", "bsdf": {"type": "diffuse", "reflectance": {"type": "ref", "id": "tex"}}},
        b={"type": "rectangle", "bsdf": {"type": "roughconductor", "alpha": {"type": "ref", "id": "tex"}}},
        env={"type": "envmap", "data": np.ones((4, 8, 3))},
        cam={"type": "perspective", "fov": 40.0},
    )


def test_traverse_returns_the_leaves():
    sc = _small_scene()
    params = js.traverse(sc)
    assert params["mesh.vertex_positions"] is sc.shapes[0].vertex_positions
    assert params["red.reflectance.value"] is sc.bsdfs[1].reflectance.value
    assert params["cam.fov"] is sc.sensors[0].fov
    assert all(v.dtype == jnp.float32 for v in params.values())
    # Every leaf of the scene has a name (the texture shared by two BSDFs is one object).
    assert {id(x) for x in jax.tree_util.tree_leaves(sc)} == {id(x) for x in params.values()}
    with pytest.raises(TypeError):
        js.traverse({"not": "a scene"})


def test_replace_values_and_sharing():
    sc = _small_scene()
    new = js.replace(sc, {"red.reflectance.value": [0.1, 0.2, 0.3], "cam.fov": 55.0,
                          "tex.data": np.zeros((5, 7, 3), np.float32)})  # textures may change resolution
    np.testing.assert_allclose(new.bsdfs[1].reflectance.value, [0.1, 0.2, 0.3], rtol=1e-7)
    assert float(new.sensors[0].fov) == 55.0
    # The shared texture is replaced everywhere it is used.
    assert new.bsdfs[2].reflectance.data.shape == (5, 7, 3) and new.bsdfs[3].alpha_u.data.shape == (5, 7, 3)
    # The original is untouched.
    assert float(sc.sensors[0].fov) == 40.0 and sc.bsdfs[2].reflectance.data.shape == (2, 3, 3)
    assert js.traverse(new).keys() == js.traverse(sc).keys()


def test_colliding_parameter_names_are_rejected_at_load():
    from jaxrender.io import SceneError

    # An id spelling a positional name, an id spelling a nested BSDF's name
    # or a default BSDF's name: one name would stand for two objects and
    # `replace` would change both. Used to load silently.
    cases = [
        ({"a": {"type": "cube", "__source__": "s.xml:2"},
          "b": {"type": "rectangle", "id": "Mesh[0]", "__source__": "s.xml:3"}},
         r'"Mesh\[0\]\.vertex_positions" would stand for two objects: cube \(s\.xml:2\) and '
         r'rectangle "Mesh\[0\]" \(s\.xml:3\)'),
        ({"a": {"type": "diffuse", "id": "x.bsdf", "__source__": "s.xml:2"},
          "b": {"type": "cube", "id": "x", "__source__": "s.xml:3",
                "bsdf": {"type": "diffuse", "__source__": "s.xml:4"}}},
         r'"x\.bsdf\.reflectance\.value" would stand for two objects: diffuse "x\.bsdf" \(s\.xml:2\) and '
         r"diffuse \(s\.xml:4\)"),
        ({"a": {"type": "diffuse", "id": "x.bsdf", "__source__": "s.xml:2"},
          "b": {"type": "cube", "id": "x", "__source__": "s.xml:3"}},
         r'"x\.bsdf\.reflectance\.value" would stand for two objects: diffuse "x\.bsdf" \(s\.xml:2\) and '
         r'the default BSDF of cube "x" \(s\.xml:3\)'),
        # Hand-written dicts: root keys are ids.
        ({"s": {"type": "cube"}, "s.bsdf": {"type": "diffuse"}}, r'"s\.bsdf\.reflectance\.value"'),
        ({"red": {"type": "diffuse", "reflectance": {"type": "checkerboard"}},
          "red.reflectance": {"type": "checkerboard"},
          "b": {"type": "diffuse", "reflectance": {"type": "ref", "id": "red.reflectance"}}},
         r'"red\.reflectance\.color0\.value" would stand for two objects: checkerboard and checkerboard '
         r'"red\.reflectance"'),
    ]
    for objects, pattern in cases:
        with pytest.raises(SceneError, match=pattern):
            scene(**objects)
    # One shared object under one name is not a collision; ids with dots
    # or brackets that spell nothing else are fine.
    sc = scene(t={"type": "checkerboard"},
               **{"mat.001": {"type": "diffuse", "reflectance": {"type": "ref", "id": "t"}}},
               b={"type": "twosided", "inner": {"type": "ref", "id": "mat.001"}},
               s1={"type": "cube", "bsdf": {"type": "ref", "id": "b"}},
               s2={"type": "cube", "bsdf": {"type": "ref", "id": "b"}},
               **{"Mesh[7]": {"type": "cube"}})
    names = js.traverse(sc)
    assert "t.color0.value" in names and "Mesh[7].to_world" in names and "s1.to_world" in names
    out = js.replace(sc, {"t.color0.value": jnp.float32(0.9)})
    assert float(out.bsdfs[0].reflectance.color0) == pytest.approx(0.9)
    assert float(out.bsdfs[1].brdf[0].reflectance.color0) == pytest.approx(0.9)


def test_replace_positions_recomputes_normals():
    sc = _small_scene()
    v = np.asarray(sc.shapes[0].vertex_positions) * np.array([1, 2, 3], np.float32)
    v[0] += 0.3
    new = js.replace(sc, {"mesh.vertex_positions": v})
    np.testing.assert_allclose(new.shapes[0].vertex_normals, js.vertex_normals(v, sc.shapes[0].faces.array), atol=1e-6)
    assert not np.allclose(new.shapes[0].vertex_normals, sc.shapes[0].vertex_normals)
    n = np.tile(np.array([0, 0, 1], np.float32), (24, 1))
    new = js.replace(sc, {"mesh.vertex_positions": v, "mesh.vertex_normals": n})
    np.testing.assert_array_equal(new.shapes[0].vertex_normals, n)


@needs_mesh_io
def test_replace_positions_recomputes_normals_like_mitsuba_update(mi, tmp_path):
    path = write_ply(tmp_path / "t.ply", TETRA_V, TETRA_F)
    d = {"type": "scene", "m": {"type": "ply", "filename": path}}
    v = TETRA_V.copy()
    v[0, 2] = 0.3
    ours = js.replace(js.load_dict(d), {"m.vertex_positions": v}).shapes[0].vertex_normals
    mscene = mi.load_dict(d)
    p = mi.traverse(mscene)
    p["m.vertex_positions"] = type(p["m.vertex_positions"])(v.ravel())
    p.update()
    np.testing.assert_allclose(ours, np.asarray(p["m.vertex_normals"]).reshape(-1, 3), atol=1e-6)


def test_replace_errors():
    sc = _small_scene()
    with pytest.raises(ValueError, match=r'"red.reflectance.value" has shape \(3,\).*got \(2,\)'):
        js.replace(sc, {"red.reflectance.value": [0.1, 0.2]})
    with pytest.raises(ValueError, match=r'"mesh.to_world" has shape \(4, 4\).*got \(3, 3\)'):
        js.replace(sc, {"mesh.to_world": np.eye(3)})
    with pytest.raises(ValueError, match=r'"tex.data".*\(H, W, 3\).*\(2, 2, 4\)'):
        js.replace(sc, {"tex.data": np.zeros((2, 2, 4))})
    with pytest.raises(TypeError, match='"cam.fov".*int32'):
        js.replace(sc, {"cam.fov": np.int32(3)})
    with pytest.raises(TypeError, match='"cam.fov".*bool'):
        js.replace(sc, {"cam.fov": True})
    with pytest.raises(ValueError, match=r"'red.reflectance.valu'.*close: red.reflectance.value"):
        js.replace(sc, {"red.reflectance.valu": [0.1, 0.2, 0.3]})
    with pytest.raises(ValueError, match=r"'camera.fov'.*cam.fov"):
        js.replace(sc, {"camera.fov": 1.0})


def test_replace_refuses_what_the_loader_refuses_in_cameras_and_transforms():
    """A field of view outside (0, 180) and a singular to_world would give a
    black or flipped image, or a shape gone, without a word; outside jit,
    replace refuses them as the loader does. Materials are not range-checked
    (optimizers step past bounds that users clip to)."""
    sc = _small_scene()
    for fov in (0.0, 180.0, -40.0, 400.0):
        with pytest.raises(ValueError, match=r'"cam.fov" must be in \(0, 180\) degrees'):
            js.replace(sc, {"cam.fov": fov})
    for m in (np.zeros((4, 4)), np.diag([1.0, 1.0, 0.0, 1.0]),
              np.array([[1, 1, 0, 0], [0, 1e-9, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])):  # sheared flat
        with pytest.raises(ValueError, match=r'"mesh.to_world" is singular'):
            js.replace(sc, {"mesh.to_world": m})
    # Tiny but well-shaped is fine, and so are traced values (unchecked).
    assert js.replace(sc, {"mesh.to_world": np.diag([1e-9, 1e-9, 1e-9, 1.0]), "cam.fov": 179.0})
    assert jax.jit(lambda f: js.replace(sc, {"cam.fov": f}).sensors[0].fov)(0.0) == 0.0
    assert js.replace(sc, {"red.reflectance.value": [-0.5, 1.5, 0.2]})


def test_texture_bounds():
    """A reflectance's bounds hold for its checkerboard's colours (an error
    naming the line); a bitmap's negative texels under a reflectance or an
    emitter, and an environment map's, are raised to 0 with a warning naming
    the line (image files carry small negative values from resampling, which
    Mitsuba keeps; HDR texels above 1 are kept, as Mitsuba keeps them), and
    a texture shared by two BSDFs stays one parameter; blendbsdf weights and
    mask opacities lie in [0, 1]."""
    src = {"__source__": "t.xml:4"}
    checker = {"type": "checkerboard", "color0": {"type": "rgb", "value": [-5, -5, -5]}}
    _raises({"type": "scene", "b": {"type": "diffuse", "reflectance": checker, **src}},
            r"checkerboard's color0\) must be in \[0.0, 1.0\]", r"t\.xml:4")
    data = np.full((2, 2, 3), 0.5)
    data[0, 1] = [-0.25, 1.5, 0.5]
    with pytest.warns(UserWarning, match=r"t\.xml:4.*1 texel value\(s\) below 0.0 \(min -0.25\) raised to 0.0"):
        s = scene(tex={"type": "bitmap", "data": data},
                  a={"type": "diffuse", "reflectance": {"type": "ref", "id": "tex"}, **src},
                  b={"type": "diffuse", "reflectance": {"type": "ref", "id": "tex"}, **src})
    texels = np.asarray(s.bsdfs[0].reflectance.data)
    assert texels.min() == 0.0 and texels[0, 1, 1] == 1.5 and s.bsdfs[1].reflectance is s.bsdfs[0].reflectance
    assert "tex.data" in js.traverse(s)
    with pytest.warns(UserWarning, match=r"t\.xml:4.*24 texel value\(s\) below 0.0 \(min -5\)"):
        s = scene(e={"type": "envmap", "data": np.full((2, 4, 3), -5.0), **src})
    assert np.asarray(s.emitters[0].data).max() == 0.0
    assert scene(b={"type": "diffuse", "reflectance": {"type": "checkerboard", "color0": 0.9}})
    _raises({"type": "scene", "b": {"type": "blendbsdf", "weight": -3.0, "a": {"type": "diffuse"},
                                    "c": {"type": "diffuse"}, **src}}, r'"weight" must be in \[0.0, 1.0\]')
    _raises({"type": "scene", "b": {"type": "mask", "opacity": 5.0, "a": {"type": "diffuse"}, **src}},
            r'"opacity" must be in \[0.0, 1.0\]', r"t\.xml:4")


def test_transforms_that_overflow_float32_are_refused():
    """Each matrix, and the products the loader forms (instances, a sphere's
    radius), must fit in float32 with their inverses: otherwise the shape
    would vanish from the image."""
    for m in (np.diag([1e39, 1, 1, 1]), np.diag([1e-39, 1e-39, 1e-39, 1])):
        _raises({"type": "scene", "c": {"type": "cube", "to_world": m, "__source__": "o.xml:3"}},
                r'"to_world" does not fit in float32', r"o\.xml:3")
    _raises({"type": "scene", "c": {"type": "sphere", "radius": 1e30, "to_world": np.diag([1e30, 1e30, 1e30, 1]),
                                    "__source__": "o.xml:5"}}, r'"to_world" does not fit in float32', r"o\.xml:5")
    assert scene(c={"type": "cube", "to_world": np.diag([1e15, 1e15, 1e15, 1])})


def test_dict_keys_must_be_strings():
    _raises({"type": "scene", 5: {"type": "cube"}}, r"the scene dict has a key that is not a string: int 5")
    _raises({"type": "scene", "c": {"type": "cube", ("a",): 1}}, r'"c" has a key that is not a string: tuple')


def test_replace_and_traverse_under_jit_and_grad():
    sc = _small_scene()

    def loss(x, sc):
        new = js.replace(sc, {"red.reflectance.value": x,
                              "mesh.vertex_positions": sc.shapes[0].vertex_positions * x[0]})
        p = js.traverse(new)
        return jnp.sum(p["red.reflectance.value"] ** 2) + jnp.sum(p["mesh.vertex_normals"][:, 0]) + \
            jnp.sum(p["mesh.vertex_positions"])

    x = jnp.array([0.5, 0.25, 1.0])
    g = jax.jit(jax.grad(loss))(x, sc)
    # d/dx of sum x^2 is 2x; positions scale with x0 (normals of a scaled cube do not change).
    expected = 2 * x + jnp.array([float(jnp.sum(sc.shapes[0].vertex_positions)), 0, 0])
    np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-5)
    jvp = jax.jvp(lambda x: loss(x, sc), (x,), (jnp.array([0.0, 1.0, 0.0]),))[1]
    np.testing.assert_allclose(jvp, 0.5, rtol=1e-6)
    # A scene passed through jit keeps working with traverse/replace.
    out = jax.jit(lambda sc, f: js.traverse(js.replace(sc, {"cam.fov": f}))["cam.fov"])(sc, 12.0)
    assert float(out) == 12.0
    # Concrete values closed over by the jit are still checked, not traced
    # (bool() of a traced check was an error).
    red, fov = jnp.array([0.2, 0.3, 0.4]), jnp.float32(30.0)
    out = jax.jit(lambda: js.traverse(js.replace(sc, {"red.reflectance.value": red, "cam.fov": fov})))()
    assert float(out["cam.fov"]) == 30.0 and np.allclose(out["red.reflectance.value"], red)
    bad = jnp.array([0.2, np.nan, 0.4])
    with pytest.raises(ValueError, match="non-finite"):
        jax.jit(lambda: js.replace(sc, {"red.reflectance.value": bad}))()


# --------------------------------------------------------------------------
# Bad input: errors name the plugin, the parameter and the source


def _raises(d, *patterns):
    import re

    before = copy.deepcopy(d)
    with pytest.raises(ValueError) as info:
        js.load_dict(d)
    message = str(info.value)
    for p in patterns:
        assert re.search(p, message), f"{p!r} not in {message!r}"
    # The input is not modified.
    assert repr(d) == repr(before)
    return message


def test_unknown_and_unsupported_plugins():
    _raises({"type": "scene", "b": {"type": "fancy_velvet", "__source__": "s.xml:18", "__tag__": "bsdf"}},
            "fancy_velvet", r"s\.xml:18")
    _raises({"type": "scene", "s": {"type": "sphre"}}, "sphre", "did you mean 'sphere'")
    _raises({"type": "scene", "s": {"type": "bsplinecurve", "__source__": "s.xml:3"}},
            "bsplinecurve", "not supported", r"s\.xml:3")
    _raises({"type": "scene", "s": {"type": "rectangle", "bsdf": {"type": "hair"}}},
            "hair", "not supported")
    _raises({"type": "scene", "s": {"type": "diffuse", "__tag__": "shape", "__source__": "s.xml:4"}},
            "diffuse", "bsdf", r"s\.xml:4")
    _raises({"type": "scenery"}, "scene")
    _raises({"type": "scene", "x": 3}, '"x"', "object")


def test_unknown_and_ill_typed_parameters():
    src = {"__source__": "s.xml:7"}
    _raises({"type": "scene", "b": {"type": "diffuse", "reflectanse": 0.5, **src}},
            '"reflectanse"', "diffuse", "did you mean 'reflectance'", r"s\.xml:7")
    _raises({"type": "scene", "b": {"type": "diffuse", "reflectance": "abc", **src}},
            '"reflectance"', "str 'abc'", r"s\.xml:7")
    _raises({"type": "scene", "c": {"type": "perspective", "fov": "abc", **src}}, '"fov"', "abc", r"s\.xml:7")
    _raises({"type": "scene", "c": {"type": "perspective", "fov": 200.0}}, '"fov"', "180")
    _raises({"type": "scene", "c": {"type": "perspective", "film": {"type": "hdrfilm", "width": 64.5}}},
            '"width"', "integer")
    _raises({"type": "scene", "c": {"type": "perspective", "focal_length": "35mm", "fov_axis": "x"}}, "fov_axis")
    _raises({"type": "scene", "s": {"type": "rectangle", "to_world": np.eye(3)}}, '"to_world"', r"\(3, 3\)")
    _raises({"type": "scene", "s": {"type": "rectangle", "to_world": np.full((4, 4), np.nan)}}, "non-finite")
    # A to_world must be invertible (normals need its inverse); singular ones
    # used to load.
    for m in (np.diag([1.0, 0.0, 1.0, 1.0]), np.zeros((4, 4)), np.array([[1, 2, 3, 0], [2, 4, 6, 0], [0, 0, 1, 0],
                                                                        [0, 0, 0, 1.0]])):
        for obj in ({"type": "rectangle"}, {"type": "perspective"}, {"type": "spot"}, {"type": "envmap",
                                                                                    "data": np.ones((2, 4, 3))}):
            _raises({"type": "scene", "o": {**obj, "to_world": m, "__source__": "s.xml:12"}},
                    r'parameter "to_world" is singular', r"s\.xml:12", obj["type"])
    sc = scene(s={"type": "rectangle", "to_world": np.diag([1e-6, 1e-6, 1e3, 1.0])})
    assert sc.shapes[0].to_world[2, 2] == 1e3
    _raises({"type": "scene", "s": {"type": "sphere", "radius": -1.0}}, '"radius"')
    _raises({"type": "scene", "s": {"type": "sphere", "center": [1, 2]}}, '"center"', "three floats")
    _raises({"type": "scene", "b": {"type": "conductor", "material": "Gold"}}, "Gold", "conductor")
    _raises({"type": "scene", "b": {"type": "dielectric", "int_ior": "glas"}}, "glas", "IOR")
    _raises({"type": "scene", "b": {"type": "roughconductor", "distribution": "phong"}}, "phong", "ggx")
    _raises({"type": "scene", "b": {"type": "roughplastic", "alpha_u": 0.1}}, "alpha_u", "not supported")
    _raises({"type": "scene", "b": {"type": "roughconductor", "alpha": 0.1, "alpha_u": 0.1}}, "alpha")
    _raises({"type": "scene", "b": {"type": "conductor", "material": "Au", "eta": 1.0}}, "material")
    _raises({"type": "scene", "b": {"type": "diffuse", "reflectance": {"type": "spectrum", "value": [[400, 0.1]]}}},
            "spectrum", "rgb")
    _raises({"type": "scene", "e": {"type": "point", "intensity": {"type": "bitmap", "data": np.ones((2, 2, 3))}}},
            "intensity", "constant")
    _raises({"type": "scene", "e": {"type": "spot", "texture": -1.0}}, "texture", ">= 0")
    # 0 < cutoff_angle <= 90, 0 <= beam_width <= cutoff_angle (any value used to load).
    for spot, pattern in (({"cutoff_angle": 0.0}, '"cutoff_angle" must be > 0'),
                          ({"cutoff_angle": -5.0}, '"cutoff_angle" must be > 0'),
                          ({"cutoff_angle": 90.5}, r'"cutoff_angle" must be in \(0, 90\] degrees, got 90\.5'),
                          ({"cutoff_angle": 180.0}, r'"cutoff_angle" must be in \(0, 90\]'),
                          ({"beam_width": -1.0}, '"beam_width" must be >= 0'),
                          ({"cutoff_angle": 20.0, "beam_width": 30.0},
                           r'"beam_width" \(30\.0\) must not exceed "cutoff_angle" \(20\.0\)')):
        _raises({"type": "scene", "e": {"type": "spot", **spot, "__source__": "s.xml:8"}}, pattern, r"s\.xml:8")
    for spot in ({"cutoff_angle": 90.0}, {"cutoff_angle": 30.0, "beam_width": 30.0}, {"beam_width": 0.0}):
        e = scene(e={"type": "spot", **spot}).emitters[0]
        assert 0 <= float(e.beam_width) <= float(e.cutoff_angle) <= 90
    _raises({"type": "scene", "c": {"type": "perspective", "film": {"type": "hdrfilm", "crop_offset_x": 760, "crop_width": 10}}}, "crop window")
    _raises({"type": "scene", "i": {"type": "aov", "aovs": "dd:dept"}}, "aovs", "depth")
    _raises({"type": "scene", "b": {"type": "bitmap"}}, "filename", "data")
    _raises({"type": "scene", "b": {"type": "bitmap", "data": np.ones((2, 2, 2))}}, r"\(2, 2, 2\)")
    _raises({"type": "scene", "b": {"type": "bitmap", "data": np.full((2, 2, 3), np.inf)}}, "non-finite")


def test_physically_impossible_constants_are_rejected():
    """Negative roughness, reflectances outside [0, 1] (Mitsuba's sRGB
    reflectance check) and negative emission name the parameter and line;
    they used to render black, negative or energy-creating images."""
    def rgb(*v):
        return {"type": "rgb", "value": list(v)}
    for bsdf, pattern in (({"type": "roughconductor", "alpha": -0.5}, '"alpha" must be >= 0'),
                          ({"type": "roughdielectric", "alpha_u": -0.3, "alpha_v": 0.1}, '"alpha_u" must be >= 0'),
                          ({"type": "diffuse", "reflectance": rgb(-1, 0.5, 0.5)}, r'"reflectance" must be in \[0.0, 1.0\]'),
                          ({"type": "diffuse", "reflectance": 5.0}, r'"reflectance" must be in \[0.0, 1.0\]'),
                          ({"type": "plastic", "diffuse_reflectance": rgb(1.2, 0, 0)}, '"diffuse_reflectance"')):
        _raises({"type": "scene", "b": {**bsdf, "__source__": "s.xml:3"}}, pattern, r"s\.xml:3")
    for emitter, pattern in (({"type": "point", "intensity": rgb(-10, 10, 10)}, '"intensity" must be >= 0'),
                             ({"type": "constant", "radiance": -1.0}, '"radiance" must be >= 0'),
                             ({"type": "directional", "irradiance": rgb(0, -1, 0)}, '"irradiance" must be >= 0')):
        _raises({"type": "scene", "e": {**emitter, "__source__": "s.xml:6"}}, pattern, r"s\.xml:6")
    _raises({"type": "scene", "s": {"type": "rectangle", "__source__": "s.xml:9",
                                    "e": {"type": "area", "radiance": rgb(-1, 1, 1)}}}, '"radiance" must be >= 0')
    # Edge values load.
    scene(b={"type": "diffuse", "reflectance": rgb(0, 1, 0.5)}, e={"type": "point", "intensity": 0.0})


def test_shutter_order_and_bitmap_format_are_checked(tmp_path):
    """Parameters jaxrender does not use are still validated as Mitsuba does:
    a shutter that closes before it opens, and a bitmap storage format
    outside Mitsuba's choices, name the line."""
    _raises({"type": "scene", "c": {"type": "perspective", "shutter_open": 1.0, "shutter_close": 0.5,
                                    "__source__": "s.xml:4"}},
            r"shutter_close \(0.5\) must not be before shutter_open \(1.0\)", r"s\.xml:4")
    scene(c={"type": "perspective", "shutter_open": 0.2, "shutter_close": 0.2})
    from jaxrender.io import write_image

    png = tmp_path / "t.png"
    write_image(png, np.full((2, 2, 3), 0.5, np.float32))
    for fmt in ("auto", "variant", "float16", "uint8"):
        scene(b={"type": "diffuse", "reflectance": {"type": "bitmap", "filename": str(png), "format": fmt}})
    _raises({"type": "scene", "b": {"type": "diffuse", "reflectance": {
        "type": "bitmap", "filename": str(png), "format": "fp32", "__source__": "s.xml:7"}}},
        r'"format" must be one of', r"s\.xml:7")


def test_float32_overflow_and_infinite_angles_are_rejected():
    from jaxrender import load_string
    from jaxrender.io import SceneError

    for body, pattern in (('<shape type="sphere"><float name="radius" value="1e39"/></shape>', "beyond float32"),
                          ('<shape type="sphere"><transform name="to_world"><translate x="-1e39"/></transform>'
                           '</shape>', "beyond float32"),
                          ('<shape type="sphere"><transform name="to_world"><rotate y="1" angle="inf"/></transform>'
                           '</shape>', "rotation angle must be finite")):
        with pytest.raises(SceneError, match=pattern) as info:
            load_string(f'<scene version="3.0.0">\n{body}</scene>')
        assert "<string>:2" in str(info.value)


def test_integer_and_film_size_limits():
    # Integers are int32 (Mitsuba's "value ... is out of bounds"); films at
    # most 65536 a side and 715827882 pixels. Used to be accepted as is.
    for cfg in ({"type": "path", "max_depth": 2**31}, {"type": "path", "rr_depth": 2**40},
                {"type": "path", "max_depth": -(2**31) - 1}):
        _raises({"type": "scene", "i": {**cfg, "__source__": "s.xml:4"}}, "32-bit integer", r"s\.xml:4")
    _raises({"type": "scene", "c": {"type": "perspective", "sampler": {
        "type": "independent", "sample_count": 2**31, "__source__": "s.xml:5"}}},
        '"sample_count"', "32-bit integer", r"s\.xml:5")
    for size in ({"width": 2**32}, {"height": 65537}, {"width": 65536, "height": 65536}):
        _raises({"type": "scene", "c": {"type": "perspective", "film": {
            "type": "hdrfilm", **size, "__source__": "s.xml:6"}}}, r"s\.xml:6", "hdrfilm")
    assert scene(i={"type": "path", "max_depth": 2**31 - 1}).integrator.max_depth == 2**31 - 1
    film = scene(c={"type": "perspective", "film": {"type": "hdrfilm", "width": 65536, "height": 2}}).sensors[0].film
    assert (film.width, film.height) == (65536, 2)


def test_structure_errors():
    ref = {"type": "ref", "id": "nope", "__source__": "s.xml:19"}
    _raises({"type": "scene", "s": {"type": "rectangle", "bsdf": ref}},
            '"nope"', r"s\.xml:19")
    _raises({"type": "scene", "a": {"type": "diffuse", "id": "x"}, "b": {"type": "conductor", "id": "x"}},
            "duplicate", '"x"')
    _raises({"type": "scene", "t": {"type": "twosided", "b": {"type": "ref", "id": "t"}}}, "twosided")
    _raises({"type": "scene", "e": {"type": "area"}}, "area", "attached to a shape")
    _raises({"type": "scene", "s": {"type": "rectangle", "emitter": {"type": "point"}}}, "only area")
    _raises({"type": "scene", "e": {"type": "area"}, "s": {"type": "rectangle", "emitter": {"type": "ref", "id": "e"}},
             "t": {"type": "rectangle", "emitter": {"type": "ref", "id": "e"}}}, "attached")
    _raises({"type": "scene", "s": {"type": "rectangle", "a": {"type": "diffuse"}, "b": {"type": "diffuse"}}},
            "one BSDF")
    _raises({"type": "scene", "s": {"type": "rectangle", "film": {"type": "hdrfilm"}}}, "film", "rectangle")
    _raises({"type": "scene", "f": {"type": "hdrfilm"}}, "nested")
    _raises({"type": "scene", "i": {"type": "path"}, "j": {"type": "direct"}}, "one integrator")
    _raises({"type": "scene", "t": {"type": "twosided", "a": {"type": "twosided", "b": {"type": "diffuse"}}}},
            "twosided")


def test_deep_and_self_containing_dicts_are_scene_errors():
    from jaxrender.io import SceneError

    def chain(n):
        root = {"type": "twosided", "__source__": "s.xml:3"}
        cur = root
        for _ in range(n):
            cur["bsdf"] = {"type": "twosided"}
            cur = cur["bsdf"]
        cur["bsdf"] = {"type": "diffuse"}
        return {"type": "scene", "b": root}

    # Nesting is bounded (it used to be a RecursionError); within the bound
    # the builder's own rules apply (a twosided holds no twosided).
    with pytest.raises(SceneError, match=r"nested more than 100 levels deep \(outermost: twosided \(s\.xml:3\)\)"):
        js.load_dict(chain(2000))
    with pytest.raises(SceneError, match="cannot contain another twosided"):
        js.load_dict(chain(50))
    loop = {"type": "diffuse", "__source__": "s.xml:9"}
    loop["reflectance"] = {"type": "bitmap", "data": np.ones((1, 1, 3))}
    loop["reflectance"]["inner"] = loop
    with pytest.raises(SceneError, match=r"diffuse \(s\.xml:9\): the object contains itself"):
        js.load_dict({"type": "scene", "b": loop})


def test_missing_and_bad_mesh_files(tmp_path):
    missing = str(tmp_path / "does_not_exist.obj")
    _raises({"type": "scene", "m": {"type": "obj", "filename": missing, "__source__": "s.xml:20"}},
            "does_not_exist.obj", "not found", r"s\.xml:20")
    _raises({"type": "scene", "m": {"type": "ply"}}, '"filename"', "missing")


@needs_mesh_io
def test_invalid_mesh_data_is_rejected_with_the_file_named(tmp_path):
    v = TETRA_V.copy()
    v[2, 0] = np.nan
    path = write_ply(tmp_path / "nan.ply", v, TETRA_F)
    _raises({"type": "scene", "m": {"type": "ply", "filename": path}}, "nan.ply")
    path = write_ply(tmp_path / "empty.ply", TETRA_V, np.zeros((0, 3), np.int32))
    _raises({"type": "scene", "m": {"type": "ply", "filename": path}}, "empty.ply")
    path = write_obj(tmp_path / "range.obj", TETRA_V, [[0, 1, 7]])
    _raises({"type": "scene", "m": {"type": "obj", "filename": path}}, "range.obj")


def test_cosmetic_parameters_warn_and_sampling_ones_are_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scene(s={"type": "rectangle", "silhouette_sampling_weight": 2.0,
                 "emitter": {"type": "area", "sampling_weight": 2.0}},
              b={"type": "roughconductor", "sample_visible": False},
              c={"type": "perspective", "shutter_open": 0.0, "shutter_close": 1.0,
                 "film": {"type": "hdrfilm", "pixel_format": "rgba", "sample_border": False},
                 "sampler": {"type": "independent", "seed": 3}})
    with pytest.warns(UserWarning, match='"sample_border" is ignored'):
        scene(c={"type": "perspective", "film": {"type": "hdrfilm", "sample_border": True}})


# --------------------------------------------------------------------------
# The test scenes (tests/data/scenes): every parameter Mitsuba lists


# Emitter values that psdr_v05.xml gives as one number (read as gray there).
_PSDR_GRAY = {"emitter.emitter.radiance.value": 10.0}


def _expected():
    with open(os.path.join(SCENES, "expected.json")) as f:
        return json.load(f)


@needs_xml_io
@pytest.mark.parametrize("path", ["jaxrender/data/cbox/cbox.xml", "tests/data/scenes/plugins_v3_a.xml",
                                  "tests/data/scenes/plugins_v3_b.xml", "tests/data/scenes/plugins_v3_c.xml",
                                  "tests/data/scenes/psdr_v05.xml"])
def test_test_scenes_match_mitsuba_parameters(path):
    from jaxrender.io import parse_xml

    expected = _expected()[path]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc = js.load_dict(parse_xml(os.path.join(ROOT, path)))
    ours = js.traverse(sc)
    checked = 0
    for name, value in expected["params"].items():
        if name.endswith(_SKIP_MI):
            continue
        y = np.asarray(_ours_for(name, sc, ours), np.float64)
        x = np.asarray(value, np.float64)
        if name.endswith(".data") and y.ndim == 3:
            if isinstance(sc.emitters[sc.ids[name.split(".")[0]][1]] if name.split(".")[0] in sc.ids
                          and sc.ids[name.split(".")[0]][0] == "emitters" else None, js.EnvironmentMap):
                x = x.reshape(y.shape[0], -1, y.shape[2])[:, 1:-1]
            elif np.max(x) > 1.5:
                x = x / 255.0  # Mitsuba stores raw 8-bit textures as 0..255
        if x.size == 1 and y.size == 3:
            x = np.broadcast_to(x.ravel(), (3,))  # a uniform spectrum that we store as gray rgb
        if path.endswith("_v05.xml") and name in _PSDR_GRAY:
            # The 0.5 dialect reads one number as gray (as PSDR-CUDA does);
            # Mitsuba 3 turns an emitter's into a D65-tinted rgb.
            x = np.full(3, _PSDR_GRAY[name])
        assert x.size == y.size, name
        np.testing.assert_allclose(y.ravel(), x.ravel(), rtol=2e-6, atol=2e-6, err_msg=name)
        checked += 1
    assert checked >= 10
    positions = np.asarray(_expected()["_meta"]["film_positions"], np.float32)
    cams = {c.id: c for c in sc.sensors}
    for cid, cam in expected["sensors"].items():
        np.testing.assert_allclose(cams[cid].x_fov, cam["x_fov"], rtol=1e-6)
        assert [cams[cid].film.width, cams[cid].film.height] == cam["film"]["size"]
        o, d = js.sample_ray(cams[cid], positions)
        np.testing.assert_allclose(d, [r["d"] for r in cam["rays"]], atol=2e-6)
        np.testing.assert_allclose(o, [r["o"] for r in cam["rays"]], atol=1e-5 * max(1, np.abs(o).max()))


def _world_geometry(mesh):
    v = np.asarray(js.transform_points(mesh.to_world, mesh.vertex_positions), np.float64)
    f = np.asarray(mesh.faces.array)
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    return v, n / np.linalg.norm(n, axis=1, keepdims=True)


@needs_xml_io
def test_psdr_microfacet_scene():
    """psdr_microfacet_v05.xml (PSDR-only; Mitsuba rejects it): its camera and
    its shapes ground and house are psdr_v05.xml's (expected.json), and its
    second sensor shares the first one's film and sampler (PSDR's rule)."""
    from jaxrender.io import SceneWarning, parse_xml

    path = os.path.join(SCENES, "psdr_microfacet_v05.xml")
    with pytest.warns(SceneWarning, match=r"psdr_microfacet_v05\.xml:50: PSDR-CUDA bsdf 'microfacet'"):
        d = parse_xml(path)
    sc = js.load_dict(d)
    expected = _expected()["tests/data/scenes/psdr_v05.xml"]
    cams = {c.id: c for c in sc.sensors}
    cam, want = cams["camera"], expected["sensors"]["camera"]
    np.testing.assert_allclose(cam.to_world, want["to_world"], atol=1e-6)
    np.testing.assert_allclose(cam.x_fov, want["x_fov"], rtol=1e-6)
    assert (cam.near_clip, cam.far_clip) == pytest.approx((want["near_clip"], want["far_clip"]))
    assert [cam.film.width, cam.film.height] == want["film"]["size"] == [64, 64]
    assert cam.film.rfilter.type == "box" and cam.sample_count == want["sample_count"] == 4
    positions = np.asarray(_expected()["_meta"]["film_positions"], np.float32)
    o, dirs = js.sample_ray(cam, positions)
    np.testing.assert_allclose(dirs, [r["d"] for r in want["rays"]], atol=2e-6)
    # The second sensor: no film or sampler of its own, so the first one's
    # (64 x 64, box, 4 spp), with its own pose, fov and (default) clip range.
    side = cams["camera_side"]
    assert (side.film.width, side.film.height, side.film.rfilter.type) == (64, 64, "box")
    assert side.sample_count == 4 and d["camera_side"]["sampler"]["sample_count"] == 4
    assert d["camera_side"]["film"]["__source__"] == d["camera"]["film"]["__source__"]
    np.testing.assert_allclose(side.to_world[:3, 3], [6, 2, 0], atol=1e-6)
    direction = np.array([-6.0, -1.5, 0.0]) / np.linalg.norm([-6.0, -1.5, 0.0])
    np.testing.assert_allclose(side.to_world[:3, 2], direction, atol=1e-6)
    assert float(side.fov) == 40.0 and (side.near_clip, side.far_clip) == (0.01, 10000.0)
    shapes = {m.id: m for m in sc.shapes}
    for sid in ("ground", "house", "emitter"):
        v, normals = _world_geometry(shapes[sid])
        box = expected["shapes"][sid]["bbox"]
        np.testing.assert_allclose(v.min(0), box["min"], atol=1e-5, err_msg=sid)
        np.testing.assert_allclose(v.max(0), box["max"], atol=1e-5, err_msg=sid)
        assert shapes[sid].num_faces == expected["shapes"][sid]["face_count"]
        np.testing.assert_allclose(normals, expected["shapes"][sid]["face_normals"], atol=1e-6, err_msg=sid)
    # house's BSDF is PSDR's microfacet as a GGX roughplastic.
    shiny = sc.bsdfs[sc.ids["shiny"][1]]
    assert isinstance(shiny, js.RoughPlastic) and shiny.distribution == "ggx"
    assert float(shiny.alpha) == pytest.approx(0.09) and float(shiny.int_ior) == pytest.approx(1.5)


@needs_xml_io
@pytest.mark.parametrize("name, patterns", [
    ("missing_mesh", [r"does_not_exist\.obj", "not found", r"missing_mesh\.xml:\d+", '"ghost"']),
    ("nan_vertex", [r"nan_vertex\.obj:4", r"nan_vertex\.xml:\d+"]),
    ("out_of_range_face", [r"out_of_range\.obj:8", r"out_of_range_face\.xml:\d+"]),
    ("unknown_plugin", ["fancy_velvet", r"unknown_plugin\.xml:18", "bsdf"]),
])
def test_bad_test_scenes(name, patterns):
    from jaxrender.io import parse_xml

    _raises(parse_xml(os.path.join(SCENES, "bad", name + ".xml")), *patterns)


def test_reconstruction_filter_parameters():
    """Mitsuba's mitchell (B, C), catmullrom and lanczos (integer lobes);
    bad values name the line."""
    def rfilter(d):
        s = scene(c={"type": "perspective", "film": {"type": "hdrfilm", "rfilter": d}})
        return s.sensors[0].film.rfilter

    f = rfilter({"type": "mitchell", "B": 0.25, "C": 0.4})
    assert (f.type, f.radius, f.b, f.c) == ("mitchell", 2.0, 0.25, 0.4)
    f = rfilter({"type": "catmullrom"})
    assert (f.type, f.b, f.c) == ("mitchell", 0.0, 0.5)
    assert rfilter({"type": "lanczos"}).radius == 3.0
    assert rfilter({"type": "lanczos", "lobes": 2}).radius == 2.0
    for bad in ({"lobes": 0}, {"lobes": 2.5}):
        _raises({"type": "scene", "c": {"type": "perspective", "film": {"type": "hdrfilm", "rfilter": {
            "type": "lanczos", **bad, "__source__": "s.xml:9"}}}}, r"lobes", r"s\.xml:9")
    _raises({"type": "scene", "c": {"type": "perspective", "film": {"type": "hdrfilm", "rfilter": {
        "type": "catmullrom", "B": 0.3, "__source__": "s.xml:5"}}}}, r"B", r"s\.xml:5")
    # Footprints beyond MAX_FILTER_RADIUS pixels, and cubics outside
    # Mitchell-Netravali's [0, 1]^2 (whose weights cancel into huge pixels).
    for bad, message in (({"type": "tent", "radius": 1e30}, r'"radius" must be <= 16'),
                         ({"type": "gaussian", "stddev": 5.0}, r'"stddev" must be <= 4'),
                         ({"type": "mitchell", "C": 50.0}, r'"C" must be <= 1'),
                         ({"type": "mitchell", "B": -0.5}, r'"B" must be >= 0')):
        _raises({"type": "scene", "c": {"type": "perspective", "film": {"type": "hdrfilm", "rfilter": {
            **bad, "__source__": "s.xml:7"}}}}, message, r"s\.xml:7")
    assert rfilter({"type": "gaussian", "stddev": 4.0}).radius == 16.0
    for radius in (0.0, -1.0, float("nan"), 16.5):
        with pytest.raises(ValueError, match=r"tent rfilter radius must be in \(0, 16.0\]"):
            js.ReconstructionFilter("tent", radius)


def test_thinlens_and_orthographic_sensors():
    """Mitsuba's thinlens (aperture_radius required, focus_distance defaults
    to far_clip) and orthographic (no field of view) sensors; their float
    leaves are parameters."""
    s = scene(c={"type": "thinlens", "aperture_radius": 0.1, "fov": 30, "far_clip": 50.0})
    cam = s.sensors[0]
    assert isinstance(cam, js.ThinLensCamera) and float(cam.focus_distance) == 50.0
    names = js.traverse(s)
    assert {"c.aperture_radius", "c.focus_distance", "c.fov"} <= set(names)
    s = js.replace(s, {"c.focus_distance": jnp.float32(4.0)})
    assert float(s.sensors[0].focus_distance) == 4.0
    s = scene(c={"type": "orthographic", "near_clip": 0.5})
    assert isinstance(s.sensors[0], js.OrthographicCamera) and "c.fov" not in js.traverse(s)
    _raises({"type": "scene", "c": {"type": "thinlens", "__source__": "s.xml:3"}},
            r'missing required parameter "aperture_radius"', r"s\.xml:3")
    _raises({"type": "scene", "c": {"type": "thinlens", "aperture_radius": -1.0, "__source__": "s.xml:3"}},
            r"aperture_radius", r"s\.xml:3")
    _raises({"type": "scene", "c": {"type": "orthographic", "fov": 30.0, "__source__": "s.xml:4"}},
            r"fov", r"s\.xml:4")


def test_d65_and_srgb_spectra_match_mitsuba():
    """Mitsuba's `d65` (RGB variants: the uniform `scale`) and `srgb`
    (an rgb `color`) spectra, in the dict and the XML forms; bad entries
    are errors naming the parameter."""
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    si = mi.SurfaceInteraction3f()
    for spec in ({"type": "d65"}, {"type": "d65", "scale": 0.5}, {"type": "srgb", "color": [0.2, 0.5, 0.7]}):
        want = np.array(mi.load_dict(spec).eval(si))
        sc = js.load_dict({"type": "scene", "e": {"type": "constant", "radiance": spec},
                           "s": {"type": "rectangle", "bsdf": {"type": "diffuse", "reflectance": spec}}})
        for tex in (sc.emitters[0].radiance, sc.bsdfs[0].reflectance):
            np.testing.assert_allclose(np.broadcast_to(np.asarray(tex.value), (3,)), want, rtol=1e-6)
    xml = """<scene version="3.0.0">
      <emitter type="constant"><spectrum type="d65" name="radiance"><float name="scale" value="2.5"/></spectrum></emitter>
      <shape type="rectangle"><bsdf type="diffuse"><spectrum type="srgb" name="reflectance">
        <rgb name="color" value="0.2, 0.5, 0.7"/></spectrum></bsdf></shape></scene>"""
    from jaxrender.io import parse_xml

    sc = js.load_dict(parse_xml(xml, is_string=True))
    assert float(sc.emitters[0].radiance.value) == 2.5
    np.testing.assert_allclose(np.asarray(sc.bsdfs[0].reflectance.value), [0.2, 0.5, 0.7], rtol=1e-6)
    bad = {"type": "scene", "s": {"type": "rectangle", "bsdf": {"type": "diffuse", "reflectance": None}}}
    for spec, pattern in (({"type": "srgb"}, "color"), ({"type": "srgb", "color": "red"}, "3 finite floats"),
                          ({"type": "d65", "scale": float("nan")}, "scale"), ({"type": "d65", "tint": 1}, "tint")):
        bad["s"]["bsdf"]["reflectance"] = spec
        _raises(bad, "reflectance", pattern)


def test_shapegroup_instances_match_mitsuba():
    """Each instance of a shapegroup becomes meshes of their own under the
    instance's to_world: ray hits equal Mitsuba's (which instances the
    group), mesh names come from the instance's id, the group's BSDF is
    shared."""
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    import jaxrender as jr
    from jaxrender.integrators import interaction

    path = os.path.join(ROOT, "tests", "data", "scenes", "instances.xml")
    sc = jr.load_file(path)
    assert len(sc.shapes) == 7 and [m.id for m in sc.shapes[:2]] == ["a.shape_0", "a.shape_1"]
    cubes = [m for m in sc.shapes if m.faces.shape[0] == 12]
    assert len(cubes) == 3 and len({m.bsdf for m in cubes}) == 1
    assert "a.shape_0.to_world" in jr.traverse(sc)
    ms = mi.load_file(path)
    rng = np.random.default_rng(0)
    o = np.array([0.0, 2, 6]) + rng.normal(0, 0.2, (300, 3))
    d = rng.normal(size=(300, 3)) * 0.3 + [0, -2, -6]
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    want = np.array([ms.ray_intersect(mi.Ray3f(o[i], d[i])).t for i in range(len(o))])
    hit = interaction.trace(interaction.prepare_scene(sc), jnp.asarray(o, jnp.float32), jnp.asarray(d, jnp.float32))
    got = np.asarray(hit.t)
    both = np.isfinite(want) & np.isfinite(got)
    # The spheres are tessellated here: a ray may graze one and not the other.
    assert (np.isfinite(want) == np.isfinite(got)).mean() > 0.98 and both.sum() > 250
    np.testing.assert_allclose(got[both], want[both], rtol=1e-3)


def test_instance_transform_applies_after_the_shape_is_built():
    """Mitsuba applies an instance's to_world to rays, after its shapes are
    built: a sphere in a non-uniformly scaled instance is an ellipsoid (a
    sphere's own non-uniform to_world is not), and a mirroring instance
    keeps generated normals facing out (a shape's own mirroring to_world
    turns them in). Hit distances and shading-normal sides equal Mitsuba's."""
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    import jaxrender as jr
    from jaxrender.integrators import interaction

    sphere = ('<shape type="sphere"><transform name="to_world"><scale value="0.4"/><translate x="0.2"/>'
              '</transform></shape>')
    rect = '<shape type="rectangle"><transform name="to_world"><scale value="0.6"/><rotate y="1" angle="20"/></transform></shape>'
    for shape in (sphere, rect):
        for xf in ('<scale x="1.5" y="0.7" z="1"/>', '<scale x="-1" y="1" z="1"/><rotate z="1" angle="15"/>'):
            xml = (f'<scene version="3.0.0"><shape type="shapegroup" id="g">{shape}</shape>'
                   f'<shape type="instance"><ref id="g"/><transform name="to_world">{xf}</transform></shape></scene>')
            sc, ms = jr.load_string(xml), mi.load_string(xml)
            rng = np.random.default_rng(1)
            o = np.array([0.0, 0.0, 4.0]) + rng.normal(0, 0.3, (400, 3))
            aim = np.concatenate([rng.uniform(-0.7, 0.7, (400, 2)), np.zeros((400, 1))], 1)
            d = (aim - o) / np.linalg.norm(aim - o, axis=1, keepdims=True)
            ref = [ms.ray_intersect(mi.Ray3f(o[i], d[i])) for i in range(len(o))]
            want_t = np.array([r.t for r in ref])
            want_side = np.array([np.sign(np.dot(np.array(r.sh_frame.n), d[i])) for i, r in enumerate(ref)])
            arrays = interaction.prepare_scene(sc)
            oj, dj = jnp.asarray(o, jnp.float32), jnp.asarray(d, jnp.float32)
            si = interaction.surface_interaction(arrays, interaction.trace(arrays, oj, dj), oj, dj)
            got_t = np.asarray(si.t)
            both = np.isfinite(want_t) & np.asarray(si.valid)
            assert (np.isfinite(want_t) == np.asarray(si.valid)).mean() > 0.97 and both.sum() > 60, (shape, xf)
            # Our spheres are tessellated: grazing hits differ by up to the
            # facets' sagitta (a sphere instead of the ellipsoid: 0.1 and more).
            np.testing.assert_allclose(got_t[both], want_t[both], atol=0.02, err_msg=f"{shape} {xf}")
            got_side = np.sign(np.sum(np.asarray(si.sh_n) * d, -1))
            # (A grazing hit's interpolated normal may face the other way.)
            assert np.mean(got_side[both] == want_side[both]) > 0.95, (shape, xf)


def test_merge_matches_mitsuba():
    """`merge` (nested ones too, and inside a shapegroup): its shapes load
    as if they were outside it, keeping their ids; ray hits and the
    reflectance at the hit equal Mitsuba's (which merges the meshes that
    share a BSDF into one); unknown parameters are errors."""
    mi = pytest.importorskip("mitsuba")
    mi.set_variant("scalar_rgb")
    import jaxrender as jr
    from jaxrender.integrators import interaction

    xml = """<scene version="3.0.0">
      <bsdf type="diffuse" id="gray"><rgb name="reflectance" value="0.6"/></bsdf>
      <shape type="merge" id="m">
        <shape type="cube" id="box1"><ref id="gray"/>
          <transform name="to_world"><scale value="0.3"/><translate x="-0.5"/></transform></shape>
        <shape type="cube"><ref id="gray"/>
          <transform name="to_world"><scale value="0.3"/><translate x="0.5"/></transform></shape>
        <shape type="merge">
          <shape type="rectangle"><bsdf type="diffuse"><rgb name="reflectance" value="0.2 0.5 0.8"/></bsdf>
            <transform name="to_world"><scale value="3"/><translate z="-0.3"/></transform></shape>
        </shape>
      </shape>
      <shape type="shapegroup" id="g"><shape type="merge"><shape type="cube"><ref id="gray"/>
        <transform name="to_world"><scale value="0.2"/></transform></shape></shape></shape>
      <shape type="instance"><ref id="g"/><transform name="to_world"><translate y="0.8"/></transform></shape>
    </scene>"""
    sc = jr.load_string(xml)
    assert len(sc.shapes) == 4 and sc.shapes[0].id == "box1"
    assert {"box1.vertex_positions", "Mesh[1].vertex_positions", "gray.reflectance.value"} <= set(jr.traverse(sc))
    ms = mi.load_string(xml)
    rng = np.random.default_rng(1)
    o = np.array([0.0, 0.3, 4.0]) + rng.normal(0, 0.1, (300, 3))
    d = rng.normal(size=(300, 3)) * 0.2 + [0, -0.3, -4]
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    want_t, want_r = [], []
    for i in range(len(o)):
        si = ms.ray_intersect(mi.Ray3f(o[i], d[i]))
        want_t.append(si.t)
        want_r.append(np.array(si.bsdf().eval_diffuse_reflectance(si))[2] if si.is_valid() else np.nan)
    arrays = interaction.prepare_scene(sc)
    hit = interaction.trace(arrays, jnp.asarray(o, jnp.float32), jnp.asarray(d, jnp.float32))
    got_t = np.asarray(hit.t)
    want_t = np.array(want_t)
    assert np.array_equal(np.isfinite(got_t), np.isfinite(want_t)) and np.isfinite(got_t).sum() > 250
    np.testing.assert_allclose(got_t[np.isfinite(got_t)], want_t[np.isfinite(want_t)], rtol=1e-4)
    bsdf = np.asarray(arrays.bsdf_of_shape)[np.asarray(arrays.shape_of_face)[np.asarray(hit.prim)]]
    got_r = np.array([float(np.asarray(sc.bsdfs[b].reflectance.value).reshape(-1)[-1]) for b in bsdf])
    hits = np.isfinite(got_t)
    np.testing.assert_allclose(got_r[hits], np.array(want_r)[hits], rtol=1e-6)
    _raises({"type": "scene", "m": {"type": "merge", "to_world": np.eye(4), "c": {"type": "cube"},
                                    "__source__": "s.xml:4"}}, "to_world", r"s\.xml:4")
    _raises({"type": "scene", "m": {"type": "merge", "id": "m", "r": {"type": "ref", "id": "m"},
                                    "__source__": "s.xml:6"}}, "circular", r"s\.xml:6")


def test_shapegroup_errors():
    group = {"type": "shapegroup", "id": "g", "c": {"type": "cube"}}
    _raises({"type": "scene", "g": group, "i": {"type": "instance", "__source__": "s.xml:5"}},
            "instance", "one shapegroup", r"s\.xml:5")
    _raises({"type": "scene", "g": {"type": "shapegroup", "id": "g", "__source__": "s.xml:2"}},
            "at least one shape", r"s\.xml:2")
    _raises({"type": "scene", "g": dict(group, e={"type": "rectangle", "light": {"type": "area"}}),
             "i": {"type": "instance", "r": {"type": "ref", "id": "g"}}}, "emitter")
    _raises({"type": "scene", "g": dict(group, n={"type": "shapegroup", "x": {"type": "cube"}})}, "nested")
    _raises({"type": "scene", "g": group, "i": {"type": "instance", "r": {"type": "ref", "id": "g"}, "radius": 2}},
            "radius")


def test_sphere_with_nonuniform_scale_is_mitsubas_sphere(mi):
    import jaxrender as jr

    # Mitsuba's sphere takes its centre and radius (the length of to_world's
    # image of the x axis) from to_world and warns about the rest; it never
    # renders an ellipsoid. Its ray hits give the radius along each axis.
    xml = """<scene version="3.0.0"><shape type="sphere"><transform name="to_world">
      <rotate z="1" angle="30"/><scale x="1.3" y="0.6" z="0.8"/><translate x="0.5"/></transform></shape></scene>"""
    theirs = mi.load_string(xml)
    hits = [np.array(theirs.ray_intersect(mi.Ray3f(o, d)).p) for o, d in
            (([10, 0, 0], [-1, 0, 0]), ([0.5, 10, 0], [0, -1, 0]), ([0.5, 0, 10], [0, 0, -1]))]
    radius = hits[2][2]
    np.testing.assert_allclose([hits[0][0] - 0.5, hits[1][1], hits[2][2]], radius, rtol=1e-5)
    with pytest.warns(jr.SceneWarning, match="non-uniform scale or a shear; as in Mitsuba it renders a sphere"):
        ours = jr.load_string(xml)
    m = np.asarray(ours.shapes[0].to_world, np.float64)
    np.testing.assert_allclose(m[:3, :3].T @ m[:3, :3], radius**2 * np.eye(3), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m[:3, 3], [0.5, 0, 0], atol=1e-6)
    # A uniform scale keeps its to_world bit for bit, without a word.
    uniform = jr.load_string(xml.replace('<scale x="1.3" y="0.6" z="0.8"/>', '<scale value="0.7"/>'))
    expected = jr.rotate(jnp.array([0.0, 0.0, 1.0]), 30.0)
    assert np.allclose(np.asarray(uniform.shapes[0].to_world)[:3, :3], 0.7 * np.asarray(expected)[:3, :3], atol=1e-6)


def test_rotate_axis_is_used_as_written_as_in_mitsuba_3(mi):
    import jaxrender as jr

    # Mitsuba 3's <rotate> does not normalize its axis: (1, 1, 0) also
    # scales and shears. Its mesh vertices are the reference; a warning
    # names the axis. Files of version 0.x normalize it, as Mitsuba 0.6 did.
    xml = """<scene version="{v}"><shape type="cube"><transform name="to_world">
      <scale value="0.8"/><rotate x="1" y="1" angle="30"/></transform></shape></scene>"""
    theirs = mi.traverse(mi.load_string(xml.format(v="3.0.0")))
    key = next(k for k in theirs.keys() if k.endswith("vertex_positions"))
    expected = np.sort(np.array(theirs[key]).reshape(-1, 3), axis=0)
    with pytest.warns(jr.SceneWarning, match=r"<rotate> axis \[1.0, 1.0, 0.0\] is not of unit length"):
        ours = jr.load_string(xml.format(v="3.0.0")).shapes[0]
    m = np.asarray(ours.to_world)
    world = np.asarray(ours.vertex_positions) @ m[:3, :3].T + m[:3, 3]
    np.testing.assert_allclose(np.sort(world, axis=0), expected, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        old = jr.load_string(xml.format(v="0.5.0")).shapes[0].to_world
    np.testing.assert_allclose(np.linalg.svd(np.asarray(old)[:3, :3])[1], [0.8, 0.8, 0.8], rtol=1e-5)


def test_mirrored_shapes_are_oriented_as_in_mitsuba(mi, tmp_path):
    import jaxrender as jr

    # Under a mirroring to_world Mitsuba turns a sphere and a mesh whose
    # vertex normals it computes inside out (their normals follow the
    # world-space winding), while a cube's stored normals keep pointing
    # out. Compared by the shading-normal AOV, pixel by pixel.
    corners = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, -1).T
    lines = [f"v {x} {y} {z}" for x, y, z in corners]
    for a, b, c, d in ([1, 2, 4, 3], [5, 7, 8, 6], [1, 5, 6, 2], [3, 4, 8, 7], [1, 3, 7, 5], [2, 6, 8, 4]):
        lines += [f"f {a} {b} {c}", f"f {a} {c} {d}"]
    (tmp_path / "box.obj").write_text("\n".join(lines) + "\n")
    xml = """<scene version="3.0.0">
      <integrator type="aov"><string name="aovs" value="nn:sh_normal"/></integrator>
      <sensor type="perspective"><float name="fov" value="30"/>
        <transform name="to_world"><lookat origin="1,2,6" target="0,0,0" up="0,1,0"/></transform>
        <film type="hdrfilm"><integer name="width" value="12"/><integer name="height" value="12"/></film></sensor>
      {shape}
    </scene>"""
    mirror = '<transform name="to_world"><scale x="-0.8" y="0.8" z="0.8"/></transform>'
    for shape in (f'<shape type="sphere">{mirror}</shape>',
                  f'<shape type="obj"><string name="filename" value="{tmp_path / "box.obj"}"/>{mirror}</shape>',
                  f'<shape type="cube">{mirror}</shape>'):
        text = xml.format(shape=shape)
        theirs = np.array(mi.render(mi.load_string(text), spp=1))[..., -3:]
        ours = np.asarray(jr.render(jr.load_string(text), spp=1))[..., -3:]
        hit = (np.abs(theirs).sum(-1) > 0.5) & (np.abs(ours).sum(-1) > 0.5)
        assert hit.sum() > 20, shape
        agree = np.sum(theirs * ours, -1)[hit]
        # Never opposite sides. A pixel's two samples land at different
        # points (at the cube's edges, on perpendicular faces: 0).
        assert np.all(agree > -0.5), (shape, agree.min())
        assert np.median(agree) > 0.8, shape
