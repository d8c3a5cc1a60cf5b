"""Emitter sampling and evaluation for the integrators (world space).

An emitter is picked uniformly among the scene's emitters, reusing the
random number as Mitsuba's `Scene::sample_emitter` does. Area lights are
sampled uniformly by area over their shape's triangles and converted to
solid angle; point lights are deltas; the constant environment is sampled
uniformly over the sphere.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrender.geometry import occluded
from jaxrender.integrators._math import (
    dot,
    materialize,
    safe_norm,
    safe_normalize,
    search_cdf,
    squared_norm,
)
from jaxrender.integrators.bsdfs import texture_at
from jaxrender.integrators.interaction import SHADOW_EPSILON, SceneArrays, offset_origin, texture_coords
from jaxrender.integrators.warp import (
    PiecewiseConstant2D,
    luminance,
    power_heuristic,
    square_to_uniform_sphere,
    square_to_uniform_sphere_pdf,
    to_local,
)
from jaxrender.scene import (
    AreaLight,
    ConstantEmitter,
    DirectionalLight,
    EnvironmentMap,
    PointLight,
    Scene,
    SpotLight,
)
from jaxrender.scene.emitters import (
    delta_light_incident,
    environment_direction,
    environment_uv,
    eval_environment,
)

SUPPORTED = (AreaLight, PointLight, SpotLight, DirectionalLight, ConstantEmitter, EnvironmentMap)
DELTA_LIGHTS = (PointLight, SpotLight, DirectionalLight)


class AreaTable(NamedTuple):
    """An area light's triangle-area CDF (F,) over its shape's faces, and the
    shape's total area."""

    cdf: jax.Array
    total: jax.Array


def light_tables(scene: Scene, arrays: SceneArrays) -> dict:
    """What emitter sampling needs that depends only on the scene, by emitter
    index, built once per render rather than at every bounce: for an
    environment map, its importance-sampling distribution (texel luminance
    times sin(theta) of the texel's row: lat-long texels shrink towards the
    poles); for an area light, its `AreaTable`."""
    out = {}
    for i, e in enumerate(scene.emitters):
        if isinstance(e, EnvironmentMap):
            h = e.data.shape[0]
            theta = jnp.pi * (jnp.arange(h, dtype=jnp.float32) + 0.5) / h
            out[i] = PiecewiseConstant2D.build(luminance(e.data) * jnp.sin(theta)[:, None])
        elif isinstance(e, AreaLight):
            out[i] = shape_area_table(arrays, e.shape)
    return out


class EmitterSample(NamedTuple):
    """A sampled direction towards an emitter from reference points.

    d: (N, 3) unit direction; dist: (N,) distance (inf for infinite emitters);
    weight: (N, 3) emitted radiance / pdf (pdf includes the 1/#emitters
    selection); pdf: (N,) solid-angle density (0 for deltas is not used: see
    is_delta); is_delta: (N,) bool.
    """

    d: jax.Array
    dist: jax.Array
    weight: jax.Array
    pdf: jax.Array
    is_delta: jax.Array


def check_supported(scene: Scene):
    for e in scene.emitters:
        if not isinstance(e, SUPPORTED):
            raise NotImplementedError(
                f"rendering with a {type(e).__name__} is not supported yet "
                f"(supported: {', '.join(t.__name__ for t in SUPPORTED)})")


def _take_row(table, index):
    """table[index] for a small table (rows picked by selects: XLA:CPU's
    gather costs several times more per element than a short select chain);
    a gather above 8 rows."""
    if table.shape[0] > 8:
        return table[index]
    shape = index.shape + table.shape[1:]
    return _select(index, [jnp.broadcast_to(row, shape) for row in table])


def _shape_faces(arrays: SceneArrays, shape: int):
    """The contiguous face range of a shape in the world soup (static)."""
    idx = np.nonzero(arrays.shape_of_face == shape)[0]
    return int(idx[0]), int(idx[-1]) + 1


def _triangle_areas(arrays: SceneArrays, f0: int, f1: int):
    f = jnp.asarray(arrays.faces[f0:f1])
    v = arrays.vertices
    e1 = v[f[:, 1]] - v[f[:, 0]]
    e2 = v[f[:, 2]] - v[f[:, 0]]
    return 0.5 * safe_norm(jnp.cross(e1, e2))  # sliver faces: no NaN derivatives


class ShapeSample(NamedTuple):
    """Points drawn uniformly by area on a shape (`sample_shape_position`).

    p: (N, 3) points; n: (N, 3) unit normals (interpolated vertex normals on
    smooth meshes, flipped with flip_normals, as Mitsuba's sample_position);
    tri: (N,) face index within the shape; b1, b2: (N,) barycentrics (held
    under differentiation: the points move with the vertices); cross: (N, 3)
    the face's edge cross product; ok: (N,) the face has area and the shape
    too; jacobian: (N,) the shape's total area in value, whose derivative
    is that of the attached sample's face area (area_k * detach(total /
    area_k)): a sample's value times jacobian / total averages over the
    area (in value: it is 1), and jacobian alone integrates over it.
    """

    p: jax.Array
    n: jax.Array
    tri: jax.Array
    b1: jax.Array
    b2: jax.Array
    cross: jax.Array
    ok: jax.Array
    jacobian: jax.Array


def shape_area_table(arrays: SceneArrays, shape: int) -> AreaTable:
    """The triangle-area CDF of a shape's faces and its total area."""
    f0, f1 = _shape_faces(arrays, shape)
    areas = _triangle_areas(arrays, f0, f1)
    total = jnp.sum(areas)
    return AreaTable(jnp.cumsum(areas) / total, total)


def pick_reusing(cdf, u):
    """The entry of a normalized CDF (K,) that uniform u (N,) falls in, and u
    rescaled to [0, 1) inside its interval (Mitsuba's sample reuse): (index
    (N,) in [0, K), reused u (N,))."""
    k = jnp.clip(search_cdf(cdf, u), 0, cdf.shape[0] - 1)
    lo = jnp.where(k > 0, cdf[jnp.maximum(k - 1, 0)], 0.0)
    return k, jnp.clip((u - lo) / jnp.maximum(cdf[k] - lo, 1e-30), 0.0, 1.0 - 2**-24)


def sample_shape_position(scene, arrays: SceneArrays, shape: int, table: AreaTable, u, u2) -> ShapeSample:
    """Points uniformly by area on scene.shapes[shape], from uniform u, u2
    (N,) (u picks the face and is reused inside it, as Mitsuba does)."""
    f0, f1 = _shape_faces(arrays, shape)
    cdf, total = table
    tri, w = pick_reusing(cdf, u)
    # The sample is attached to the surface: the triangle and the
    # barycentrics are held, the point moves with the vertices. (Through the
    # area CDF they would move with the vertices too, and jump between
    # triangles: a boundary term no per-sample derivative has; measured 40%
    # off for a non-rigid deformation of the light.)
    w = jax.lax.stop_gradient(w)
    u2 = jax.lax.stop_gradient(u2)
    # Corner positions of the shape's triangles, then each sample's row: one
    # small-table lookup instead of gathers through the face table.
    f = np.asarray(arrays.faces[f0:f1])
    v0, v1, v2 = (_take_row(arrays.vertices[f[:, k]], tri) for k in range(3))
    # Square to uniform triangle (Mitsuba's warp).
    s = jnp.sqrt(1.0 - w)
    b1 = 1.0 - s
    b2 = u2 * s
    q = (1.0 - b1 - b2)[:, None] * v0 + b1[:, None] * v1 + b2[:, None] * v2
    cross = jnp.cross(v1 - v0, v2 - v0)
    if arrays.smooth_shape[shape]:
        # The side and the cosine follow the interpolated vertex normal, as
        # in Mitsuba (sample_position's normal) and as `area_emission` sees
        # a light: under a mirroring to_world the winding, and so the face
        # normal, points inwards.
        n = safe_normalize(sum(w[:, None] * _take_row(arrays.normals[f[:, k]], tri)
                               for k, w in enumerate((1.0 - b1 - b2, b1, b2))))
    else:
        n = safe_normalize(cross)
    if scene.shapes[shape].flip_normals:
        n = -n
    area2 = squared_norm(cross)
    ok = (area2 > 0) & (total > 0)
    area_k = 0.5 * jnp.sqrt(jnp.where(ok, area2, 1.0))  # double where: no 0 * inf
    jacobian = area_k * jax.lax.stop_gradient(jnp.where(ok, total, 1.0) / area_k)
    return ShapeSample(q, n, tri, b1, b2, cross, ok, jacobian)


def _sample_area(scene, arrays, emitter: AreaLight, table: AreaTable, p, u, u2):
    """Uniform point on the emitting shape; radiance/pdf towards p."""
    f0, f1 = _shape_faces(arrays, emitter.shape)
    total = table.total
    sp = sample_shape_position(scene, arrays, emitter.shape, table, u, u2)
    q, n, tri, b1, b2 = sp.p, sp.n, sp.tri, sp.b1, sp.b2
    f = np.asarray(arrays.faces[f0:f1])
    # Texture coordinates as at a hit (surface_interaction): uv, Mitsuba's
    # (b1, b2) on a mesh without uvs, and the mesh attributes.
    has_uv = None
    if scene.shapes[emitter.shape].vertex_texcoords is None:
        has_uv = jnp.zeros(tri.shape, bool)
    fu = texture_coords(arrays, lambda t: tuple(_take_row(t[f[:, k]], tri) for k in range(3)),
                        lambda t: _take_row(t[f0:f1], tri), b1[:, None], b2[:, None], has_uv)
    diff = q - p
    dist2 = jnp.sum(diff * diff, axis=-1)
    dist = jnp.sqrt(jnp.maximum(dist2, 1e-30))
    d = diff / dist[:, None]
    cos_l = -dot(d, n)
    ok = (cos_l > 1e-12) & (total > 0) & (dist2 > 1e-30)
    # Double where: rejected samples compute with safe stand-ins, so their
    # (discarded) derivatives are 0, not inf * 0 = NaN.
    pdf = jnp.where(ok, dist2, 1.0) / (jnp.where(ok, cos_l, 1.0) * jnp.where(total > 0, total, 1.0))
    radiance = _rgb(texture_at(emitter.radiance, fu))
    # radiance / pdf = radiance cos_l total / dist^2, with total (= the
    # triangle's area over its held selection probability) differentiated
    # as the attached sample's Jacobian (ShapeSample.jacobian). The returned
    # pdf stays live for MIS, the same function as `area_emission`'s.
    ok = ok & sp.ok
    scale = jnp.where(ok, cos_l, 0.0) * sp.jacobian / jnp.where(ok, dist2, 1.0)
    weight = jnp.where(ok[:, None], radiance * scale[:, None], 0.0)
    return d, dist, weight, jnp.where(ok, pdf, 0.0), jnp.zeros_like(ok)


def _rgb(x):
    return jnp.broadcast_to(x, x.shape[:-1] + (3,))


def sample_emitter(scene: Scene, arrays: SceneArrays, p, u_select, u2, tables=None) -> EmitterSample:
    """One emitter sample per reference point p (N, 3); u_select (N,), u2 (N, 2).
    tables: `light_tables(scene, arrays)` (built here if None)."""
    if tables is None:
        tables = light_tables(scene, arrays)
    n_em = len(scene.emitters)
    index = jnp.minimum((u_select * n_em).astype(jnp.int32), n_em - 1)
    outs = []
    for i, e in enumerate(scene.emitters):
        if isinstance(e, AreaLight):
            outs.append(_sample_area(scene, arrays, e, tables[i], p, u2[:, 0], u2[:, 1]))
        elif isinstance(e, DELTA_LIGHTS):
            wi, dist, value = delta_light_incident(e, p)
            outs.append((wi, dist, value, jnp.ones_like(dist), jnp.ones(dist.shape, bool)))
        elif isinstance(e, EnvironmentMap):
            dist2d = tables[i]
            uv, pdf_uv = dist2d.sample(u2)
            # A detached sample, as Mitsuba's: which texel is drawn and where
            # inside it depend on `data` through the CDFs, and a sample moving
            # with `data` crosses texel edges where radiance / pdf jumps (a
            # boundary term no per-sample derivative has; measured: data
            # gradients 10% low). With uv held, radiance / detach(pdf) is
            # unbiased. The returned pdf stays live for the MIS weight, the
            # same function of (direction, data) as `environment_emission`'s,
            # so the two strategies' weights still sum to one in derivative.
            uv = jax.lax.stop_gradient(uv)
            d, factor = environment_direction(e, uv)
            pdf = pdf_uv * factor
            radiance = eval_environment(e, d)
            ok = pdf > 0
            held = jax.lax.stop_gradient(jnp.where(ok, pdf, 1.0))
            outs.append((d, jnp.full(pdf.shape, jnp.inf), jnp.where(ok[:, None], radiance / held[:, None], 0.0),
                         pdf, jnp.zeros(pdf.shape, bool)))
        elif isinstance(e, ConstantEmitter):
            d = square_to_uniform_sphere(u2)
            pdf = square_to_uniform_sphere_pdf(d)
            radiance = _rgb(texture_at(e.radiance, jnp.zeros(p.shape[:-1] + (2,), jnp.float32)))
            outs.append((d, jnp.full(pdf.shape, jnp.inf), radiance / pdf[:, None], pdf,
                         jnp.zeros(pdf.shape, bool)))
    sel = lambda xs: _select(index, xs)
    d, dist, weight, pdf, delta = (sel([o[k] for o in outs]) for k in range(5))
    # Selection probability 1 / n_em.
    return EmitterSample(d, dist, weight * n_em, pdf / n_em, delta)


def _select(index, values):
    out = jnp.zeros_like(values[0])
    for i, v in enumerate(values):
        mask = (index == i).reshape(index.shape + (1,) * (v.ndim - index.ndim))
        out = jnp.where(mask, v, out)
    return out


def area_emission(scene: Scene, arrays: SceneArrays, si, d, tables=None):
    """Radiance leaving the hit points towards -d (front side of area lights),
    and the solid-angle pdf of having sampled that point by `sample_emitter`.
    tables: `light_tables(scene, arrays)` (built here if None)."""
    if tables is None:
        tables = light_tables(scene, arrays)
    n_em = max(len(scene.emitters), 1)
    radiance = jnp.zeros(si.p.shape, jnp.float32)
    pdf = jnp.zeros(si.t.shape, jnp.float32)
    cos_l = -dot(d, si.sh_n)
    for i, e in enumerate(scene.emitters):
        if not isinstance(e, AreaLight):
            continue
        mine = (si.emitter == i) & (cos_l > 1e-12)
        value = _rgb(texture_at(e.radiance, si.uv))
        radiance = jnp.where(mine[:, None], value, radiance)
        pdf_a = 1.0 / tables[i].total
        # Double where: misses have t = inf; other lanes get safe stand-ins.
        t = jnp.where(mine, si.t, 1.0)
        pdf_s = pdf_a * t * t / jnp.where(mine, cos_l, 1.0)
        pdf = jnp.where(mine, pdf_s / n_em, pdf)
    return radiance, pdf


def environment_emission(scene: Scene, d, tables):
    """Radiance arriving from infinite emitters along -d (rays that escaped),
    and the solid-angle pdf of `sample_emitter` producing d.
    tables: `light_tables(scene, arrays)`."""
    n_em = max(len(scene.emitters), 1)
    radiance = jnp.zeros(d.shape, jnp.float32)
    pdf = jnp.zeros(d.shape[:-1], jnp.float32)
    for i, e in enumerate(scene.emitters):
        if isinstance(e, EnvironmentMap):
            radiance = radiance + eval_environment(e, d)
            uv, factor = environment_uv(e, d)
            pdf = pdf + tables[i].pdf(uv) * factor / n_em
        if isinstance(e, ConstantEmitter):
            radiance = radiance + _rgb(texture_at(e.radiance, jnp.zeros(d.shape[:-1] + (2,), jnp.float32)))
            pdf = pdf + square_to_uniform_sphere_pdf(d) / n_em
    return radiance, pdf


def emission_along(scene: Scene, arrays: SceneArrays, si, d, tables):
    """Radiance reaching the ray origins along rays d whose interactions are si
    (area lights where they hit, infinite emitters where they escaped), and
    the solid-angle pdf with which `sample_emitter` would have produced it."""
    le_area, pdf_area = area_emission(scene, arrays, si, d, tables)
    le_env, pdf_env = environment_emission(scene, d, tables)
    return (jnp.where(si.valid[:, None], le_area, le_env),
            jnp.where(si.valid, pdf_area, pdf_env))


def next_event(scene: Scene, arrays: SceneArrays, si, frame, wi, bsdfs, u, tables, active,
               frac_em=1.0, frac_bsdf=1.0):
    """One emitter sample per shading point, shadow-tested and MIS-weighted
    against BSDF sampling (power heuristic on densities scaled by each
    strategy's share of samples, as Mitsuba's `direct`; 1 and 1 in `path`).

    u: (N, 3) uniforms. Returns (N, 3) bsdf * emitted / pdf * weight, zero
    where inactive, occluded or the sample failed."""
    es = sample_emitter(scene, arrays, si.p, u[:, 0], u[:, 1:3], tables)
    # Into buffers: the shadow ray, the BSDF evaluation and the MIS weight
    # would each recompute the sample (gathers, square roots) per element.
    es = es._replace(d=materialize(es.d), weight=materialize(es.weight), pdf=materialize(es.pdf),
                     dist=materialize(es.dist))
    origin = offset_origin(si.p, si.n, es.d)
    shadow_t = jnp.where(jnp.isfinite(es.dist), es.dist * (1.0 - SHADOW_EPSILON), jnp.inf)
    ok = active & (es.pdf > 0)
    blocked = occluded(arrays.accel, arrays.vertices, arrays.faces, origin, es.d,
                       jnp.where(ok, shadow_t, 0.0))
    wo = to_local(frame, es.d)
    w = jnp.where(es.is_delta, 1.0, power_heuristic(es.pdf * frac_em, bsdfs.pdf(wi, wo) * frac_bsdf))
    return jnp.where((ok & ~blocked)[:, None], bsdfs.eval(wi, wo) * es.weight * w[:, None], 0.0)
