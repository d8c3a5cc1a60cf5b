"""Brute-force float64 reference ray tracer and ray generators for the tests.

`brute_force` tests every ray against every triangle with Moeller-Trumbore in
float64 (inputs are the float32 test data, widened exactly). It is two-sided,
inclusive on triangle edges (u >= 0, v >= 0, u + v <= 1), keeps hits with
t_min < t < t_max, and skips degenerate triangles (zero or non-finite area) and
rays parallel to a triangle's plane (det == 0 in float64). Edges are widened
by a tiny tolerance (`edge_tol`) so that rays through shared edges and
vertices never slip between two triangles in the reference.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "brute_force",
    "camera_rays",
    "random_rays",
    "surface_points",
    "bounce_rays",
    "downsample",
    "rel_mae",
]


def brute_force(vertices, faces, origins, directions, t_max=None, *, t_min=0.0, exclude=None,
                edge_tol: float = 1e-9, chunk_elems: int = 1 << 16):
    """Closest hit of each ray by testing all triangles.

    Returns (t float64, prim int64, b1 float64, b2 float64) with the rays'
    batch shape; a miss has t = inf, prim = -1, b1 = b2 = 0.

    `edge_tol` widens every triangle by that much in barycentric units, so a
    ray through an edge or vertex exactly (float64 rounding may put it a hair
    outside both neighbours) still counts as a hit; the reference itself is
    then watertight. Pass 0 for the plain inclusive test.

    `exclude` (int, the rays' batch shape) names one face per ray to ignore
    (-1: none), e.g. the face a secondary ray starts on.
    """
    v = np.asarray(vertices, np.float64).reshape(-1, 3)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    o = np.asarray(origins, np.float64)
    d = np.asarray(directions, np.float64)
    batch = o.shape[:-1]
    o = o.reshape(-1, 3)
    d = d.reshape(-1, 3)
    n = o.shape[0]
    tmax = np.full(n, np.inf) if t_max is None else np.broadcast_to(
        np.asarray(t_max, np.float64), batch).reshape(-1)
    excl = np.full(n, -1) if exclude is None else np.broadcast_to(
        np.asarray(exclude, np.int64), batch).reshape(-1)
    t_out = np.full(n, np.inf)
    prim_out = np.full(n, -1, np.int64)
    b1_out = np.zeros(n)
    b2_out = np.zeros(n)
    shape = lambda *xs: tuple(x.reshape(batch) for x in xs)  # noqa: E731
    if f.shape[0] == 0 or n == 0:
        return shape(t_out, prim_out, b1_out, b2_out)
    tri = v[f]  # (F, 3, 3)
    v0 = tri[:, 0]
    with np.errstate(invalid="ignore", over="ignore"):
        e1 = tri[:, 1] - v0
        e2 = tri[:, 2] - v0
        area2 = np.linalg.norm(np.cross(e1, e2), axis=1)
        good = np.isfinite(tri).all(axis=(1, 2)) & (area2 > 0)
    idx = np.nonzero(good)[0]
    v0x, v0y, v0z = v0[idx].T.copy()
    e1x, e1y, e1z = e1[idx].T.copy()
    e2x, e2y, e2z = e2[idx].T.copy()
    ray_ok = np.isfinite(o).all(1) & np.isfinite(d).all(1) & (d != 0).any(1) & (tmax > 0)
    # chunks of rays x all triangles small enough to stay in cache
    step = max(1, chunk_elems // max(1, idx.size))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for s in range(0, n, step):
            sl = slice(s, s + step)
            ox, oy, oz = (o[sl, k:k + 1] for k in range(3))
            dx, dy, dz = (d[sl, k:k + 1] for k in range(3))
            px = dy * e2z - dz * e2y
            py = dz * e2x - dx * e2z
            pz = dx * e2y - dy * e2x
            det = e1x * px + e1y * py + e1z * pz
            sx, sy, sz = ox - v0x, oy - v0y, oz - v0z
            u = (sx * px + sy * py + sz * pz) / det
            qx = sy * e1z - sz * e1y
            qy = sz * e1x - sx * e1z
            qz = sx * e1y - sy * e1x
            w = (dx * qx + dy * qy + dz * qz) / det
            t = (e2x * qx + e2y * qy + e2z * qz) / det
            ok = (det != 0) & (u >= -edge_tol) & (w >= -edge_tol) & (u + w <= 1 + edge_tol)
            ok &= (t > t_min) & (t < tmax[sl, None]) & (idx != excl[sl, None])
            t = np.where(ok, t, np.inf)
            best = np.argmin(t, axis=1)
            rows = np.arange(t.shape[0])
            tb = t[rows, best]
            hit = np.isfinite(tb) & ray_ok[sl]
            t_out[sl] = np.where(hit, tb, np.inf)
            prim_out[sl] = np.where(hit, idx[best], -1)
            b1_out[sl] = np.where(hit, u[rows, best], 0.0)
            b2_out[sl] = np.where(hit, w[rows, best], 0.0)
    return shape(t_out, prim_out, b1_out, b2_out)


def _normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def camera_rays(eye, target, width: int, height: int, fov_deg: float = 40.0,
                up=(0.0, 0.0, 1.0), normalize: bool = True):
    """Coherent pinhole-camera rays through pixel centres, row-major.

    Returns float32 origins and directions of shape (height * width, 3); with
    normalize=False directions reach the image plane at distance 1 (not unit).
    """
    eye = np.asarray(eye, np.float64)
    fwd = _normalize(np.asarray(target, np.float64) - eye)
    right = _normalize(np.cross(fwd, np.asarray(up, np.float64)))
    upv = np.cross(right, fwd)
    h = np.tan(np.radians(fov_deg) / 2)
    ys, xs = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width,
                         indexing="ij")
    px = (2 * xs - 1) * h * width / height
    py = (1 - 2 * ys) * h
    d = fwd + px[..., None] * right + py[..., None] * upv
    d = d.reshape(-1, 3)
    if normalize:
        d = _normalize(d)
    o = np.broadcast_to(eye, d.shape)
    return o.astype(np.float32), d.astype(np.float32)


def random_rays(n: int, rng: np.random.Generator, center=(0.0, 0.0, 0.0), radius: float = 1.5,
                aim_radius: float = 1.0, inside_fraction: float = 0.2):
    """Incoherent rays: origins uniform in a ball of `radius` (a fraction
    `inside_fraction` of them) or on its surface, aimed at random points of a
    ball of `aim_radius`; directions have random lengths in [0.5, 2]."""
    c = np.asarray(center, np.float64)

    def ball(m, r):
        x = _normalize(rng.normal(size=(m, 3)))
        return x * (r * rng.uniform(0, 1, (m, 1)) ** (1 / 3))

    o = c + _normalize(rng.normal(size=(n, 3))) * radius
    inside = rng.uniform(size=n) < inside_fraction
    o[inside] = c + ball(int(inside.sum()), radius)
    target = c + ball(n, aim_radius)
    d = _normalize(target - o + 1e-9) * rng.uniform(0.5, 2.0, (n, 1))
    return o.astype(np.float32), d.astype(np.float32)


def surface_points(vertices, faces, n: int, rng: np.random.Generator, margin: float = 0.05):
    """Random points on triangle interiors: area-weighted triangle choice and
    barycentrics >= `margin` (away from edges).

    Returns (points float32 (n, 3), prim int32 (n,), b1, b2 float64, normals
    float64 (n, 3) unit, by winding).
    """
    v = np.asarray(vertices, np.float64)[faces]
    cr = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    area = np.linalg.norm(cr, axis=1)
    prim = rng.choice(len(faces), size=n, p=area / area.sum())
    r1, r2 = rng.uniform(size=(2, n))
    s = np.sqrt(r1)
    b1, b2 = s * (1 - r2), s * r2  # uniform on the triangle
    b1 = margin + (1 - 3 * margin) * b1
    b2 = margin + (1 - 3 * margin) * b2
    tri = v[prim]
    p = (1 - b1 - b2)[:, None] * tri[:, 0] + b1[:, None] * tri[:, 1] + b2[:, None] * tri[:, 2]
    normal = cr[prim] / area[prim, None]
    return p.astype(np.float32), prim.astype(np.int32), b1, b2, normal


def cosine_directions(normals, rng: np.random.Generator):
    """Cosine-weighted directions (float64 unit) on the hemisphere of each normal."""
    n = normals.shape[0]
    r1, r2 = rng.uniform(size=(2, n))
    r1 = np.clip(r1, 1e-3, 1 - 1e-3)  # keep clear of exactly grazing directions
    phi = 2 * np.pi * r2
    local = np.stack([np.sqrt(r1) * np.cos(phi), np.sqrt(r1) * np.sin(phi), np.sqrt(1 - r1)], -1)
    a = np.where(np.abs(normals[:, :1]) > 0.9, [[0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]])
    tx = _normalize(np.cross(a, normals))
    ty = np.cross(normals, tx)
    return local[:, :1] * tx + local[:, 1:2] * ty + local[:, 2:] * normals


def bounce_rays(vertices, faces, n: int, rng: np.random.Generator, side: str = "out",
                margin: float = 0.05):
    """Secondary rays leaving random surface points with cosine-distributed
    directions, on the side of the winding normal ("out"), the other side
    ("in"), or a random side per ray ("both").

    Returns (origins float32, directions float32 unit, source prim int32).
    """
    p, prim, _, _, normal = surface_points(vertices, faces, n, rng, margin)
    if side == "in":
        normal = -normal
    elif side == "both":
        normal = normal * rng.choice([-1.0, 1.0], size=(n, 1))
    d = cosine_directions(normal, rng)
    return p, d.astype(np.float32), prim


def downsample(x, k=4):
    """Mean over k x k pixel blocks of an (H, W, C) image (ragged edges dropped)."""
    h, w, c = x.shape
    return x[: h // k * k, : w // k * k].reshape(h // k, k, w // k, k, c).mean((1, 3))


def rel_mae(x, y):
    """Relative mean absolute error of x against y on 4x4-downsampled images:
    the metric of the comparisons with Mitsuba (test_render, test_grad_mitsuba)."""
    x, y = downsample(np.asarray(x)), downsample(np.asarray(y))
    return float(np.mean(np.abs(x - y)) / np.mean(np.abs(y) + 1e-3))


def mitsuba_bsdf_queries(mi, bsdf, wi, wo, uv, u1, u2):
    """A Mitsuba BSDF plugin's eval, pdf and sample, point by point, in the
    local frame (normal +z, dp_du +x), at uvs uv (N, 2), directions wi, wo
    (N, 3) and random numbers u1 (N,), u2 (N, 2): the reference that the
    plugin tests compare `bsdf_triple` with. Returns float32 arrays
    {"eval", "pdf", "wo", "weight", "spdf"} (the last three of `sample`)."""
    ctx = mi.BSDFContext()
    si = mi.SurfaceInteraction3f()
    si.n = mi.Normal3f(0, 0, 1)
    si.sh_frame = mi.Frame3f(si.n)
    si.dp_du = mi.Vector3f(1, 0, 0)
    ref = {k: [] for k in ("eval", "pdf", "wo", "weight", "spdf")}
    for k in range(len(wi)):
        si.uv = mi.Point2f(uv[k])
        si.wi = mi.Vector3f(wi[k])
        ref["eval"].append(np.array(bsdf.eval(ctx, si, mi.Vector3f(wo[k]))))
        ref["pdf"].append(bsdf.pdf(ctx, si, mi.Vector3f(wo[k])))
        bs, w = bsdf.sample(ctx, si, float(u1[k]), mi.Point2f(u2[k]))
        ref["wo"].append(np.array(bs.wo))
        ref["weight"].append(np.array(w))
        ref["spdf"].append(bs.pdf)
    return {k: np.array(v, np.float32) for k, v in ref.items()}


def translation_jvp_and_fd(scene, name, direction, spp=64, fd_spp=1024, step=0.02):
    """The derivative image of `render` as the `to_world` parameter `name` of
    a jaxrender scene translates along `direction` (jvp at `spp`, key 1),
    and its central finite differences (`fd_spp`, key 2 on both sides).
    Returns (jvp, fd) as numpy arrays (H, W, 3)."""
    import jax
    import jax.numpy as jnp

    import jaxrender as jr

    tw = jr.traverse(scene)[name]
    move = jnp.asarray(direction, jnp.float32)

    def image(x, n, key):
        return jr.render(jr.replace(scene, {name: jr.translate(x * move) @ tw}), spp=n, key=key)

    d = jax.jit(lambda: jax.jvp(lambda x: image(x, spp, jax.random.key(1)), (0.0,), (1.0,))[1])()
    f = jax.jit(lambda x: image(x, fd_spp, jax.random.key(2)))
    return np.asarray(d), np.asarray((f(step) - f(-step)) / (2 * step))
