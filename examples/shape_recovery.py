# %% [markdown]
# # Recovering a shape from several views
#
# A sphere mesh is deformed, vertex by vertex, until its images match those
# of a target object seen by six cameras around it. The target has the
# sphere's topology (the same icosphere with its vertices moved: a box with
# rounded edges and a bump on one corner), so its reference images are
# rendered by the same code, only the vertex positions differ; the
# optimization knows nothing of the target but its images. The gradient of
# the image error with respect to the 642 vertex positions has two parts:
# the shading (the surface turning towards or away from the light) and the
# silhouettes moving across pixels, which is jaxrender's boundary term. A
# smoothness prior, the "large steps" parameterization, keeps the noisy
# per-vertex gradient from crumpling the mesh.
#
# At the default size (six 64x64 views, 4 spp per iteration, 150
# iterations; 3 min on two CPU cores, 25-40 s of it compiling the step) the
# Chamfer distance between the surface and the target's falls from 5.9% of
# the object's size to 0.37% (seed 0; seed 1: 0.49%), 16x (12x), and is
# under 1% from iteration 32 (31) on; the image error falls 110x (47x).
# The mean distance between corresponding vertices does not fall (5.9% ->
# 7.0%): the images fix where the surface is, not where on it each vertex
# sits, and vertices slide along it. Without the boundary term
# (`--no-boundary`) the surface drifts away instead (at the test's reduced
# size, 5.7% -> 8.2% in 60 iterations, against 0.8% with it).
#
# Run it as a script (`python examples/shape_recovery.py --help`) or here;
# in a notebook, `$JAXRENDER_EXAMPLE_ARGS` (e.g. `"--res 32 --subdivisions 2
# --iters 60 --lr 0.05"`, the test's size) stands in for the command line.

# %%
import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.spatial import cKDTree

import jaxrender as jr
from jaxrender.io import write_obj

# `_common` sits next to this file; a notebook runs from notebooks/.
EXAMPLES = Path(__file__).resolve().parent if "__file__" in globals() else Path("../examples").resolve()
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
from _common import output_dir, parse_args, plot_curves

# %% [markdown]
# ## The meshes
#
# An icosphere: the icosahedron with every triangle split into four,
# `subdivisions` times, and the vertices pushed onto the unit sphere (642
# vertices and 1,280 faces at 3 subdivisions, 162 and 320 at 2). Its faces
# are counter-clockwise seen from outside.
#
# The target moves each vertex along its direction d from the centre, to a
# superellipsoid |x/a|^4 + |y/b|^4 + |z/c|^4 = 1 (a box with rounded edges,
# half-sizes 1.15, 0.75 and 0.9) and then out by a smooth bump (0.3 high,
# about 30 degrees wide) on one corner. Its longest side, 2.3, is the unit
# of the geometric errors below. The starting sphere has radius 1.

# %%
def icosphere(subdivisions):
    """(vertices (V, 3) float64 on the unit sphere, faces (F, 3) int32)."""
    t = (1.0 + 5.0**0.5) / 2.0
    v = np.array([(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
                  (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)], np.float64)
    f = np.array([(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
                  (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
                  (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)], np.int64)
    for _ in range(subdivisions):
        # One new vertex per edge, at its midpoint; every face becomes four.
        edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
        unique, index = np.unique(edges, axis=0, return_inverse=True)
        mid = len(v) + index.reshape(3, -1)  # midpoints of edges 01, 12, 20 of each face
        v = np.concatenate([v, (v[unique[:, 0]] + v[unique[:, 1]]) / 2])
        a, b, c = f.T
        ab, bc, ca = mid
        f = np.concatenate([np.stack(x, axis=1) for x in ((a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca))])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    normal = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert np.all(np.sum(normal * v[f].mean(axis=1), axis=1) > 0)  # counter-clockwise from outside
    return v, f.astype(np.int32)


HALF_SIZES = np.array([1.15, 0.75, 0.9])
BUMP_DIRECTION = np.array([0.6, 0.7, 0.4]) / np.linalg.norm([0.6, 0.7, 0.4])
BUMP_HEIGHT, BUMP_WIDTH = 0.3, 0.5  # width in radians
SIZE = 2 * HALF_SIZES.max()


def target_shape(directions):
    """The target's vertices for unit directions (V, 3): the superellipsoid
    point along each direction, pushed out along it by the bump."""
    radius = np.sum(np.abs(directions / HALF_SIZES) ** 4, axis=1) ** -0.25
    angle = np.arccos(np.clip(directions @ BUMP_DIRECTION, -1.0, 1.0))
    radius = radius + BUMP_HEIGHT * np.exp(-((angle / BUMP_WIDTH) ** 2))
    return directions * radius[:, None]


# %% [markdown]
# ## The scene
#
# The mesh is written as an OBJ file and loaded from it, so it is an
# ordinary `obj` shape, smooth shaded: `jr.replace` recomputes its vertex
# normals whenever the vertices change (Mitsuba's `update()`), and their
# derivative is part of the gradient. A smooth mesh's only image edges are
# its silhouettes, which the boundary term samples; a flat-shaded one would
# add every crease between faces. The object is a light grey diffuse
# surface lit by an environment map written by `environment()`: a dim sky
# and ground, a broad warm light above and in front, and a cooler one
# behind and a little below the horizon. Every side of the object then
# faces some light at some angle, so its shading tells the surface's
# orientation, while its outline against the background (the map itself)
# tells where the surface ends. Six cameras sit on a ring around it,
# alternately 35 degrees above and 25 below. One bounce of light (`direct`)
# is the whole image of a (nearly) convex object under an environment map.

# %%
SCENE = """<scene version="3.0.0">
    <default name="res" value="64"/>
    <default name="mesh" value="sphere.obj"/>
    <default name="envmap" value="environment.exr"/>
    <integrator type="direct"/>
    <sensor type="perspective">
        <float name="fov" value="35"/>
        <transform name="to_world"><lookat origin="0, 0, 5" target="0, 0, 0" up="0, 1, 0"/></transform>
        <film type="hdrfilm">
            <integer name="width" value="$res"/>
            <integer name="height" value="$res"/>
            <rfilter type="box"/>
        </film>
    </sensor>
    <emitter type="envmap"><string name="filename" value="$envmap"/></emitter>
    <shape type="obj" id="object">
        <string name="filename" value="$mesh"/>
        <bsdf type="diffuse"><rgb name="reflectance" value="0.7, 0.7, 0.7"/></bsdf>
    </shape>
</scene>"""


def environment(height=32, width=64):
    """The lat-long map (height, width, 3), y up as in Mitsuba: a dim sky and
    ground, a broad warm light above the +x +z side and a cooler one on the
    other side, a little below the horizon."""
    t, u = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij")
    theta, phi = np.pi * t, 2 * np.pi * u
    d = np.stack([np.sin(theta) * np.sin(phi), np.cos(theta), -np.sin(theta) * np.cos(phi)], -1)
    env = np.where(d[..., 1:2] > 0, np.array([0.12, 0.15, 0.2]), np.array([0.08, 0.07, 0.06]))

    def lobe(direction, degrees):
        angle = np.arccos(np.clip(d @ (np.asarray(direction) / np.linalg.norm(direction)), -1, 1))
        return np.exp(-0.5 * (angle / np.radians(degrees)) ** 2)[..., None]

    env = env + np.array([5.0, 4.2, 3.2]) * lobe([0.5, 1.0, 0.6], 20)
    env = env + np.array([0.8, 1.4, 2.6]) * lobe([-0.6, -0.2, -0.7], 25)
    return env.astype(np.float32)


VERTICES = "object.vertex_positions"


def cameras(scene, n_views, distance=5.0):
    """`n_views` cameras on a ring around the object, alternately 35 degrees
    above and 25 below it, stacked into one camera pytree for `jax.vmap`."""
    cams = []
    for i in range(n_views):
        azimuth = np.radians(360.0 * i / n_views + 20.0)
        elevation = np.radians(35.0 if i % 2 == 0 else -25.0)
        origin = distance * np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation),
                                      np.cos(elevation) * np.cos(azimuth)])
        to_world = jr.look_at(origin, np.zeros(3), np.array([0.0, 1.0, 0.0]))
        cams.append(dataclasses.replace(scene.sensors[0], to_world=to_world))
    return jax.tree.map(lambda *x: jnp.stack(x), *cams)


# %% [markdown]
# ## Smoothness: the "large steps" parameterization
#
# Moving each vertex by its own gradient crumples the mesh: the gradient is
# noisy (a few samples per pixel) and concentrated on the vertices near
# silhouettes, and Adam gives every coordinate a step of about the same
# size. (With `--smoothness 0` at the test's reduced size the surface folds
# over itself and the Chamfer distance stalls at 3.7% at the learning rate
# used there; a five times smaller rate keeps the mesh intact but reaches
# only 1.9% in 60 iterations, against 0.8-1.4% with the parameterization.)
# As the smoothness regularizer we use the *large steps* parameterization
# of Nicolet et al. (2021) rather than a Laplacian penalty added to the
# loss (which would also pull the answer towards a smoother shape): the
# optimizer works on u = (I + lambda L) v, with L the uniform (combinatorial)
# Laplacian of the mesh, computed once from the static topology, and the
# vertices are v = (I + lambda L)^-1 u. The gradient with respect to u is
# the vertex gradient diffused over the surface by (I + lambda L)^-1, and so
# is each step, so whole regions move smoothly; the minimum is the same as
# without it (any v is some u's), only the path there is smoother.
# `--smoothness` is the length (in scene units; 0.35, about a sixth of the
# object's size) over which it spreads: lambda = (length / mean edge
# length)^2, so that it means the same at any subdivision. The inverse is a
# dense V x V matrix here (642^2 numbers), so the parameterization is one
# matrix product inside the jitted step; a large mesh would use a sparse
# Cholesky factorization instead.
#
# The optimizer is plain `optax.adam` on u, its learning rate decaying
# (cosine) to a tenth. (Nicolet et al. recommend a variant of Adam that
# scales all coordinates by one common second moment; tried here, it ended
# 1.6% from the target after 150 iterations, against 0.37%.)

# %%
def laplacian(n_vertices, faces):
    """The uniform Laplacian L = D - A (dense, float64) of the mesh's edges."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    a = np.zeros((n_vertices, n_vertices))
    a[edges[:, 0], edges[:, 1]] = 1.0
    a[edges[:, 1], edges[:, 0]] = 1.0
    return np.diag(a.sum(axis=1)) - a


def large_steps(vertices, faces, length):
    """(to_u, to_v): the matrices of u = (I + lambda L) v and its inverse,
    with lambda = (length / mean edge length)^2."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    smoothness = (length / np.mean(np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1))) ** 2
    m = np.eye(len(vertices)) + smoothness * laplacian(len(vertices), faces)
    return jnp.asarray(m, jnp.float32), jnp.asarray(np.linalg.inv(m), jnp.float32)


# %% [markdown]
# ## The geometric error
#
# Independent of the renderer: the symmetric Chamfer distance between the
# two surfaces, i.e. the mean distance from points spread uniformly over
# one surface to the other surface, averaged both ways, in % of the
# target's size. Distances are exact point-to-triangle distances (the
# nearest triangle is searched among those whose centroids are closest).

# %%
def closest_points(p, a, b, c):
    """The closest points to p on triangles (a, b, c), all (N, 3)
    (Ericson, Real-Time Collision Detection, 5.1.5)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = np.sum(ab * ap, -1), np.sum(ac * ap, -1)
    bp = p - b
    d3, d4 = np.sum(ab * bp, -1), np.sum(ac * bp, -1)
    cp = p - c
    d5, d6 = np.sum(ab * cp, -1), np.sum(ac * cp, -1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = 1.0 / (va + vb + vc)
        v, w = vb * denom, vc * denom
        out = a + ab * v[:, None] + ac * w[:, None]  # inside the face
        t = d2 / (d2 - d6)  # on edge ac
        out = np.where(((vb <= 0) & (d2 >= 0) & (d6 <= 0))[:, None], a + t[:, None] * ac, out)
        t = d1 / (d1 - d3)  # on edge ab
        out = np.where(((vc <= 0) & (d1 >= 0) & (d3 <= 0))[:, None], a + t[:, None] * ab, out)
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))  # on edge bc
        out = np.where(((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0))[:, None], b + t[:, None] * (c - b), out)
    out = np.where(((d6 >= 0) & (d5 <= d6))[:, None], c, out)
    out = np.where(((d3 >= 0) & (d4 <= d3))[:, None], b, out)
    out = np.where(((d1 <= 0) & (d2 <= 0))[:, None], a, out)
    return out


def surface_samples(vertices, faces, n, rng):
    """n points uniformly distributed over the mesh's area."""
    tri = vertices[faces]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face = rng.choice(len(faces), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    w = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    return np.einsum("nk,nkd->nd", w, tri[face])


def distance_to_surface(points, vertices, faces, k=12):
    tri = vertices[faces]
    _, near = cKDTree(tri.mean(axis=1)).query(points, k=k)
    p = np.repeat(points, k, axis=0)
    t = tri[near.reshape(-1)]
    q = closest_points(p, t[:, 0], t[:, 1], t[:, 2])
    return np.linalg.norm(p - q, axis=1).reshape(-1, k).min(axis=1)


def chamfer(v1, v2, faces, n=4000, seed=0):
    """Symmetric Chamfer distance between two meshes (same faces), in % of SIZE."""
    rng = np.random.default_rng(seed)
    v1, v2 = np.asarray(v1, np.float64), np.asarray(v2, np.float64)
    d12 = distance_to_surface(surface_samples(v1, faces, n, rng), v2, faces)
    d21 = distance_to_surface(surface_samples(v2, faces, n, rng), v1, faces)
    return 100.0 * 0.5 * (d12.mean() + d21.mean()) / SIZE


# %% [markdown]
# ## The optimization
#
# One `jax.jit`-compiled step maps u to the vertices, replaces the mesh's
# `vertex_positions` (`jr.replace` recomputes the smooth normals, so their
# derivative is part of the gradient), renders every view with `jax.vmap`
# over the stacked cameras, sums the views' mean squared errors and takes
# an Adam step on u. `render`'s boundary terms (on by default) carry the
# derivative of the silhouettes moving across pixels; `key_grad` draws the
# derivative's samples independently of the image's, so the gradient of the
# squared error is unbiased. The training loss (at 4 spp) soon levels off
# at the variance of the noisy images; the geometric error, measured after
# every step, keeps falling.

# %%
def make_step(scene, cams, to_v, optimizer, spp, boundary=True):
    @jax.jit
    def step(u, opt_state, references, key):
        key, key_grad = jax.random.split(key)

        def loss(u):
            s = jr.replace(scene, {VERTICES: to_v @ u})
            images = jax.vmap(lambda cam: jr.render(s, sensor=cam, spp=spp, key=key, key_grad=key_grad,
                                                        boundary=boundary))(cams)
            return jnp.sum(jnp.mean((images - references) ** 2, axis=(1, 2, 3))), images

        (value, images), grad = jax.value_and_grad(loss, has_aux=True)(u)
        updates, opt_state = optimizer.update(grad, opt_state, u)
        return optax.apply_updates(u, updates), opt_state, value, images

    return step


def mosaic(images):
    """Views side by side, as one image."""
    return np.concatenate(list(np.asarray(images)), axis=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Deform a sphere mesh into a target shape seen by several cameras.")
    parser.add_argument("--res", type=int, default=64, help="width and height of each view")
    parser.add_argument("--views", type=int, default=6, help="number of cameras")
    parser.add_argument("--subdivisions", type=int, default=3, help="icosphere subdivisions (3: 642 vertices)")
    parser.add_argument("--spp", type=int, default=4, help="samples per pixel per iteration")
    parser.add_argument("--ref-spp", type=int, default=64, help="samples per pixel of the references")
    parser.add_argument("--iters", type=int, default=150)
    parser.add_argument("--lr", type=float, default=0.03, help="Adam's initial learning rate")
    parser.add_argument("--smoothness", type=float, default=0.35,
                        help="length (scene units) over which the large steps spread; 0: none")
    parser.add_argument("--no-boundary", dest="boundary", action="store_false",
                        help="leave out the boundary term (silhouettes then do not pull the surface)")
    parser.add_argument("--save-every", type=int, default=25, help="write the views every N iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(EXAMPLES / "out" / "shape_recovery"))
    args = parse_args(parser, argv)
    out = output_dir(args.out)

    sphere, faces = icosphere(args.subdivisions)
    target = target_shape(sphere)
    write_obj(out / "sphere.obj", sphere.astype(np.float32), faces)
    write_obj(out / "target.obj", target.astype(np.float32), faces)
    jr.write_image(out / "environment.exr", environment())
    scene = jr.load_string(SCENE, res=args.res, mesh=str(out / "sphere.obj"), envmap=str(out / "environment.exr"))
    cams = cameras(scene, args.views)
    to_u, to_v = large_steps(sphere, faces, args.smoothness)
    v_start = jr.traverse(scene)[VERTICES]
    v_target = jnp.asarray(target, jnp.float32)
    print(f"icosphere: {len(sphere)} vertices, {len(faces)} faces; {args.views} views of {args.res}x{args.res}")

    key_ref, key_opt = jax.random.split(jax.random.key(args.seed))
    render_views = jax.jit(lambda v, key: jax.vmap(
        lambda cam: jr.render(jr.replace(scene, {VERTICES: v}), sensor=cam, spp=args.ref_spp, key=key))(cams))
    t0 = time.perf_counter()
    references = render_views(v_target, key_ref).block_until_ready()
    print(f"references: {args.ref_spp} spp, {time.perf_counter() - t0:.1f} s")
    jr.write_image(out / "target.png", mosaic(references))
    initial = render_views(v_start, key_ref)
    jr.write_image(out / "initial.png", mosaic(initial))

    schedule = optax.cosine_decay_schedule(args.lr, max(args.iters, 1), alpha=0.1)
    optimizer = optax.adam(schedule)
    u = to_u @ v_start
    opt_state = optimizer.init(u)
    step = make_step(scene, cams, to_v, optimizer, args.spp, args.boundary)

    def errors(v):
        """(Chamfer distance, mean distance between corresponding vertices), % of SIZE."""
        v = np.asarray(v)
        return (chamfer(v, target, faces),
                100.0 * float(np.mean(np.linalg.norm(v - target, axis=1))) / SIZE)

    chamfer0, vertex_error0 = errors(v_start)
    chamfers, vertex_errors = [chamfer0], [vertex_error0]
    print(f"start: Chamfer distance {chamfers[0]:.2f}%, vertex error {vertex_errors[0]:.2f}% of the size")
    losses = []
    t0 = time.perf_counter()
    for it in range(args.iters):
        u, opt_state, loss, images = step(u, opt_state, references, jax.random.fold_in(key_opt, it))
        losses.append(float(loss))
        c, e = errors(to_v @ u)
        chamfers.append(c)
        vertex_errors.append(e)
        if it == 0:
            t_first = time.perf_counter() - t0
        print(f"iteration {it:3d}  loss {losses[-1]:.3e}  Chamfer {c:6.3f}%  vertex error {e:6.3f}%")
        if args.save_every and (it % args.save_every == 0 or it == args.iters - 1):
            jr.write_image(out / f"views_{it:03d}.png", mosaic(images))
    seconds = time.perf_counter() - t0
    v_final = to_v @ u
    write_obj(out / "recovered.obj", np.asarray(v_final), faces)
    final = render_views(v_final, key_ref)
    jr.write_image(out / "final.png", mosaic(final))
    jr.write_image(out / "comparison.png", np.concatenate([mosaic(initial), mosaic(final), mosaic(references)]))
    jr.write_image(out / "difference.png", mosaic(np.abs(np.asarray(final) - np.asarray(references))))
    plot_curves(out / "loss.png", {"image loss (MSE, summed over views)": losses,
                                   "Chamfer distance (% of size)": chamfers[1:],
                                   "vertex error (% of size)": vertex_errors[1:]},
                title=f"shape recovery, {args.views} views of {args.res}x{args.res}, {args.spp} spp/iteration")

    results = {
        "losses": losses,
        "chamfer": chamfers,
        "vertex_errors": vertex_errors,
        "chamfer_initial": chamfers[0],
        "chamfer_final": chamfers[-1],
        "vertex_error_initial": vertex_errors[0],
        "vertex_error_final": vertex_errors[-1],
        "image_error_initial": float(jnp.mean((initial - references) ** 2)),
        "image_error_final": float(jnp.mean((final - references) ** 2)),
        "vertices": np.asarray(v_final),
        "seconds": seconds,
        "seconds_first_iteration": t_first,
        "seconds_per_iteration": (seconds - t_first) / max(args.iters - 1, 1),
    }
    print(f"Chamfer distance {chamfers[0]:.2f}% -> {chamfers[-1]:.3f}%, vertex error {vertex_errors[0]:.2f}% -> "
          f"{vertex_errors[-1]:.3f}% of the size; image error (MSE, {args.ref_spp} spp) "
          f"{results['image_error_initial']:.2e} -> {results['image_error_final']:.2e}; first iteration "
          f"(compiles) {t_first:.1f} s, then {results['seconds_per_iteration']:.3f} s per iteration; output in {out}")
    return results


# %%
if __name__ == "__main__":
    results = main()
