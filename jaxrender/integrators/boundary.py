"""Primary-edge boundary term: the derivative of the image that comes from
silhouettes and creases moving across pixels (edge sampling, as PSDR and
Li et al. 2018 do it).

A pixel's value is an integral of the radiance f over the pixel's footprint
on the film. When geometry or the camera moves, the interior derivative
(`jax.jvp` through the path tracer with the hit triangles held fixed) misses
the change from regions swept by the visible edges:

    dI_p/dtheta (boundary) = integral over edges in pixel p of
                             (f(x - eps n) - f(x + eps n)) (n . dx/dtheta) dl

with n the edge's normal in film space and x a point moving with the edge.
We sample film-space edge points in proportion to their projected length
(one CDF over every candidate edge, clipped to the film), estimate the
radiance on both sides with the active integrator (one path each), and add
the estimate as a zero-valued surrogate whose derivative is the integral:
`boundary_term` returns zeros, and its custom JVP returns
sum(dL * (n . x(theta))) / pdf differentiated through x(theta), the
projection of the sampled edge point carried by the scene's vertices, the
shapes' `to_world` and the camera. With no geometry or camera tangent it
costs nothing.

Candidate edges: boundary edges (one face), silhouette edges (the two faces
face opposite ways as seen from the camera) and creases where the shading
jumps: for meshes shaded with face normals, every edge between faces whose
normals differ; for smooth meshes, edges whose two faces carry different
vertex normals at its ends (jumps of textures across uv seams are not
edges here). Edges are matched by position, not by vertex index, so a mesh whose
faces do not share vertices (Mitsuba's 24-vertex `cube`) gets the same,
single-counted edges as its welded version. Edges with an end behind the
near plane are skipped.

Through a thin lens, the image is an average over lens points, each of
which sees the edges through a pinhole of its own. Each edge sample
therefore draws a lens point (uniform, as the render's rays do) and a point
uniform on the chosen edge's image through it; the edge itself is chosen
by its length through the lens centre, widened by how far the lens can
move its ends (`_defocus_reach`), among the edges that are a silhouette
from some point of the lens. The edge's film motion for that lens point
includes the lens's own (aperture radius, focus distance).

Secondary edges for direct illumination: at a shading point x, a point y
on a scene edge (resampled from 8 points uniform by length over the
unique edges, towards silhouettes seen from x: `_pick_edge_points`) that is a
silhouette as seen from x and visible from it bounds the emitters'
visibility; the radiance arriving just beside the edge on both sides
(emission only) times the BSDF gives the jump, and the sample enters as
weight * n . (y(theta) - x(theta)), with n the normal of the plane through
x and the edge, x moving with the ray that found it. `direct` adds it at
the first hit of each camera ray (`shadow_term`); `path` and `prb` at every
vertex of every path, times the path throughput, wherever they do
next-event estimation (`nee_edge_term`): shadows seen in mirrors, through
glass or lighting other surfaces. At vertices from which the path goes on
to sample emitters again, `path` and `prb` add to the emission beside the
edge the direct light reflected by the surfaces seen there (one emitter
sample at each side's hit, the same for both): the visibility changes of
one bounce of indirect light, such as an occluder hiding a lit surface
from x. Light reflected twice or more beside an edge is left out. The
estimate is unbiased but noisy: resampling towards silhouettes halves
the noise behind a 320-triangle occluder, but visibility, the radiance
jump and the edge's motion are unknown when the point is picked (35-39%
between keys at 512 spp there, 10-12% at 1024 spp on the indirect test
scene).

Shadows of delta lights (point, spot, directional; `delta_shadow_term`):
seen from a shading point such a light is visible or not, so its shadows
bound the pixel integral instead. A point y on a scene edge, the light's
ray through it and the surface point x that ray lights just beside the
occluder give a point of the shadow's outline; where the camera sees x,
it enters as a primary edge does, with the light's direct contribution at
x as the jump and its film-space motion differentiated through the edge's
vertices, the receiving triangle, the light's placement and the camera.
`direct`, `path` and `prb` add it for the camera rays' first hits (through
a thin lens, from a lens point drawn per sample); the shadows of delta
lights seen in mirrors or through glass, and a spot light's hard cone
edge, have no boundary term.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from jaxrender.geometry import occluded
from jaxrender.geometry.world import flatten_scene
from jaxrender.integrators._math import (
    NumpyLeaves,
    dot,
    jvp_nonzero,
    safe_normalize,
    search_cdf,
    zero_nonfinite,
)
from jaxrender.integrators.film import clip_t_max, filter_reach, filter_weight
from jaxrender.integrators.interaction import (
    bsdfs_at,
    frame_at,
    offset_origin,
    prepare_scene,
    surface_interaction,
)
from jaxrender.integrators.interaction import trace as trace_rays
from jaxrender.integrators.lights import (
    DELTA_LIGHTS,
    emission_along,
    light_tables,
    next_event,
)
from jaxrender.integrators.warp import power_heuristic, to_local
from jaxrender.scene import (
    DirectionalLight,
    IntegratorConfig,
    Camera,
    OrthographicCamera,
    PointLight,
    Radiancemeter,
    Scene,
    ThinLensCamera,
    camera_rays,
    transform_points,
)
from jaxrender.scene.emitters import delta_light_incident, emitter_direction
from jaxrender.scene.sensors import METERS, PerspectiveCamera, film_position, lens_points, sample_ray

# Offset of the two radiance samples from the edge, in pixels: far enough
# that float32 film positions separate them, close enough that both stay
# next to the edge in the same pixel.
SIDE_OFFSET = 1e-3


def _project(camera: Camera, points, aperture=None):
    """World points (..., 3) -> image positions in pixels (..., 2) (from the
    crop window's top-left corner) and camera-space depth (...,); the
    inverse of `sample_ray` after `film_position`. A thin lens projects
    through its point for `aperture` (..., 2) (None: its centre): the film
    position whose ray from that lens point passes through the point."""
    local = transform_points(jnp.linalg.inv(camera.to_world), points)
    z = local[..., 2]
    if isinstance(camera, OrthographicCamera):
        fx = (1.0 - local[..., 0]) * 0.5
        fy = (1.0 - local[..., 1] * camera.aspect) * 0.5
    else:
        tan_x = jnp.tan(jnp.deg2rad(camera.x_fov) * 0.5)
        tan_y = tan_x / camera.aspect
        safe_z = jnp.where(z > 0, z, 1.0)
        lens = lens_points(camera, aperture)
        if lens is None:
            qx, qy = local[..., 0] / safe_z, local[..., 1] / safe_z
        else:
            # The lens point's ray through the point meets the focal plane
            # at q = l + (p - l) fd / z; the film position is q's pinhole one.
            fd = camera.focus_distance
            qx = lens[..., 0] / fd + (local[..., 0] - lens[..., 0]) / safe_z
            qy = lens[..., 1] / fd + (local[..., 1] - lens[..., 1]) / safe_z
        fx = (1.0 - qx / tan_x) * 0.5
        fy = (1.0 - qy / tan_y) * 0.5
        if isinstance(camera, PerspectiveCamera):
            fx, fy = fx - camera.principal_point[0], fy - camera.principal_point[1]
    f = camera.film
    return jnp.stack([fx * f.width - f.crop_offset_x, fy * f.height - f.crop_offset_y], -1), z


def _defocus_reach(camera: Camera, z):
    """The farthest (in pixels) that a thin lens moves the image of points
    at camera-space depth z (...,) away from their image through the lens
    centre: r |1/fd - 1/z| / tan(fov_x / 2) * width / 2 (the same along y
    for square pixels). Zero for other cameras."""
    if not isinstance(camera, ThinLensCamera):
        return jnp.zeros_like(z)
    tan_x = jnp.tan(jnp.deg2rad(camera.x_fov) * 0.5)
    safe_z = jnp.where(z > 0, z, 1.0)
    return (jnp.abs(camera.aperture_radius) * jnp.abs(1.0 / camera.focus_distance - 1.0 / safe_z)
            * (0.5 * camera.film.width) / tan_x)


def _eye(camera: Camera, aperture=None):
    """World positions of the eye: a thin lens's points for `aperture`
    (..., 3), else the camera's position (3,)."""
    lens = lens_points(camera, aperture)
    if lens is None:
        return camera.to_world[:3, 3]
    return transform_points(camera.to_world, lens)


def _towards_camera(camera: Camera, points, aperture=None):
    """Vectors (..., 3) from world points towards the camera: to its eye (a
    thin lens's point for `aperture`), or against an orthographic camera's
    view axis."""
    if isinstance(camera, OrthographicCamera):
        return jnp.broadcast_to(-camera.to_world[:3, 2], points.shape)
    return _eye(camera, aperture) - points


def _camera_rays_to(camera: Camera, x, aperture=None):
    """The primary rays that reach world points x (N, 3), from a thin lens's
    points for `aperture` (N, 2) (None: its centre): (origins, unit
    directions, distances to x)."""
    if isinstance(camera, OrthographicCamera):
        u, _ = _project(camera, x)
        o, d = sample_ray(camera, film_position(camera, u))
    else:
        o = jnp.broadcast_to(_eye(camera, aperture), x.shape)
    dist = jnp.linalg.norm(x - o, axis=-1)
    return o, (x - o) / jnp.maximum(dist, 1e-20)[:, None], dist


def _check_camera(camera: Camera):
    """Boundary terms follow edges across the film of a camera; meters have
    none."""
    if isinstance(camera, METERS):
        raise NotImplementedError(
            f"visibility boundary terms (silhouettes, shadows) are not implemented for the "
            f"{type(camera).__name__}: geometry and sensor derivatives would miss them. Pass boundary=False "
            "to render for the interior derivatives only.")


def _unique_edges(vertices, faces, shape_of_face):
    """Every half-edge of the scene, sorted so that the half-edges of one
    geometric edge (same shape, same end positions) are adjacent. Returns
    (ia, ib, face1, face2, first, shape): end vertex indices (3F,), the
    half-edge's face and the next one's on the same edge (-1: none), whether
    it is the first of its edge (the one to sample), and its shape index."""
    f = np.asarray(faces)
    nf = f.shape[0]
    a = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    b = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    face = np.tile(np.arange(nf, dtype=np.int32), 3)
    shape = np.asarray(shape_of_face)[face]
    v = jax.lax.stop_gradient(vertices)
    pa, pb = v[a], v[b]
    # Order each edge's ends lexicographically by position so both faces of
    # an edge produce the same key.
    swap = (pa[:, 0] > pb[:, 0]) | ((pa[:, 0] == pb[:, 0]) & (
        (pa[:, 1] > pb[:, 1]) | ((pa[:, 1] == pb[:, 1]) & (pa[:, 2] > pb[:, 2]))))
    lo = jnp.where(swap[:, None], pb, pa)
    hi = jnp.where(swap[:, None], pa, pb)
    ia = jnp.where(swap, b, a)
    ib = jnp.where(swap, a, b)
    keys = (jnp.asarray(shape), lo[:, 0], lo[:, 1], lo[:, 2], hi[:, 0], hi[:, 1], hi[:, 2])
    # Behind a barrier: with the scene closed over by the user's jit the keys
    # are constants, and XLA would constant-fold the sort at compile time
    # (measured 1.5 min for 32k triangles).
    order = jnp.lexsort(jax.lax.optimization_barrier(keys)[::-1])
    sk = [k[order] for k in keys]
    same_prev = functools.reduce(jnp.logical_and, [jnp.concatenate([jnp.zeros(1, bool), k[1:] == k[:-1]]) for k in sk])
    same_next = jnp.concatenate([same_prev[1:], jnp.zeros(1, bool)])
    face1 = jnp.asarray(face)[order]
    face2 = jnp.where(same_next, jnp.roll(face1, -1), -1)
    return ia[order], ib[order], face1, face2, ~same_prev, sk[0]


def _face_normals(vertices, faces, fi):
    v = jax.lax.stop_gradient(vertices)
    tri = v[jnp.asarray(faces)[jnp.maximum(fi, 0)]]
    return safe_normalize(jnp.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :]))


def _candidate_edges(scene: Scene, vertices, normals, faces, shape_of_face, camera):
    """The unique edges that can be discontinuities of the image seen by
    `camera`: returns (v0, v1) global vertex indices (3F,), a bool mask of
    candidates, a bool mask of those that are discontinuities from any
    viewpoint (boundary edges and creases), and the two faces' unit normals
    (3F, 3) each (zero where there is no second face). Through a thin lens
    an edge is a candidate if it is a silhouette from any point of the lens
    (a conservative test: each face's facing over the lens disk bounded
    separately)."""
    ia, ib, face1, face2, first, shape = _unique_edges(vertices, faces, shape_of_face)
    v = jax.lax.stop_gradient(vertices)
    n1, n2 = _face_normals(vertices, faces, face1), _face_normals(vertices, faces, face2)
    n2 = jnp.where((face2 >= 0)[:, None], n2, 0.0)
    to_eye = _towards_camera(camera, v[ia])
    g1, g2 = dot(n1, to_eye), dot(n2, to_eye)
    if isinstance(camera, ThinLensCamera):
        # n . (eye(l) - x) is affine in the lens point l: over the disk it
        # ranges over g -+ r |(n . lens x axis, n . lens y axis)|.
        axes = jax.lax.stop_gradient(camera.to_world[:3, :2])
        r = jnp.abs(jax.lax.stop_gradient(camera.aperture_radius))
        h1, h2 = (r * jnp.linalg.norm(n @ axes, axis=-1) for n in (n1, n2))
        silhouette = ((g1 + h1 > 0) & (g2 - h2 <= 0)) | ((g1 - h1 <= 0) & (g2 + h2 > 0))
    else:
        silhouette = (g1 > 0) != (g2 > 0)
    # Shading jumps across an edge when the faces' normals differ (flat
    # shading) or their vertex normals at the edge's ends do (smooth shading
    # of a mesh whose faces do not share vertices, e.g. Mitsuba's cube).
    flat = np.array([m.face_normals or m.vertex_normals is None for m in scene.shapes], bool)
    ja, jb = jnp.roll(ia, -1), jnp.roll(ib, -1)
    nv = jax.lax.stop_gradient(normals)
    split_normals = (dot(nv[ia], nv[ja]) < 1.0 - 1e-6) | (dot(nv[ib], nv[jb]) < 1.0 - 1e-6)
    crease = (face2 >= 0) & jnp.where(jnp.asarray(flat)[shape], dot(n1, n2) < 1.0 - 1e-6, split_normals)
    # Three or more faces on one edge: the extras pair with nothing here and
    # are treated as boundary edges of their own.
    always = first & ((face2 < 0) | crease)
    return ia, ib, always | (first & silhouette), always, n1, n2


def _clip_to_film(p0, p1, width, height):
    """Liang-Barsky: the parameter range [s0, s1] of p0 + s (p1 - p0),
    s in [0, 1], inside [0, width] x [0, height] (s1 <= s0: outside)."""
    d = p1 - p0
    s0 = jnp.zeros(p0.shape[:-1])
    s1 = jnp.ones(p0.shape[:-1])
    for k, size in ((0, width), (1, height)):
        dk = d[..., k]
        moving = jnp.abs(dk) > 1e-12
        safe = jnp.where(moving, dk, 1.0)
        ta, tb = (0.0 - p0[..., k]) / safe, (size - p0[..., k]) / safe
        inside = (p0[..., k] >= 0) & (p0[..., k] <= size)
        s0 = jnp.where(moving, jnp.maximum(s0, jnp.minimum(ta, tb)), jnp.where(inside, s0, 1.0))
        s1 = jnp.where(moving, jnp.minimum(s1, jnp.maximum(ta, tb)), jnp.where(inside, s1, 0.0))
    return s0, s1


def sample_edges(scene: Scene, camera: Camera, cfg: IntegratorConfig, key, n: int, trace):
    """Samples n film-space edge points and evaluates, detached, everything
    but their motion. `trace(scene, arrays, cfg, o, d, key, t_max)` is the
    integrator. Returns a dict of arrays: edge ends `v0`, `v1` (n,), the
    3D parameter `t` of each point along its edge, the film point `x` (n, 2)
    and normal `normal` (n, 2), `weight` (n, C): (f(x - eps n) - f(x + eps n))
    / (pdf n), zero where no edge was found, and `aperture` (n, 2): each
    sample's point on a thin lens (None for other cameras).

    Through a thin lens the image is an average over lens points, each a
    pinhole whose edges sit elsewhere on the film: a sample draws a lens
    point, picks an edge by its length through the lens centre (plus the
    farthest the lens moves its ends, so that every edge that can reach
    the film has a chance), and a point uniform on the edge's image through
    the drawn lens point."""
    scene, camera = jax.lax.stop_gradient((scene, camera))
    arrays = prepare_scene(scene)
    w, h = camera.film.crop_width, camera.film.crop_height
    v0, v1, candidate, always, n1, n2 = _candidate_edges(scene, arrays.vertices, arrays.normals, arrays.faces,
                                                         arrays.shape_of_face, camera)
    (p0, z0), (p1, z1) = _project(camera, arrays.vertices[v0]), _project(camera, arrays.vertices[v1])
    margin = jnp.maximum(_defocus_reach(camera, z0), _defocus_reach(camera, z1))
    s0, s1 = _clip_to_film(p0 + margin[:, None], p1 + margin[:, None], w + 2.0 * margin, h + 2.0 * margin)
    in_front = (z0 > camera.near_clip) & (z1 > camera.near_clip)
    length = jnp.where(candidate & in_front & (s1 > s0), (s1 - s0) * jnp.linalg.norm(p1 - p0, axis=-1) + margin, 0.0)
    cdf = jnp.cumsum(length)
    total = cdf[-1]

    k_edge, k_pos, k_path = jax.random.split(key, 3)
    u = jax.random.uniform(k_edge, (n,)) * total
    e = jnp.minimum(search_cdf(cdf, u), cdf.shape[0] - 1)
    ok = (total > 0) & (length[e] > 0)
    inv_pdf = total
    aperture = None
    if isinstance(camera, ThinLensCamera):
        aperture = jax.random.uniform(jax.random.fold_in(key, 3), (n, 2))
        (a, za), (b, zb) = (_project(camera, arrays.vertices[v[e]], aperture) for v in (v0, v1))
        s0e, s1e = _clip_to_film(a, b, w, h)
        seen = jnp.where(s1e > s0e, (s1e - s0e) * jnp.linalg.norm(b - a, axis=-1), 0.0)
        # Only edges that are discontinuities seen from the drawn lens point.
        eye = _eye(camera, aperture) - arrays.vertices[v0[e]]
        ok = ok & (seen > 0) & (always[e] | ((dot(n1[e], eye) > 0) != (dot(n2[e], eye) > 0)))
        inv_pdf = total * seen / jnp.where(ok, length[e], 1.0)
    else:
        a, b, za, zb, s0e, s1e = p0[e], p1[e], z0[e], z1[e], s0[e], s1[e]
    s = s0e + jax.random.uniform(k_pos, (n,)) * (s1e - s0e)
    x = a + s[:, None] * (b - a)
    # Film-space uniform s -> the 3D edge parameter (perspective-correct;
    # the orthographic projection is affine).
    t = s if isinstance(camera, OrthographicCamera) else (s / zb) / ((1.0 - s) / za + s / zb)
    normal = safe_normalize(jnp.stack([a[:, 1] - b[:, 1], b[:, 0] - a[:, 0]], -1))
    sides = jnp.concatenate([x - SIDE_OFFSET * normal, x + SIDE_OFFSET * normal])
    o, d = sample_ray(camera, film_position(camera, sides),
                      None if aperture is None else jnp.concatenate([aperture, aperture]))
    f = trace(scene, arrays, cfg, o, d, k_path, clip_t_max(camera, d))
    delta = f[:n] - f[n:]
    weight = jnp.where(ok[:, None], delta * (inv_pdf / n)[..., None], 0.0)
    return {"v0": v0[e], "v1": v1[e], "t": t, "x": x, "normal": normal, "weight": weight, "aperture": aperture}


def _splat_edges(camera: Camera, values, x):
    """Adds values (n, C) at film points x (n, 2) into the pixels whose
    filter covers them, as `film.splat` weighs pixel samples: (H, W, C)."""
    w, h = camera.film.crop_width, camera.film.crop_height
    rf = camera.film.rfilter
    r = filter_reach(rf)
    ix = jnp.clip(jnp.floor(x[:, 0]), 0, w - 1).astype(jnp.int32)
    iy = jnp.clip(jnp.floor(x[:, 1]), 0, h - 1).astype(jnp.int32)
    fx, fy = x[:, 0] - ix, x[:, 1] - iy
    out = jnp.zeros((h, w, values.shape[-1]), jnp.float32)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            wt = filter_weight(rf, dx + 0.5 - fx) * filter_weight(rf, dy + 0.5 - fy)
            px, py = ix + dx, iy + dy
            inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
            out = out.at[jnp.clip(py, 0, h - 1), jnp.clip(px, 0, w - 1)].add(
                jnp.where(inside[:, None], wt[:, None] * values, 0.0))
    return out


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def boundary_term(config, trace, scene: Scene, camera: Camera, key):
    """Zeros (H, W, C) whose derivative is the primary-edge term of one pass.

    config: (IntegratorConfig, n edge samples, scale) static; `scale`
      multiplies the estimate so that it adds to a pass's pixel sums as
      `scale` pixel samples would (the pass's samples per pixel).
    trace: the integrator, `trace(scene, arrays, cfg, o, d, key, t_max)`.
    Differentiable in the shapes' vertex_positions and to_world and in the
    camera's to_world and fov (the edges' motion on the film).
    """
    return jnp.zeros((camera.film.crop_height, camera.film.crop_width, 3), jnp.float32)


def _boundary_term_jvp(config, trace, primals, tangents):
    cfg, n, scale = config
    scene, camera, key = primals
    d_scene, d_camera = tangents[0], tangents[1]
    zero = boundary_term(config, trace, scene, camera, key)
    # Only the geometry and the camera move edges.
    d_moving = _moving(d_scene, d_camera)
    # A radiancemeter's one ray has no film area for edges to cross.
    if _all_zero(d_moving) or isinstance(camera, Radiancemeter):
        return zero, jnp.zeros_like(zero)
    _check_camera(camera)
    edges = sample_edges(scene, camera, cfg, key, n, trace)

    def film_points(geometry, cam):
        s, c = _with_moving(scene, geometry, cam)
        vertices = flatten_scene(s).vertices
        t = edges["t"][:, None]
        points = (1.0 - t) * vertices[edges["v0"]] + t * vertices[edges["v1"]]
        return _project(c, points, edges["aperture"])[0]

    _, dx = jvp_nonzero(film_points, _moving(scene, camera), d_moving)
    values = edges["weight"] * (scale * jnp.sum(edges["normal"] * dx, -1))[:, None]
    return zero, _splat_edges(camera, values, edges["x"])


boundary_term.defjvp(_boundary_term_jvp, symbolic_zeros=True)


# Distance of the two radiance samples beside a shadow edge from it,
# relative to the edge's distance from the shading point.
SHADOW_SIDE_OFFSET = 1e-4


def _moving(scene: Scene, camera: Camera):
    """The leaves that move edges and shading points: the shapes' vertices
    and to_world, and the camera (its to_world, fov, lens)."""
    return ([(m.vertex_positions, m.to_world) for m in scene.shapes], camera)


def _with_moving(scene: Scene, geometry, camera: Camera):
    shapes = tuple(dataclasses.replace(m, vertex_positions=v, to_world=t) for m, (v, t) in zip(scene.shapes, geometry))
    return dataclasses.replace(scene, shapes=shapes), camera


def _all_zero(tangents) -> bool:
    return all(isinstance(t, SymbolicZero)
               for t in jax.tree.leaves(tangents, is_leaf=lambda x: isinstance(x, SymbolicZero)))


def _shading_points(scene: Scene, camera: Camera, offsets, aperture=None):
    """The camera rays through `offsets` (S, H, W, 2) (and a thin lens's
    points for `aperture`, the same shape) and their first hits."""
    arrays = prepare_scene(scene)
    o, d = camera_rays(camera, offsets, aperture)
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    si = surface_interaction(arrays, trace_rays(arrays, o, d, clip_t_max(camera, d)), o, d)
    return arrays, d, si


class ShadowEdges(NamedTuple):
    """The scene's unique edges, with a CDF by length over those that can
    bound an emitter's visibility (detached; built once per render).
    ia, ib: end vertex indices (E,); face1, face2: their faces (-1: none);
    n1, n2: the faces' unit normals (E, 3); cdf: (E,) cumulative length;
    total: the sum."""

    ia: jax.Array
    ib: jax.Array
    face1: jax.Array
    face2: jax.Array
    n1: jax.Array
    n2: jax.Array
    cdf: jax.Array
    total: jax.Array


def shadow_edges(arrays) -> ShadowEdges:
    """Candidate shadow edges of a prepared scene (`ShadowEdges`)."""
    v = jax.lax.stop_gradient(arrays.vertices)
    ia, ib, face1, face2, first, _ = _unique_edges(v, arrays.faces, arrays.shape_of_face)
    # An interior edge between coplanar faces is a silhouette from nowhere:
    # leave it out of the distribution (a flat floor's many edges would
    # otherwise take most samples).
    n1, n2 = _face_normals(v, arrays.faces, face1), _face_normals(v, arrays.faces, face2)
    flat_pair = (face2 >= 0) & (dot(n1, n2) > 1.0 - 1e-6)
    length = jnp.where(first & ~flat_pair, jnp.linalg.norm(v[ib] - v[ia], axis=-1), 0.0)
    cdf = jnp.cumsum(length)
    total = cdf[-1] if cdf.shape[0] else jnp.float32(0.0)
    return ShadowEdges(ia, ib, face1, face2, n1, n2, cdf, total)


# Candidates per shading point of the edge-sample resampling.
EDGE_CANDIDATES = 8


def _silhouette(edges: ShadowEdges, e, x, y):
    """Whether edges e (any shape) with points y are silhouettes (or
    boundary edges) as seen from points x."""
    n1, n2 = edges.n1[e], edges.n2[e]
    return (edges.face2[e] < 0) | ((dot(n1, x - y) > 0) != (dot(n2, x - y) > 0))


def _uniform_edge_points(edges: ShadowEdges, shape, k_edge, k_pos):
    """Edge indices and parameters s, both of `shape`, uniform by length
    over `edges`."""
    e = jnp.clip(search_cdf(edges.cdf, jax.random.uniform(k_edge, shape) * edges.total),
                 0, max(edges.cdf.shape[0] - 1, 0))
    return e, jax.random.uniform(k_pos, shape)


def _pick_edge_points(edges: ShadowEdges, v, x, n, key):
    """One edge point per shading point x (N, 3), resampled (RIS) from
    EDGE_CANDIDATES points drawn uniformly by length, with the target
    sin(phi) / r where the edge is a silhouette from x, else 0: most edges
    of a mesh are not silhouettes from a given point, and near edges weigh
    more (the term's factor is sin(phi) / r^2; targeting it fully spent
    samples on the receiver's own nearby boundary edges: noisier on a
    rectangle-only scene). Measured on a 320-triangle occluder's shadow at
    512 spp: 35-39% noise between keys, against 53-76% uniformly. Returns
    (edge index, parameter s, the estimator's 1 / pdf per unit length: total
    * mean target / chosen target, 0 where no candidate is a silhouette)."""
    m = EDGE_CANDIDATES
    k_edge, k_pos, k_pick = jax.random.split(key, 3)
    e, s = _uniform_edge_points(edges, (n, m), k_edge, k_pos)
    a, b = v[edges.ia[e]], v[edges.ib[e]]
    y = a + s[..., None] * (b - a)
    to = y - x[:, None, :]
    r2 = jnp.sum(to * to, -1)
    sin_phi = jnp.linalg.norm(jnp.cross(safe_normalize(b - a), to), axis=-1) / jnp.sqrt(jnp.maximum(r2, 1e-30))
    target = jnp.where(_silhouette(edges, e, x[:, None, :], y) & (r2 > 1e-12) & (sin_phi > 1e-6),
                       sin_phi / jnp.sqrt(jnp.maximum(r2, 1e-12)), 0.0)
    cum = jnp.cumsum(target, -1)
    sum_t = cum[:, -1]
    j = jnp.minimum(jnp.sum(cum < (jax.random.uniform(k_pick, (n, 1)) * sum_t[:, None]), -1), m - 1)
    chosen = jnp.take_along_axis(target, j[:, None], -1)[:, 0]
    inv_pdf = jnp.where(chosen > 0, edges.total * (sum_t / m) / jnp.where(chosen > 0, chosen, 1.0), 0.0)
    return (jnp.take_along_axis(e, j[:, None], -1)[:, 0], jnp.take_along_axis(s, j[:, None], -1)[:, 0],
            inv_pdf)


def sample_shadow_edges(scene: Scene, camera: Camera, offsets, aperture, key, frac_em=1.0, frac_bsdf=1.0):
    """`shadow_edge_samples` at the first hit of each camera ray through
    `offsets` (S, H, W, 2) and a thin lens's `aperture` samples (or None)."""
    scene, camera = jax.lax.stop_gradient((scene, camera))
    arrays, d, si = _shading_points(scene, camera, offsets, aperture)
    return shadow_edge_samples(scene, arrays, shadow_edges(arrays), si, d, key, frac_em, frac_bsdf)


def shadow_edge_samples(scene: Scene, arrays, edges: ShadowEdges, si, d, key, frac_em=1.0, frac_bsdf=1.0,
                        indirect=None, active=None):
    """Edge samples for the visibility boundary at shading points si (hit by
    rays along d): one point on a scene edge (`_pick_edge_points`: resampled
    from points uniform by length over `edges`), kept where the edge is a
    silhouette as seen from the shading point x and visible from it.
    Detached. Returns a dict: edge ends `v0`,
    `v1`, parameter `s`, plane normal `normal` (N, 3) and `weight` (N, 3) =
    f(x, w) (L- - L+) sin(phi) / r^2 / pdf, so that the boundary term is
    weight * normal . (y - x). L is the emission arriving beside the edge
    and, where `indirect` (N,) bool is true, the direct light the surfaces
    seen there reflect towards x (one emitter sample each, the same on both
    sides). frac_em, frac_bsdf: the integrator's sample shares of emitter
    and BSDF sampling, for its MIS weights. active (N,) bool or None: rows
    to sample (others get zero weight and trace nothing)."""
    scene, si, d = jax.lax.stop_gradient((scene, si, d))
    n = d.shape[0]
    v = jax.lax.stop_gradient(arrays.vertices)
    k_pick, k_nee = jax.random.split(key)
    e, s, inv_pdf = _pick_edge_points(edges, v, si.p, n, k_pick)
    ia, ib = edges.ia[e], edges.ib[e]
    a, b = v[ia], v[ib]
    y = a + s[:, None] * (b - a)
    x = si.p
    to = y - x
    r = jnp.linalg.norm(to, axis=-1)
    w = to / jnp.maximum(r, 1e-20)[:, None]
    edge_dir = safe_normalize(b - a)
    c = jnp.cross(edge_dir, w)
    sin_phi = jnp.linalg.norm(c, axis=-1)
    plane_n = safe_normalize(c)
    face1 = edges.face1[e]
    # inv_pdf > 0: a silhouette from x (the resampling's target is zero else).
    ok = si.valid & (inv_pdf > 0) & (r > 1e-6) & (sin_phi > 1e-6)
    if active is not None:
        ok = ok & active
    origin = offset_origin(x, si.n, w)
    visible = ~occluded(arrays.accel, v, arrays.faces, origin, w, jnp.where(ok, r * (1.0 - 1e-3), 0.0))
    sampled = ok & visible
    tables = light_tables(scene, arrays)
    side = (SHADOW_SIDE_OFFSET * r)[:, None] * plane_n
    frame = frame_at(si)
    wi = to_local(frame, -d)
    bsdfs = bsdfs_at(scene, si, frame)
    edge_shape = jnp.asarray(arrays.shape_of_face)[face1]
    u_nee = None if indirect is None else jax.random.uniform(k_nee, (n, 3))
    radiance, light_radiance, light_tri, light_bary = [], [], [], []
    faces = jnp.asarray(arrays.faces)
    for sign in (-1.0, 1.0):
        # Aimed from the (offset) origin at points beside y, so that they pass
        # on either side of the edge whatever the origin's offset (tilting w
        # by 1e-4 from an origin pushed 2e-4 off the surface lost half of
        # the jumps: 0.4-0.6x the far penumbra's derivative).
        ws = safe_normalize(y + sign * side - origin)
        # Rows without a visible edge sample trace nothing (t_max 0): in a
        # path's fixed loop most rows have ended or see no silhouette.
        hit_s = trace_rays(arrays, origin, ws, jnp.where(sampled, jnp.inf, 0.0))
        si_s = surface_interaction(arrays, hit_s, origin, ws)
        le, pdf_em = emission_along(scene, arrays, si_s, ws, tables)
        # Emitter sampling parametrizes an area light by its own surface, so
        # its samples move with the light. Its share of the jump (MIS weight
        # w_em) therefore moves, relative to its samples, as the edge moves
        # minus as the light's point beyond it moves (seen from x, scaled by
        # r / r_light); BSDF sampling's share moves with the edge alone. A
        # light's own edge moves with its points: only BSDF sampling's share
        # (1 - w_em) is left, exactly. Occluders' edges keep the whole jump
        # here and hand back the emitter samples' share in `light_weight`.
        # Only where the light's point lies beyond the edge: an edge behind
        # the light (the Cornell box's ceiling hole, 0.1 mm above its light's
        # outline) occludes none of its points, and the jump seen beside it
        # is the light's own outline's.
        own = si_s.valid & (si_s.shape == edge_shape)
        w_em = power_heuristic(pdf_em * frac_em, bsdfs.pdf(wi, to_local(frame, ws)) * frac_bsdf)
        on_light = si_s.valid & ~own & (si_s.emitter >= 0) & (si_s.t > r * (1.0 + 1e-3))
        scale = r / jnp.where(on_light, si_s.t, 1.0)
        light_radiance.append(le * jnp.where(on_light, w_em * scale, 0.0)[:, None])
        light_tri.append(faces[jnp.maximum(hit_s.prim, 0)])
        light_bary.append(jnp.stack([1.0 - hit_s.b1 - hit_s.b2, hit_s.b1, hit_s.b2], -1))
        le = le * jnp.where(own, 1.0 - w_em, 1.0)[:, None]
        if indirect is not None:
            # The light reflected by what is seen beside the edge: the path's
            # BSDF-sampled bounce integrates it (one bounce of indirect light;
            # deeper bounces are left out). Emitter sampling alone (MIS
            # weight 1) estimates all of that direct light.
            frame_s = frame_at(si_s)
            le = le + next_event(scene, arrays, si_s, frame_s, to_local(frame_s, -ws),
                                 bsdfs_at(scene, si_s, frame_s), u_nee, tables, si_s.valid & indirect,
                                 frac_em=1.0, frac_bsdf=0.0)
        radiance.append(le)
    f = bsdfs.eval(wi, to_local(frame, w))
    common = (sin_phi / (r * r) * inv_pdf)[:, None]
    keep = sampled[:, None]
    weight = jnp.where(keep, zero_nonfinite(f * (radiance[0] - radiance[1]) * common), 0.0)
    # Side -1 enters the jump with +, side +1 with -.
    light_weight = jnp.stack([jnp.where(keep, zero_nonfinite(f * lr * common), 0.0) * sign
                              for lr, sign in zip(light_radiance, (1.0, -1.0))], 1)
    return {"v0": ia, "v1": ib, "s": s, "normal": plane_n, "weight": weight,
            "light_weight": light_weight, "light_tri": jnp.stack(light_tri, 1),
            "light_bary": jnp.stack(light_bary, 1)}


def _light_motion(smp, dv, dp, normal):
    """The emitter samples' share of a shadow-edge term: sum over both sides
    of light_weight * normal . (motion of the light's point - dp), with the
    light's point moving with its triangle's vertices (tangents dv (V, 3);
    None: static) and the shading point with dp (None: static)."""
    moved = 0.0
    if dv is not None:
        moved = jnp.einsum("nsk,nskc->nsc", smp["light_bary"], dv[smp["light_tri"]])
    if dp is not None:
        moved = moved - dp[:, None, :]
    if isinstance(moved, float):
        return 0.0
    return jnp.sum(smp["light_weight"] * jnp.sum(normal[:, None, :] * moved, -1)[..., None], 1)


def nee_edge_term(scene: Scene, arrays, edges: ShadowEdges, si, d, key, indirect=None, active=None):
    """Zeros (N, 3) whose derivative is the visibility boundary term at
    shading points si (hit by rays along d) of a path tracer with one
    emitter and one BSDF sample per vertex: the shadow edges and the edges
    hiding part of an emitter, seen from si.p, and where `indirect` (N,)
    bool is true (the path goes on to a next vertex that samples emitters)
    the edges hiding directly lit surfaces, as they move with the scene's
    vertices and as si.p moves; zero where `active` (N,) bool (None: all) is
    false, whose rows trace nothing. Multiply it by the path throughput and add
    it to the radiance. Costs nothing unless the flattened vertices or si.p
    carry a tangent."""
    held, passed = NumpyLeaves.split((scene, arrays, edges, si, d, key, indirect, active))
    return _nee_edges(held, arrays.vertices, si.p, *passed)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _nee_edges(held, vertices, p, *passed):
    return jnp.zeros(p.shape, jnp.float32)


def _nee_edges_jvp(held, primals, tangents):
    vertices, p, *passed = primals
    dv, dp = tangents[:2]
    zero = jnp.zeros(p.shape, jnp.float32)
    if isinstance(dv, SymbolicZero) and isinstance(dp, SymbolicZero):
        return zero, zero
    scene, arrays, edges, si, d, key, indirect, active = held.unflatten(passed)
    smp = shadow_edge_samples(scene, arrays, edges, si, d, key, indirect=indirect, active=active)
    t = smp["s"][:, None]
    moved = 0.0 if isinstance(dv, SymbolicZero) else (1.0 - t) * dv[smp["v0"]] + t * dv[smp["v1"]]
    if not isinstance(dp, SymbolicZero):
        moved = moved - dp
    light = _light_motion(smp, None if isinstance(dv, SymbolicZero) else dv,
                          None if isinstance(dp, SymbolicZero) else dp, smp["normal"])
    return zero, smp["weight"] * dot(smp["normal"], moved)[:, None] - light


_nee_edges.defjvp(_nee_edges_jvp, symbolic_zeros=True)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def shadow_term(config, scene: Scene, camera: Camera, offsets, aperture, key):
    """Zeros (S, H, W, 3) whose derivative is the direct-illumination
    boundary term (shadow edges, edges hiding part of an emitter) at the
    first hit of each camera sample through `offsets` (S, H, W, 2) and a thin
    lens's `aperture` samples (the same shape, or None; other cameras ignore them): add
    it to the samples' radiance. Differentiable in the shapes' vertex_positions and
    to_world and the camera's to_world and fov. config: (shape, frac_em,
    frac_bsdf), static: the output shape and the integrator's MIS shares."""
    return jnp.zeros(config[0], jnp.float32)


def _shadow_term_jvp(config, primals, tangents):
    shape, frac_em, frac_bsdf = config
    scene, camera, offsets, aperture, key = primals
    zero = jnp.zeros(shape, jnp.float32)
    d_moving = _moving(tangents[0], tangents[1])
    if _all_zero(d_moving):
        return zero, zero
    _check_camera(camera)
    edges = sample_shadow_edges(scene, camera, offsets, aperture, key, frac_em, frac_bsdf)

    def distance_across(geometry, cam):
        s, c = _with_moving(scene, geometry, cam)
        arrays, _, si = _shading_points(s, c, offsets, aperture)
        t = edges["s"][:, None]
        y = (1.0 - t) * arrays.vertices[edges["v0"]] + t * arrays.vertices[edges["v1"]]
        # The lights' points beyond the edge, on either side (see _light_motion).
        y_light = jnp.einsum("nsk,nskc->nsc", edges["light_bary"], arrays.vertices[edges["light_tri"]])
        n = edges["normal"]
        return jnp.sum(n * (y - si.p), -1), jnp.sum(n[:, None, :] * (y_light - si.p[:, None, :]), -1)

    _, (dd, dd_light) = jvp_nonzero(distance_across, _moving(scene, camera), d_moving)
    term = edges["weight"] * dd[:, None] - jnp.sum(edges["light_weight"] * dd_light[..., None], 1)
    return zero, term.reshape(shape)


shadow_term.defjvp(_shadow_term_jvp, symbolic_zeros=True)


# Delta lights (point, spot, directional) light a point or not: seen from a
# fixed shading point their visibility has no boundary to integrate over.
# Their shadow edges are boundaries of the pixel integral instead: curves on
# the receiving surface, which move across the film as the occluder, the
# light, the receiver or the camera moves. PSDR-style, a sample picks a point
# y on a scene edge (uniform by length), follows the light's ray through y to
# the surface it lights beyond (x, on the shadow boundary), and enters where
# x projects on the film if the camera sees x, as a primary edge does:
# weight * n_film . u(theta), with u the film position of the boundary point
# (the intersection of the light's line through y with the receiving
# triangle's plane, moving with the scene's vertices, the light and the
# camera) and n_film the boundary curve's film normal.


def _delta_lights(scene: Scene) -> list[int]:
    return [i for i, e in enumerate(scene.emitters) if isinstance(e, DELTA_LIGHTS)]


def _placement(scene: Scene):
    """The delta lights' placement leaves: a point light's position, a spot
    or directional light's to_world."""
    return tuple(_placement_of(scene.emitters[i]) for i in _delta_lights(scene))


def _placement_name(light) -> str:
    return "position" if isinstance(light, PointLight) else "to_world"


def _placement_of(light):
    return getattr(light, _placement_name(light))


def _with_placement(scene: Scene, placement) -> Scene:
    emitters = list(scene.emitters)
    for i, leaf in zip(_delta_lights(scene), placement):
        emitters[i] = dataclasses.replace(emitters[i], **{_placement_name(emitters[i]): leaf})
    return dataclasses.replace(scene, emitters=tuple(emitters))


def _light_line(light, y):
    """The direction (unnormalized) of the light's ray through points y."""
    if isinstance(light, DirectionalLight):
        return jnp.broadcast_to(emitter_direction(light), y.shape)
    origin = light.position if isinstance(light, PointLight) else light.to_world[:3, 3]
    return y - jnp.asarray(origin, jnp.float32)


def _on_plane(vertices, faces, tri, o, d):
    """Where the lines o + t d meet the planes of triangles tri."""
    f = jnp.asarray(faces)[tri]
    q0, q1, q2 = vertices[f[:, 0]], vertices[f[:, 1]], vertices[f[:, 2]]
    nr = jnp.cross(q1 - q0, q2 - q0)
    den = dot(nr, d)
    # Lines (nearly) parallel to the plane are samples the caller drops;
    # they stay finite (t = 0), so that no inf reaches a derivative.
    ok = jnp.abs(den) > 1e-9 * jnp.linalg.norm(nr, axis=-1) * jnp.linalg.norm(d, axis=-1)
    t = jnp.where(ok, dot(nr, q0 - o) / jnp.where(ok, den, 1.0), 0.0)
    return o + t[:, None] * d


def _delta_boundary_film(scene: Scene, camera: Camera, light, smp, s=None):
    """Film positions (n, 2) of the shadow-boundary points of samples `smp`
    (edge ends v0, v1, parameter s, receiving triangle tri): where the light's
    line through the edge point meets the receiving triangle's plane."""
    world = flatten_scene(scene)
    t = (smp["s"] if s is None else s)[:, None]
    y = (1.0 - t) * world.vertices[smp["v0"]] + t * world.vertices[smp["v1"]]
    x = _on_plane(world.vertices, world.faces, smp["tri"], y, _light_line(light, y))
    return _project(camera, x, smp["aperture"])[0]


def sample_delta_shadows(scene: Scene, camera: Camera, arrays, edges: ShadowEdges, index: int,
                         key, n: int):
    """n boundary samples of delta light `scene.emitters[index]`'s shadows as
    seen by the camera (detached); arrays: `prepare_scene(scene)`, edges:
    `shadow_edges(arrays)`. Returns a dict: edge ends `v0`, `v1` and
    parameter `s` (n,), receiving triangle `tri` (n,), film point `x` and
    film normal `normal` (n, 2), and `weight` (n, 3) = (L- - L+) |du/ds| /
    (pdf n): the radiance jump across the boundary (the light's direct
    contribution at the receiving point, seen from the camera) times the
    film length per sample; zero where no boundary was found."""
    scene, camera = jax.lax.stop_gradient((scene, camera))
    light = scene.emitters[index]
    v = jax.lax.stop_gradient(arrays.vertices)
    e, s = _uniform_edge_points(edges, (n,), *jax.random.split(key))
    ia, ib = edges.ia[e], edges.ib[e]
    a, b = v[ia], v[ib]
    y = a + s[:, None] * (b - a)
    line = _light_line(light, y)
    w = safe_normalize(line)
    if isinstance(light, DirectionalLight):
        # From outside the scene's bounds: the light is infinitely far.
        lo, hi = jnp.min(v, axis=0), jnp.max(v, axis=0)
        reach = 2.0 * jnp.linalg.norm(hi - lo) + 1.0
        origin = y - w * reach
    else:
        origin = y - line
    r = jnp.linalg.norm(y - origin, axis=-1)
    m = safe_normalize(jnp.cross(b - a, w))
    # One ray passes just beside the edge on either side; at a shadow edge
    # one of them is stopped by the occluder near y and the other goes on
    # to light the receiver. Only silhouettes from the light count: on a
    # finely tessellated curved occluder, edges a row or two inside the
    # outline lie closer to it (seen from the light) than the rays' offset,
    # so one ray slips past them too, and counting them made a sphere's
    # shadow move ~1.9x too fast.
    side = (SHADOW_SIDE_OFFSET * r)[:, None] * m
    hits, sis = [], []
    for sign in (1.0, -1.0):
        ws = safe_normalize(y + sign * side - origin)
        hit = trace_rays(arrays, origin, ws)
        hits.append(hit)
        sis.append(surface_interaction(arrays, hit, origin, ws))
    past = [si.valid & (si.t > r * (1.0 + 1e-3)) for si in sis]
    stopped = [jnp.isfinite(si.t) & (si.t <= r * (1.0 + 1e-3)) for si in sis]
    plus_lit = past[0] & stopped[1]
    ok = (plus_lit | (past[1] & stopped[0])) & (edges.total > 0) & (r > 1e-6) & _silhouette(edges, e, origin, y)
    sigma = jnp.where(plus_lit, 1.0, -1.0)
    si = jax.tree.map(lambda p, q: jnp.where(plus_lit.reshape(plus_lit.shape + (1,) * (p.ndim - 1)), p, q), *sis)
    tri = jnp.where(plus_lit, hits[0].prim, hits[1].prim)
    tri = jnp.where(ok, tri, 0)
    x = _on_plane(v, arrays.faces, tri, y, line)
    ok = ok & (dot(x - y, line) > 0)  # beyond the edge (not a dropped parallel line)
    # Through a thin lens: seen from a lens point drawn per sample.
    aperture = (jax.random.uniform(jax.random.fold_in(key, 3), (n, 2))
                if isinstance(camera, ThinLensCamera) else None)
    smp = {"v0": ia, "v1": ib, "s": s, "tri": tri, "aperture": aperture}

    # Seen by the camera, inside the film?
    o_cam, d_cam, dist = _camera_rays_to(camera, x, aperture)
    u, z = _project(camera, x, aperture)
    wf, hf = camera.film.crop_width, camera.film.crop_height
    ok = ok & (z > camera.near_clip) & (u[:, 0] >= 0) & (u[:, 0] < wf) & (u[:, 1] >= 0) & (u[:, 1] < hf)
    ok = ok & ~occluded(arrays.accel, v, arrays.faces, o_cam, d_cam,
                         jnp.where(ok, dist * (1.0 - 1e-3), 0.0))

    # The light's direct contribution at x as the integrators estimate it.
    frame = frame_at(si)
    bsdfs = bsdfs_at(scene, si, frame)
    wi_light, _, value = delta_light_incident(light, x)
    lit = bsdfs.eval(to_local(frame, -d_cam), to_local(frame, wi_light)) * value

    # The boundary's film normal: the gradient over the film of the signed
    # distance of the camera ray's receiving-plane point from the plane
    # through the light's line and the edge (positive on m's side).
    def signed(film):
        o, d = sample_ray(camera, film_position(camera, film), aperture)
        return dot(m, _on_plane(v, arrays.faces, tri, o, d) - y)

    grad = jnp.stack([jax.jvp(signed, (u,), (jnp.broadcast_to(jnp.eye(2, dtype=jnp.float32)[k], u.shape),))[1]
                      for k in range(2)], -1)
    gnorm = jnp.linalg.norm(grad, axis=-1)
    normal = grad / jnp.where(gnorm > 0, gnorm, 1.0)[:, None]
    # Film length of the boundary per unit of the edge parameter.
    du_ds = jax.jvp(lambda t: _delta_boundary_film(scene, camera, light, smp, t), (s,), (jnp.ones_like(s),))[1]
    length = jnp.linalg.norm(b - a, axis=-1)
    jac = jnp.linalg.norm(du_ds, axis=-1) * edges.total / jnp.where(length > 0, length, 1.0)
    ok = ok & (gnorm > 0) & (length > 0)
    # Across +normal the signed distance grows: lit there when sigma > 0.
    weight = (-sigma * jac / n)[:, None] * lit
    weight = jnp.where(ok[:, None], zero_nonfinite(weight), 0.0)
    # Dropped samples carry zeros everywhere, so that 0 * nan cannot arise.
    normal = jnp.where(ok[:, None], normal, 0.0)
    u = jnp.where(ok[:, None], u, 0.0)
    return {**smp, "x": u, "normal": normal, "weight": weight}


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def delta_shadow_term(config, scene: Scene, camera: Camera, key):
    """Zeros (H, W, 3) whose derivative is the boundary term of the delta
    lights' (point, spot, directional) shadows at the first hit of camera
    rays: shadow edges sliding across the film as the scene's vertices and
    to_world, the lights' position / to_world or the camera move.

    config: (n edge samples per light, scale) static; `scale` as in
    `boundary_term`. Add it where the integrator's first-hit next-event
    estimation sees delta lights (`direct` with emitter samples, `path`
    and `prb` with max_depth > 1)."""
    return jnp.zeros((camera.film.crop_height, camera.film.crop_width, 3), jnp.float32)


def _delta_shadow_term_jvp(config, primals, tangents):
    n, scale = config
    scene, camera, key = primals
    zero = delta_shadow_term(config, scene, camera, key)
    moving = (*_moving(scene, camera), _placement(scene))
    d_moving = (*_moving(tangents[0], tangents[1]), _placement(tangents[0]))
    # Shadow outlines crossing a radiancemeter's one ray: measure zero.
    if _all_zero(d_moving) or not scene.shapes or isinstance(camera, Radiancemeter):
        return zero, jnp.zeros_like(zero)
    _check_camera(camera)
    out = jnp.zeros_like(zero)
    # The BVH and the edge table, once for all the lights.
    arrays = prepare_scene(jax.lax.stop_gradient(scene))
    edges = shadow_edges(arrays)
    for index, k in zip(_delta_lights(scene), jax.random.split(key, len(_delta_lights(scene)))):
        smp = sample_delta_shadows(scene, camera, arrays, edges, index, k, n)

        def film_points(geometry, cam, placement, index=index, smp=smp):
            s, c = _with_moving(scene, geometry, cam)
            s = _with_placement(s, placement)
            return _delta_boundary_film(s, c, s.emitters[index], smp)

        _, du = jvp_nonzero(film_points, moving, d_moving)
        used = jnp.any(smp["weight"] != 0, -1)
        values = smp["weight"] * jnp.where(used, scale * jnp.sum(smp["normal"] * du, -1), 0.0)[:, None]
        out = out + _splat_edges(camera, values, smp["x"])
    return zero, out


delta_shadow_term.defjvp(_delta_shadow_term_jvp, symbolic_zeros=True)
