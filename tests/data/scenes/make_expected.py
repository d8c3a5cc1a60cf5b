"""Recompute expected.json: what Mitsuba 3 reports for every loadable test scene.

    python tests/data/scenes/make_expected.py        (needs mitsuba >= 3.9)

The tests compare jaxrender against this file, so they run without Mitsuba.
Everything is taken from Mitsuba in the ``scalar_rgb`` variant (the file records
the version); nothing here is computed by hand. Layout (see README.md):

    {"_meta": {...},
     "<scene path relative to the repository root>": {
        "integrator": {...}, "scene_bbox": {...},
        "sensors":  {id: {...}},  "shapes": {id: {...}},  "emitters": {id: {...}},
        "textures": {"<shape id>.<bsdf parameter>": {...}},
        "params":   {mitsuba traverse() key: value}}}
"""
import json
import math
import os
import re

import numpy as np

import mitsuba as mi

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))

SCENES = [
    "jaxrender/data/cbox/cbox.xml",
    "tests/data/scenes/plugins_v3_a.xml",
    "tests/data/scenes/plugins_v3_b.xml",
    "tests/data/scenes/plugins_v3_c.xml",
    "tests/data/scenes/psdr_v05.xml",
]

# Film positions (in [0,1]^2 over the film, (0,0) = top-left corner, (1,1) = bottom-right)
# at which camera rays are recorded.
FILM_POSITIONS = [(0.5, 0.5), (0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.25, 0.75)]

# UVs at which textured BSDF parameters are evaluated (inside, on texel centres, outside [0,1]).
UVS = [(0.0625, 0.125), (0.1, 0.2), (0.5, 0.5), (0.55, 0.9), (0.99, 0.01), (1.3, -0.2), (-0.4, 0.5), (2.1, 1.7)]

# World directions (pointing away from the scene, towards the sky) at which environment
# emitters are evaluated.
ENV_DIRS = [(0.1, 1, 0.2), (-0.2, -1, 0.1), (1, 0, 0), (-1, 0, 0), (0, 0, 1), (0, 0, -1),
            (1, 1, 1), (-0.3, 0.8, 0.52), (0.2, -0.5, -0.8), (1, 0.1, -0.3), (-0.7, -0.2, 0.4), (0.05, 0.3, -1)]


def r7(x):
    """Round to 7 significant digits (float32 precision) for a readable, stable file."""
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return str(x)
    return float(f"{x:.7g}")


def to_py(v):
    """Mitsuba / Dr.Jit / numpy value -> JSON-able value."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return r7(v)
    if isinstance(v, str):
        return v
    if isinstance(v, (mi.ScalarAffineTransform4f, mi.ScalarTransform4f)):
        return to_py(np.array(v.matrix))
    if isinstance(v, (mi.ScalarAffineTransform3f, mi.ScalarTransform3f)):
        return to_py(np.array(v.matrix))
    a = np.array(v)
    if a.dtype.kind in "ui":
        return a.tolist()
    if a.dtype.kind == "b":
        return a.tolist()
    return np.vectorize(r7, otypes=[object])(a).tolist() if a.ndim else r7(a)


def vec(p):
    return [r7(x) for x in np.array(p).reshape(-1)]


def bbox(b):
    return {"min": vec(b.min), "max": vec(b.max)}


def xml_ids(path):
    """Object ids in the order they appear in the XML (for readability of the JSON only)."""
    return re.findall(r'\bid="([^"]+)"', open(path).read())


def sensor_info(sensor):
    p = mi.traverse(sensor)
    T = sensor.world_transform()
    M = np.array(T.matrix)
    film = sensor.film()
    size = [int(x) for x in np.array(film.size())]
    x_fov = float(p["x_fov"])
    aspect = size[0] / size[1]
    y_fov = math.degrees(2 * math.atan(math.tan(math.radians(x_fov) / 2) / aspect))
    rf = film.rfilter()
    rays = []
    for pos in FILM_POSITIONS:
        ray, _ = sensor.sample_ray(0.0, 0.5, mi.Point2f(*pos), mi.Point2f(0.5, 0.5))
        rays.append({"film_pos": list(pos), "o": vec(ray.o), "d": vec(ray.d)})
    return {
        "type": sensor.class_name(),
        "to_world": to_py(M),
        "origin": vec(T @ mi.ScalarPoint3f(0, 0, 0)),
        "direction": vec(T @ mi.ScalarVector3f(0, 0, 1)),
        "up": vec(T @ mi.ScalarVector3f(0, 1, 0)),
        "x_fov": r7(x_fov),
        "y_fov": r7(y_fov),
        "near_clip": r7(sensor.near_clip()),
        "far_clip": r7(sensor.far_clip()),
        "film": {
            "type": film.class_name(),
            "size": size,
            "crop_size": [int(x) for x in np.array(film.crop_size())],
            "rfilter": rf.class_name(),
            "rfilter_radius": r7(rf.radius()),
        },
        "sample_count": int(sensor.sampler().sample_count()),
        "rays": rays,
    }


def shape_info(shape):
    d = {
        "type": shape.class_name(),
        "is_mesh": bool(shape.is_mesh()),
        "bbox": bbox(shape.bbox()),
        "surface_area": r7(shape.surface_area()),
        "bsdf": shape.bsdf().class_name() if shape.bsdf() is not None else None,
        "is_emitter": bool(shape.is_emitter()),
    }
    if shape.is_mesh():
        d["vertex_count"] = int(shape.vertex_count())
        d["face_count"] = int(shape.face_count())
        d["has_vertex_normals"] = bool(shape.has_vertex_normals())
        d["has_vertex_texcoords"] = bool(shape.has_vertex_texcoords())
        d["has_flipped_normals"] = bool(shape.has_flipped_normals())
        # world-space face normals (as Mitsuba orients them, flip_normals included)
        d["face_normals"] = [vec(shape.face_normal(i)) for i in range(shape.face_count())]
    if shape.is_emitter():
        d["emitter"] = shape.emitter().class_name()
    return d


def si_at(uv):
    import drjit as dr
    si = dr.zeros(mi.SurfaceInteraction3f)
    si.uv = mi.Point2f(*uv)
    si.n = mi.Normal3f(0, 0, 1)
    si.sh_frame = mi.Frame3f(si.n)
    si.wi = mi.Vector3f(0, 0, 1)
    return si


def textured_params(scene):
    """Evaluate textured (bitmap / checkerboard) diffuse reflectances at a few UVs.

    Keyed by shape id; the value is what Mitsuba's BSDF.eval_diffuse_reflectance returns
    at the given surface uv (texture lookup incl. sRGB decoding, filter and wrap mode)."""
    out = {}
    for shape in scene.shapes():
        b = shape.bsdf()
        if b is None or not re.search(r"Bitmap|Checkerboard", str(b)):
            continue
        vals = [vec(b.eval_diffuse_reflectance(si_at(uv))) for uv in UVS]
        out[shape.id()] = {"bsdf": b.class_name(), "uv": [list(u) for u in UVS], "value": vals}
    return out


def emitter_info(scene):
    out = {}
    for e in scene.emitters():
        d = {"type": e.class_name()}
        p = mi.traverse(e)
        if "to_world" in p.keys() and e.class_name() in ("PointLight", "SpotLight", "DirectionalEmitter"):
            T = p["to_world"]
            if e.class_name() != "DirectionalEmitter":
                d["position"] = vec(T @ mi.ScalarPoint3f(0, 0, 0))
            d["direction"] = vec(T @ mi.ScalarVector3f(0, 0, 1))
        if "position" in p.keys():
            d["position"] = vec(p["position"])
        shape_id = None
        for s in scene.shapes():
            if s.is_emitter() and s.emitter() == e:
                shape_id = s.id()
        if shape_id is not None:
            d["shape"] = shape_id
        if e.class_name() in ("EnvironmentMapEmitter", "ConstantBackgroundEmitter"):
            vals = []
            for dirn in ENV_DIRS:
                dvec = np.array(dirn, float)
                dvec /= np.linalg.norm(dvec)
                si = si_at((0, 0))
                si.wi = mi.Vector3f(*(-dvec))  # eval() gives the radiance arriving from direction -wi
                vals.append({"dir": vec(dvec), "radiance": vec(e.eval(si))})
            d["radiance_towards"] = vals
        out[e.id() or (f"{shape_id}.emitter" if shape_id else f"[{e.class_name()}]")] = d
    return out


def integrator_info(integ):
    s = str(integ)
    d = {"type": integ.class_name()}
    for k in ("max_depth", "rr_depth", "emitter_samples", "bsdf_samples"):
        m = re.search(rf"{k} = (-?\d+)", s)
        if m:
            v = int(m.group(1))
            d[k] = v - (1 << 32) if v >= (1 << 31) else v  # Mitsuba prints -1 as 2^32 - 1
    if hasattr(integ, "hide_emitters"):
        d["hide_emitters"] = bool(integ.hide_emitters)
    return d


def scene_info(rel):
    path = os.path.join(ROOT, rel)
    # optimize=False: otherwise Mitsuba merges meshes that share a BSDF (and equal
    # BSDFs), which renames or drops ids.
    scene = mi.load_file(path, optimize=False)
    params = mi.traverse(scene)
    order = {i: n for n, i in enumerate(xml_ids(path))}
    info = {
        "integrator": integrator_info(scene.integrator()),
        "scene_bbox": bbox(scene.bbox()),
        "sensors": {s.id(): sensor_info(s) for s in scene.sensors()},
        "shapes": {s.id(): shape_info(s)
                   for s in sorted(scene.shapes(), key=lambda s: order.get(s.id(), 1 << 30))},
        "emitters": emitter_info(scene),
        "textures": textured_params(scene),
        "params": {},
    }
    for k in params.keys():
        if k.startswith("object_"):  # Mitsuba names some shared objects by address: unstable
            continue
        v = params[k]
        info["params"][k] = to_py(v)
    return info


def main():
    mi.set_variant("scalar_rgb")
    out = {"_meta": {
        "generator": "tests/data/scenes/make_expected.py",
        "mitsuba_version": mi.__version__,
        "variant": "scalar_rgb",
        "notes": "See tests/data/scenes/README.md. Float values rounded to 7 significant digits.",
        "film_positions": [list(p) for p in FILM_POSITIONS],
    }}
    for rel in SCENES:
        out[rel] = scene_info(rel)
        # the LLVM variant must load the same scene too
        with mi.variant_context("llvm_ad_rgb"):
            mi.load_file(os.path.join(ROOT, rel))
            mi.load_file(os.path.join(ROOT, rel), optimize=False)
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
