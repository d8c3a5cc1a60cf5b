"""Arbitrary output variables (Mitsuba's `aov` integrator, PSDR's field
extraction): per-pixel averages of first-hit quantities.

AOV types (Mitsuba's names, plus aliases): depth (1 channel: distance along
the camera ray, 0 on a miss), position (3, world), geo_normal / ng (3),
sh_normal / nn (3), uv (2), shape_index (1, -1 on a miss... averaged, so
use 1 spp for exact ids), mask (1: coverage, the silhouette mask), albedo (3:
the diffuse reflectance of diffuse and (rough)plastic BSDFs, 0 for others).
Misses give 0 except shape_index.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrender.integrators.bsdfs import nested_bsdfs, texture_at, unit_weight
from jaxrender.integrators.interaction import surface_interaction, trace
from jaxrender.scene import BlendBSDF, BumpMap, Diffuse, Mask, NormalMap, Plastic, Principled, PrincipledThin, RoughPlastic, TwoSided
from jaxrender.scene.scene import AOV_ALIASES as _ALIASES
from jaxrender.scene.scene import AOV_CHANNELS as _CHANNELS


def _types(cfg):
    out = []
    if not cfg.aov_list:
        raise ValueError("the aov integrator needs at least one AOV (e.g. 'aov:depth,nn')")
    for name, kind in cfg.aov_list:
        kind = _ALIASES.get(kind, kind)
        if kind not in _CHANNELS:
            raise ValueError(f"unknown AOV type {kind!r} (for {name!r}); known: {', '.join(sorted(_CHANNELS))}")
        out.append(kind)
    return out


def aov_channel_names(cfg) -> list[str]:
    """Names of the channels `render` returns for an aov config, as EXR
    channels: the nested integrator's R, G, B, then per AOV `name` (1
    channel), `name.U`/`.V` (uv), `name.R`/`.G`/`.B` (albedo) or
    `name.X`/`.Y`/`.Z`."""
    out = ["R", "G", "B"] if cfg.nested is not None else []
    for (name, _), kind in zip(cfg.aov_list, _types(cfg)):
        n = _CHANNELS[kind]
        suffixes = {1: [""], 2: [".U", ".V"]}.get(n, [".R", ".G", ".B"] if kind == "albedo" else [".X", ".Y", ".Z"])
        out.extend(name + s for s in suffixes)
    return out


def aov_channels(cfg) -> int:
    nested = 3 if cfg.nested is not None else 0
    return nested + sum(_CHANNELS[k] for k in _types(cfg))


def _diffuse_reflectance(b, uv):
    """Mitsuba's `eval_diffuse_reflectance` (the albedo AOV) at uv (N, 2):
    (N, 3), or None where the BSDF has no diffuse part."""
    if isinstance(b, Diffuse):
        return texture_at(b.reflectance, uv)
    if isinstance(b, (Principled, PrincipledThin)):
        return texture_at(b.base_color, uv)
    if isinstance(b, (Plastic, RoughPlastic)):
        return texture_at(b.diffuse_reflectance, uv)
    if isinstance(b, (TwoSided, Mask, NormalMap, BumpMap)):
        return _diffuse_reflectance(nested_bsdfs(b)[0], uv)
    if isinstance(b, BlendBSDF):
        w = unit_weight(b.weight, uv)[..., None]
        parts = [_diffuse_reflectance(x, uv) for x in b.bsdf]
        if parts[0] is None and parts[1] is None:
            return None
        a, c = (jnp.zeros(uv.shape[:-1] + (3,), jnp.float32) if x is None else x for x in parts)
        return a * (1.0 - w) + c * w
    return None


def _albedo(scene, si):
    out = jnp.zeros(si.p.shape, jnp.float32)
    for i, b in enumerate(scene.bsdfs):
        value = _diffuse_reflectance(b, si.uv)
        if value is None:
            continue
        out = jnp.where((si.bsdf == i)[:, None], jnp.broadcast_to(value, si.p.shape), out)
    return out


def trace_aovs(scene, arrays, cfg, origins, directions, key, t_max=None):
    """(N, C) AOV values of camera rays (nested integrator's RGB first)."""
    from jaxrender.integrators.path import trace_paths

    hit = trace(arrays, origins, directions, t_max)
    si = surface_interaction(arrays, hit, origins, directions)
    v = si.valid[:, None]
    values = []
    if cfg.nested is not None:
        values.append(trace_paths(scene, arrays, cfg.nested, origins, directions, key, t_max))
    for kind in _types(cfg):
        if kind == "depth":
            values.append(jnp.where(si.valid, si.t, 0.0)[:, None])
        elif kind == "position":
            values.append(si.p)
        elif kind == "geo_normal":
            values.append(si.n)
        elif kind == "sh_normal":
            values.append(si.sh_n)
        elif kind == "uv":
            values.append(si.uv[..., :2])  # the mesh attributes after it are not the AOV
        elif kind == "shape_index":
            values.append(si.shape.astype(jnp.float32)[:, None])
        elif kind == "mask":
            values.append(v.astype(jnp.float32))
        elif kind == "albedo":
            values.append(_albedo(scene, si))
    return jnp.concatenate(values, axis=-1)
