"""`traverse` and `replace`: a scene's float parameters by name, Mitsuba style.

Names are "<prefix>.<param>", formed as Mitsuba's `traverse` does. The
prefix is the object's id when it is defined at the root of the scene with
one ("red.reflectance.value", "my_envmap.data"); an object nested in a named
one takes the parent's name and its role, whatever id it has of its own
("light.bsdf.reflectance.value", "light.emitter.radiance.value",
"panel.bsdf.brdf_0.reflectance.data"); anything else is named by position:
"Mesh[i]", "BSDF[i]", "Emitter[i]", "Sensor[i]" (indices into
`Scene.shapes`, `.bsdfs`, `.emitters`, `.sensors`); the cameras of a
`batch` sensor are "<batch name>.<camera id>" (without an id,
"<batch name>.sensor<k>" for the k-th, from 0), as in Mitsuba. Textures add ".value"
(constant), ".data" / ".to_uv" (bitmap), ".color0.value", ".color1.value" /
".to_uv" (checkerboard), ".scale" (mesh_attribute) to the name of the parameter they fill, or to their
own id when defined at the root ("wood.data"). A texture or BSDF used in
several places by reference has one name; `replace` updates every use.
The shapes of an `instance` of a `shapegroup` are meshes of their own,
named "<instance id>.<shape id or key>" (positionally without an instance
id): each instance's copy has its own vertex positions and to_world
(Mitsuba's one `to_world` per instance is this to_world times the shape's).

Names are unique: ids are free-form (Mitsuba restricts them no more than
this), so an id can spell another object's name (`<shape id="Mesh[0]">`
next to an unnamed first shape; `<bsdf id="x.bsdf">` next to `<shape
id="x">` with its own or a default BSDF). `load_dict` rejects such a scene
with a SceneError naming both objects and their sources, where Mitsuba's
`traverse` would silently keep one of them. (Scenes assembled by hand from
the pytree types are not checked: keep their ids distinct.)

Every parameter listed is a float32 array leaf and differentiable:

| object | names |
| --- | --- |
| Mesh | vertex_positions (V,3), vertex_normals (V,3), vertex_texcoords (V,2), to_world (4,4), and each mesh attribute by its name (vertex_color (V,3), face_... (F,C)) |
| Diffuse | reflectance.* |
| Conductor | eta.*, k.*, specular_reflectance.* |
| RoughConductor | alpha.* (or alpha_u.*, alpha_v.*), eta.*, k.*, specular_reflectance.* |
| Plastic | diffuse_reflectance.*, specular_reflectance.*, int_ior, ext_ior |
| RoughPlastic | as Plastic, and alpha |
| Dielectric, ThinDielectric | int_ior, ext_ior, specular_reflectance.*, specular_transmittance.* |
| RoughDielectric | as Dielectric, and alpha.* (or alpha_u.*, alpha_v.*) |
| TwoSided | brdf_0.<...>, brdf_1.<...> |
| BlendBSDF | weight.*, bsdf_0.<...>, bsdf_1.<...> |
| Mask | opacity.*, nested_bsdf.<...> |
| NormalMap | normalmap.*, nested_bsdf.<...> |
| BumpMap | nested_texture.*, nested_bsdf.<...> |
| PrincipledThin | base_color.*, roughness.*, anisotropic.*, spec_trans.*, spec_tint.*, sheen.*, sheen_tint.*, flatness.*, diff_trans.*, eta.* |
| Principled | base_color.*, roughness.*, anisotropic.*, metallic.*, spec_trans.*, spec_tint.*, sheen.*, sheen_tint.*, flatness.*, clearcoat.*, clearcoat_gloss.*, and eta or specular (whichever the scene gave) |
| AreaLight | radiance.* |
| PointLight | intensity.value, position (3,) |
| SpotLight | intensity.value, cutoff_angle, beam_width, to_world, texture.* (if given) |
| DirectionalLight | irradiance.value, to_world |
| ConstantEmitter | radiance.value |
| EnvironmentMap | data (H,W,3), scale, to_world |
| PerspectiveCamera | to_world (4,4), fov (degrees along fov_axis) |
| ThinLensCamera | to_world, fov, aperture_radius, focus_distance |
| OrthographicCamera, Radiancemeter | to_world |
| DistantSensor | to_world, target (a point (3,) or triangles (T, 3, 3), if given) |
| IrradianceMeter | none (it measures its shape, whose parameters are the shape's) |
| BatchSensor | its cameras' parameters, "<batch>.<camera>.<param>" |

Not parameters (static, not differentiable): face indices, flags, plugin
types, distributions, film size, filters, clip distances, sample counts, the
integrator. Both functions work inside `jit` and under `grad`/`jvp`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxrender.scene.bsdfs import BlendBSDF, BumpMap, Mask, NormalMap, TwoSided
from jaxrender.scene.emitters import EnvironmentMap
from jaxrender.scene.scene import Scene
from jaxrender.scene.sensors import BatchSensor
from jaxrender.scene.shapes import vertex_normals
from jaxrender.scene.transform import is_singular
from jaxrender.scene.textures import (
    BitmapTexture,
    CheckerboardTexture,
    ConstantTexture,
    MeshAttributeTexture,
    Texture,
)

# BSDFs whose `bsdf` field holds nested BSDFs (twosided's is `brdf`).
_NESTING = (BlendBSDF, Mask, NormalMap, BumpMap)
_COLLECTIONS = (("shapes", "Mesh"), ("bsdfs", "BSDF"), ("emitters", "Emitter"), ("sensors", "Sensor"))
_MESH_PARAMS = ("vertex_positions", "vertex_normals", "vertex_texcoords", "to_world")


def _param_paths(scene: Scene) -> dict[str, list[tuple]]:
    """Maps each parameter name to the paths (attribute names and tuple
    indices from the scene) of the leaves it stands for."""
    out: dict[str, list[tuple]] = {}

    def add(name, path):
        out.setdefault(name, []).append(path)

    def texture(prefix, tex, path):
        if tex.id:
            prefix = tex.id
        if isinstance(tex, ConstantTexture):
            add(f"{prefix}.value", path + ("value",))
        elif isinstance(tex, BitmapTexture):
            add(f"{prefix}.data", path + ("data",))
            add(f"{prefix}.to_uv", path + ("to_uv",))
        elif isinstance(tex, CheckerboardTexture):
            add(f"{prefix}.color0.value", path + ("color0",))
            add(f"{prefix}.color1.value", path + ("color1",))
            add(f"{prefix}.to_uv", path + ("to_uv",))
        elif isinstance(tex, MeshAttributeTexture):
            add(f"{prefix}.scale", path + ("scale",))
        else:  # pragma: no cover
            raise TypeError(f"unknown texture type {type(tex).__name__}")

    def plugin(prefix, obj, path):
        # BSDFs and emitters: every non-static field, by its Mitsuba name.
        if isinstance(obj, TwoSided):
            for k, inner in enumerate(obj.brdf):
                plugin(inner.id or f"{prefix}.brdf_{k}", inner, path + ("brdf", k))
            return
        # Nested BSDFs, by Mitsuba's names: blendbsdf's bsdf_0 and bsdf_1,
        # mask's nested_bsdf.
        for k, inner in enumerate(obj.bsdf if isinstance(obj, _NESTING) else ()):
            role = f"bsdf_{k}" if isinstance(obj, BlendBSDF) else "nested_bsdf"
            plugin(inner.id or f"{prefix}.{role}", inner, path + ("bsdf", k))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("static") or value is None or f.name == "bsdf" and isinstance(obj, _NESTING):
                continue
            # An isotropic roughness is Mitsuba's "alpha".
            name = "alpha" if f.name == "alpha_u" and getattr(obj, "alpha_v", 0) is None else f.name
            name = "nested_texture" if isinstance(obj, BumpMap) and f.name == "texture" else name
            if isinstance(value, Texture):
                texture(f"{prefix}.{name}", value, path + (f.name,))
            else:
                add(f"{prefix}.{name}", path + (f.name,))

    for collection, label in _COLLECTIONS:
        for i, obj in enumerate(getattr(scene, collection)):
            prefix = obj.id or f"{label}[{i}]"
            path = (collection, i)
            if collection == "shapes":
                for name in _MESH_PARAMS:
                    if getattr(obj, name) is not None:
                        add(f"{prefix}.{name}", path + (name,))
                # Mesh attributes by their own names, as Mitsuba's traverse.
                for name in obj.attributes or {}:
                    add(f"{prefix}.{name}", path + ("attributes", name))
            elif collection == "sensors":
                # Every float leaf: to_world, fov, aperture_radius, focus_distance;
                # a batch's cameras as Mitsuba names them: "<batch>.<id or sensor<k>>".
                members = [(prefix, obj, path)]
                if isinstance(obj, BatchSensor):
                    members = [(f"{prefix}.{c.id or f'sensor{k}'}", c, path + ("sensors", k))
                               for k, c in enumerate(obj.sensors)]
                for name, cam, where in members:
                    for f in dataclasses.fields(cam):
                        if not f.metadata.get("static") and getattr(cam, f.name) is not None:
                            add(f"{name}.{f.name}", where + (f.name,))
            else:
                plugin(prefix, obj, path)
    return out


def _get(obj, path):
    for step in path:
        obj = obj[step] if isinstance(step, int) or isinstance(obj, dict) else getattr(obj, step)
    return obj


def _set(obj, path, value):
    if not path:
        return value
    step, rest = path[0], path[1:]
    if isinstance(obj, dict):
        return {**obj, step: _set(obj[step], rest, value)}
    if isinstance(step, int):
        items = list(obj)
        items[step] = _set(items[step], rest, value)
        return tuple(items)
    return dataclasses.replace(obj, **{step: _set(getattr(obj, step), rest, value)})


def traverse(scene: Scene) -> dict[str, jax.Array]:
    """The scene's differentiable parameters as a flat dict {name: array}.

    Args:
      scene: a Scene (concrete or traced).

    Returns:
      A dict from parameter names (see the module docstring) to the float32
      leaves of the scene, in order shapes, BSDFs, emitters, sensors.
    """
    if not isinstance(scene, Scene):
        raise TypeError(f"traverse expects a Scene, got {type(scene).__name__}")
    return {name: _get(scene, paths[0]) for name, paths in _param_paths(scene).items()}


def _checked_value(name: str, value, current, resizable: bool, field: str = ""):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f'parameter "{name}" must be a float array, got bool {value!r}')
    if isinstance(value, (int, float)):
        value = np.float32(value)
    elif isinstance(value, (list, tuple)):
        try:
            value = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise TypeError(f'parameter "{name}" must be a float array, got {type(value).__name__}') from None
    dtype = getattr(value, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f'parameter "{name}" must be a floating-point array, got dtype {dtype} '
                        f"({type(value).__name__})")
    shape = tuple(np.shape(value))
    if shape != current.shape:
        ok = resizable and len(shape) == 3 and shape[2] == current.shape[2] and shape[0] > 0 and shape[1] > 0
        if not ok:
            what = f"(H, W, {current.shape[2]})" if resizable else f"{current.shape}"
            raise ValueError(f'parameter "{name}" has shape {current.shape}; the new value must have shape '
                             f"{what}, got {shape}")
    value = jnp.asarray(value, dtype=jnp.float32)
    # A NaN parameter would not show as NaN pixels (the integrators zero
    # non-finite samples) but would poison gradients: refuse it where the
    # value is known (traced values, inside the user's jit, cannot be).
    if not isinstance(value, jax.core.Tracer) and not _all_finite(value):
        raise ValueError(f'parameter "{name}" has non-finite values (NaN or inf; float32 overflow?)')
    if field in ("fov", "to_world") and not isinstance(value, jax.core.Tracer):
        _check_geometry(name, field, np.asarray(value))  # a few numbers to the host
    return value


def _all_finite(value) -> bool:
    # Evaluated now even inside the user's jit, where a concrete value closed
    # over would otherwise become a traced check (and bool() of it an error).
    with jax.ensure_compile_time_eval():
        return bool(jnp.isfinite(value).all())


def _check_geometry(name: str, field: str, value: np.ndarray) -> None:
    """The checks the loader makes of a field of view and of a transform
    (the image would be black or flipped, or the shape gone, without a
    word). Materials and emitters are not range-checked: optimizers step
    through bounds that users clip to (as in Mitsuba, whose update takes
    any value)."""
    if field == "fov" and not 0.0 < float(value) < 180.0:
        raise ValueError(f'parameter "{name}" must be in (0, 180) degrees, got {float(value)}')
    if field == "to_world" and value.shape == (4, 4):
        a = value[:3, :3].astype(np.float64)
        if is_singular(a):
            raise ValueError(f'parameter "{name}" is singular (its 3x3 part {np.round(a, 6).tolist()} has no '
                             "inverse, which normals and directions need)")


def replace(scene: Scene, updates: Mapping[str, jax.typing.ArrayLike]) -> Scene:
    """A new scene with some parameters replaced by name.

    Args:
      scene: a Scene.
      updates: {name: value} with names from `traverse(scene)`. Each value
        must be a floating-point array (Python floats and lists are taken as
        float32) of the parameter's current shape; the data of a bitmap
        texture or environment map may also change resolution (H, W) but not
        its channel count. Values are cast to float32. Differentiable: the
        result's leaves are the given values (traced values stay traced).

    Returns:
      A new Scene; `scene` is unchanged. Replacing a mesh's
      `vertex_positions` also recomputes its `vertex_normals` from them (as
      Mitsuba's update does), differentiably, unless `vertex_normals` is
      replaced in the same call or the mesh uses face normals.

    Raises:
      ValueError: unknown names (close matches are listed), wrong shapes
        (naming the parameter and both shapes), or NaN / inf values (checked
        outside jit only: traced values cannot be inspected).
      TypeError: non-float values.
    """
    if not isinstance(scene, Scene):
        raise TypeError(f"replace expects a Scene, got {type(scene).__name__}")
    if not isinstance(updates, Mapping):
        raise TypeError(f"updates must be a mapping from parameter names to arrays, got {type(updates).__name__}")
    paths = _param_paths(scene)
    unknown = [name for name in updates if name not in paths]
    if unknown:
        lines = []
        for name in unknown:
            close = difflib.get_close_matches(str(name), list(paths), n=5, cutoff=0.5)
            lines.append(f"{name!r}" + (f" (close: {', '.join(close)})" if close else ""))
        raise ValueError(f"unknown scene parameter{'s' if len(unknown) > 1 else ''}: {'; '.join(lines)}. "
                         f"traverse(scene) lists the {len(paths)} parameters.")
    changed = set()
    for name, value in updates.items():
        first = paths[name][0]
        current = _get(scene, first)
        parent = _get(scene, first[:-1])
        resizable = first[-1] == "data" and isinstance(parent, (BitmapTexture, EnvironmentMap))
        value = _checked_value(name, value, current, resizable, str(first[-1]))
        for path in paths[name]:
            scene = _set(scene, path, value)
            changed.add(path)
    for i, mesh in enumerate(scene.shapes):
        if (("shapes", i, "vertex_positions") in changed and mesh.vertex_normals is not None
                and ("shapes", i, "vertex_normals") not in changed):
            normals = vertex_normals(mesh.vertex_positions, mesh.faces.array)
            scene = _set(scene, ("shapes", i, "vertex_normals"), normals)
    return scene
