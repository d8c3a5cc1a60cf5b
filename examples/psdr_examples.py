# %% [markdown]
# # PSDR-CUDA's two examples, the JAX way
#
# PSDR-CUDA's documentation shows differentiable rendering with two
# examples: a *derivative image* with respect to the rotation angle `P` of
# the first mesh about the z axis (forward mode), and the *gradient of an
# RMSE image loss* with respect to all vertex positions of that mesh
# (reverse mode). Here are both, on a scene file in PSDR's own dialect
# (`examples/data/psdr/scene.xml`: Mitsuba 0.5 syntax, camelCase names,
# `faceNormals`, obj meshes, area lights, a `direct` integrator), and then a
# few gradient steps on the vertices to show that the gradient is useful.
#
# | PSDR-CUDA (Enoki) | jaxrender (JAX) |
# | --- | --- |
# | `scene.load_file('scene.xml', auto_configure=False)`, later configured | `jr.load_file("scene.xml")`: a pytree, nothing to configure |
# | `P = FloatD(0.)`, marked for differentiation | `P` is a function's argument |
# | `Matrix4fD.rotate(Vector3fD(0., 0., 1.), P)`, left-multiplied onto `Mesh[0]`'s to-world | `jr.rotate([0, 0, 1], P) @ to_world0`, set with `jr.replace` |
# | `psdr_cuda.DirectIntegrator().renderD(scene, sensor_id=0)` | `jr.render(scene, "direct", sensor=0)` |
# | `ek.gradient(image)` after forward-mode autodiff | the tangent of `jax.jvp(f, (0.0,), (1.0,))` |
# | `ek.sqrt(ek.hmean(ek.squared_norm(target_image - image)))` | `jnp.sqrt(jnp.mean(jnp.sum((target - image) ** 2, -1)))` |
# | reverse-mode autodiff, then `ek.gradient(scene.param_map["Mesh[0]"].vertex_positions)` | `jax.grad` with respect to `jr.traverse(scene)["Mesh[0].vertex_positions"]` |
#
# One difference of units: `jr.rotate` takes degrees (Mitsuba's
# convention), Enoki's `rotate` radians, so the derivative image here is
# per degree (multiply by 180/pi for PSDR's per radian).
#
# **What the gradients contain.** jaxrender differentiates the interior
# of the integrand (shading, distances, angles; here the crystal's facets
# turning towards or away from the lights) and adds boundary terms where
# visibility changes: primary edges (silhouettes and creases moving across
# pixels, edge sampling as PSDR does it) and, at the first hit of each
# camera ray, the direct-illumination edges (shadow boundaries, edges hiding
# part of a light). With the `direct` integrator that is every term; what is
# not included is visibility changing after a bounce (indirect light). The
# shadow term samples edges uniformly by length and is noisy, so the scene
# keeps shadows out of view and the visible effect of motion is mostly
# silhouettes: the crystal stands in front of a large emissive backdrop (a
# light box) whose surface is black, so the crystal's shadows on it reflect
# nothing, and the key light sits above the camera, out of view. What moves
# in the image is then the crystal's silhouette against the bright
# backdrop, its creases and its shading. Without the boundary terms
# (`render(..., boundary=False)`) the derivative image would have the
# shading changes only, and the vertex gradient would not see the outline.
#
# **Results at default size** (128x128; 64 spp for the derivative image, 16
# for the gradients, 256 for the target; 4 min on a shared 2-core CPU, 1.5
# of them compiling): the derivative image is largest along the silhouette
# and the creases (up to 0.35 per degree), with a faint change of shading
# inside. At 16x16 it agrees with central finite differences of the angle
# within 6-13% (tests/test_seed_examples.py; the interior term alone is off
# by 104%). The vertex gradient is large at the vertices on the outline
# (norms up to 0.6) and about zero at those hidden behind. 40 Adam steps
# lower the RMSE, measured at 256 spp, from 0.22 to 0.020; the vertices get
# only a little closer to the target's (mean distance 0.130 -> 0.119): one
# view fixes the outline and the visible facets' shading, not the hidden
# side or the depth.
#
# Run it as a script (`python examples/psdr_examples.py --help`) or here;
# in a notebook, `$JAXRENDER_EXAMPLE_ARGS` (e.g. `"--res 32 --iters 10"`)
# stands in for the command line.

# %%
import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image, ImageDraw

import jaxrender as jr

# `_common` sits next to this file; a notebook runs from notebooks/.
EXAMPLES = Path(__file__).resolve().parent if "__file__" in globals() else Path("../examples").resolve()
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
from _common import false_colour, output_dir, parse_args, plot_curves  # noqa: E402

SCENE_FILE = EXAMPLES / "data" / "psdr" / "scene.xml"

# %% [markdown]
# ## The scene
#
# Three obj meshes, named by position as PSDR names them: `Mesh[0]` is the
# crystal (14 vertices, 24 flat-shaded facets, z up, standing on the world
# z axis), `Mesh[1]` the emissive backdrop, `Mesh[2]` the key light. The
# file's `<default>`s for the film size and sample count are overridden by
# `load_file`'s keyword arguments, as Mitsuba's `-D` does.

# %%
MESH = "Mesh[0]"
Z_AXIS = jnp.array([0.0, 0.0, 1.0])


def load(res, spp):
    return jr.load_file(SCENE_FILE, res=res, spp=spp)


# %% [markdown]
# ## (a) The derivative image with respect to a rotation angle
#
# `rotated(scene, P)` left-multiplies `jr.rotate([0, 0, 1], P)` onto the
# mesh's `to_world`, as PSDR's example does; `jax.jvp` of the render at
# `P = 0` in direction 1 gives the image and its derivative in one pass.
# The same key renders the same samples whatever `P` is, so this is the
# derivative that finite differences with a fixed key converge to.

# %%
def rotated(scene, P, mesh=MESH):
    to_world0 = jr.traverse(scene)[f"{mesh}.to_world"]
    return jr.replace(scene, {f"{mesh}.to_world": jr.rotate(Z_AXIS, P) @ to_world0})


def derivative_image(scene, spp, key):
    """(image, d image / d P) at P = 0, P in degrees."""
    def render(P):
        return jr.render(rotated(scene, P), "direct", spp=spp, key=key)

    return jax.jit(lambda: jax.jvp(render, (jnp.float32(0.0),), (jnp.float32(1.0),)))()


# %% [markdown]
# ## (b) The gradient of the RMSE loss with respect to the vertex positions
#
# The target is the crystal turned 10 degrees about z and moved a little
# (its `to_world` changed), rendered with many samples. The loss is PSDR's:
# the square root of the mean over pixels of the squared RGB distance. Its
# gradient with respect to `Mesh[0].vertex_positions` (object space, (14,
# 3)) says how each vertex should move to match the target. `key_grad`
# estimates the derivative from samples independent of the image's (Mitsuba
# 3's `seed_grad`): the loss is nonlinear in the image, and a derivative
# correlated with the image's noise would also try to reduce that noise.

# %%
VERTICES = f"{MESH}.vertex_positions"
TARGET_TURN, TARGET_SHIFT = 10.0, (0.06, -0.04, 0.08)


def target_scene(scene):
    """The crystal turned TARGET_TURN degrees about z and shifted."""
    to_world0 = jr.traverse(scene)[f"{MESH}.to_world"]
    moved = jr.translate(jnp.array(TARGET_SHIFT)) @ jr.rotate(Z_AXIS, TARGET_TURN) @ to_world0
    return jr.replace(scene, {f"{MESH}.to_world": moved})


def rmse(image, target):
    return jnp.sqrt(jnp.mean(jnp.sum((target - image) ** 2, axis=-1)))


def make_loss(scene, target, spp):
    """loss(vertices, key, key_grad): the RMSE of a render with the mesh's
    vertices replaced, its derivative estimated with `key_grad`."""
    def loss(vertices, key, key_grad):
        image = jr.render(jr.replace(scene, {VERTICES: vertices}), "direct", spp=spp, key=key, key_grad=key_grad)
        return rmse(image, target)

    return loss


def transform_points(to_world, points):
    """(N, 3) points mapped by a (4, 4) transform (numpy)."""
    p = np.c_[np.asarray(points, np.float64), np.ones(len(points))] @ np.asarray(to_world, np.float64).T
    return p[:, :3] / p[:, 3:]


def project(scene, points):
    """Pixel coordinates (x right, y down) of world points (N, 3) in the
    camera of sensor 0 (Mitsuba's camera space: +z forward, +x image left)."""
    cam = scene.sensors[0]
    p = transform_points(np.linalg.inv(np.asarray(cam.to_world, np.float64)), points)
    w, h = cam.film.width, cam.film.height
    tan_x = np.tan(np.radians(float(cam.fov)) / 2)  # the scene's fovAxis is x
    x = w / 2 * (1 - p[:, 0] / p[:, 2] / tan_x)
    y = h / 2 * (1 - p[:, 1] / p[:, 2] / (tan_x * h / w))
    return np.c_[x, y]


def draw_gradient(path, scene, image, vertices, grad, zoom=3):
    """The image with each vertex marked by a circle whose radius grows with
    its gradient's norm and a line along its -gradient, projected."""
    to_world = np.asarray(jr.traverse(scene)[f"{MESH}.to_world"], np.float64)
    norms = np.linalg.norm(grad, axis=1)
    largest = max(norms.max(), 1e-20)
    step = 0.15 * grad / largest  # the largest gradient draws as 0.15 units (object space)
    a = project(scene, transform_points(to_world, vertices)) * zoom
    b = project(scene, transform_points(to_world, vertices - step)) * zoom
    rgb = np.clip(np.asarray(image), 0, 1) ** (1 / 2.2)
    img = Image.fromarray((rgb * 255).astype(np.uint8)).resize((rgb.shape[1] * zoom, rgb.shape[0] * zoom))
    draw = ImageDraw.Draw(img)
    for (x0, y0), (x1, y1), n in zip(a, b, norms):
        r = 2 + 6 * n / largest
        draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], outline=(200, 0, 0), width=2)
        draw.line([(x0, y0), (x1, y1)], fill=(200, 0, 0), width=2)
    img.save(path)


# %% [markdown]
# ## Running both, then a few gradient steps
#
# After the PSDR-style gradient, `optax.adam` moves the 42 vertex
# coordinates for `--iters` steps (one jitted step: loss, gradient, update),
# a fresh pair of keys each step. The loss is also measured with
# `--ref-spp` samples (the target's) before and after, and the vertices'
# mean distance to the target's.

# %%
def main(argv=None):
    parser = argparse.ArgumentParser(description="PSDR-CUDA's derivative-image and vertex-gradient examples.")
    parser.add_argument("--res", type=int, default=128, help="image width and height")
    parser.add_argument("--spp", type=int, default=64, help="samples per pixel: derivative image and gradient")
    parser.add_argument("--ref-spp", type=int, default=256, help="samples per pixel: target and clean losses")
    parser.add_argument("--grad-spp", type=int, default=16, help="samples per pixel: loss gradients and steps")
    parser.add_argument("--iters", type=int, default=40, help="gradient steps on the vertices")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(EXAMPLES / "out" / "psdr_examples"))
    args = parse_args(parser, argv)
    out = output_dir(args.out)
    key = jax.random.key(args.seed)
    k_jvp, k_loss, k_grad, k_ref, k_opt = jax.random.split(key, 5)
    scene = load(args.res, args.spp)

    # (a) d image / d P.
    t0 = time.perf_counter()
    image, d_image = (np.asarray(x) for x in derivative_image(scene, args.spp, k_jvp))
    t_jvp = time.perf_counter() - t0
    jr.write_image(out / "image.png", image)
    jr.write_image(out / "d_image_dP.png", false_colour(d_image.sum(-1)), raw=True)
    print(f"(a) {args.res}x{args.res}, {args.spp} spp: d image / d P in {t_jvp:.1f} s (compiling included); "
          f"|d image| max {np.abs(d_image).max():.3f}, mean {np.abs(d_image).mean():.4f} per degree")

    # (b) d loss / d vertex positions. One compiled function gives the loss
    # and its gradient, here and at every optimization step.
    t0 = time.perf_counter()
    target = jr.render(target_scene(scene), "direct", spp=args.ref_spp, key=k_ref)
    loss_and_grad = jax.jit(jax.value_and_grad(make_loss(scene, target, args.grad_spp)))
    vertices0 = jr.traverse(scene)[VERTICES]
    value, grad = loss_and_grad(vertices0, k_loss, k_grad)
    value, grad = float(value), np.asarray(grad)
    t_grad = time.perf_counter() - t0
    norms = np.linalg.norm(grad, axis=1)
    jr.write_image(out / "target.png", np.asarray(target))
    draw_gradient(out / "vertex_gradient.png", scene, image, np.asarray(vertices0), grad)
    print(f"(b) RMSE {value:.4f}; d loss / d {VERTICES} in {t_grad:.1f} s (target and compiling included)")
    print("    per-vertex |gradient|: " + " ".join(f"{n:.3f}" for n in norms))

    # A few gradient steps on the vertices. Renders at the target's sample
    # count outside jit reuse jr.render's own compiled function.
    def clean_render(vertices):
        return jr.render(jr.replace(scene, {VERTICES: vertices}), "direct", spp=args.ref_spp, key=k_ref)

    optimizer = optax.adam(args.lr)

    @jax.jit
    def update(g, opt_state, vertices):
        updates, opt_state = optimizer.update(g, opt_state, vertices)
        return optax.apply_updates(vertices, updates), opt_state

    true_vertices = transform_points(jr.traverse(target_scene(scene))[f"{MESH}.to_world"], vertices0)
    vertices, opt_state, losses = vertices0, optimizer.init(vertices0), []
    t0 = time.perf_counter()
    for i in range(args.iters):
        k1, k2 = jax.random.split(jax.random.fold_in(k_opt, i))
        step_loss, g = loss_and_grad(vertices, k1, k2)
        vertices, opt_state = update(g, opt_state, vertices)
        losses.append(float(step_loss))
        print(f"  step {i:3d}: RMSE {losses[-1]:.4f}")
    t_opt = time.perf_counter() - t0
    final = np.asarray(clean_render(vertices))
    jr.write_image(out / "final.png", final)
    plot_curves(out / "loss.png", {f"RMSE ({args.grad_spp} spp)": losses}, title="RMSE image loss")
    vertex_error = lambda v: float(np.linalg.norm(np.asarray(v) - true_vertices, axis=1).mean())  # noqa: E731
    results = {
        "scene": scene,
        "image": image,
        "d_image": d_image,
        "target": np.asarray(target),
        "loss": value,
        "grad": grad,
        "grad_norms": norms,
        "losses": losses,
        "clean_loss_initial": float(rmse(clean_render(vertices0), target)),
        "clean_loss_final": float(rmse(final, target)),
        "vertex_error_initial": vertex_error(vertices0),
        "vertex_error_final": vertex_error(vertices),
        "vertices_final": np.asarray(vertices),
        "seconds": {"jvp": t_jvp, "grad": t_grad, "steps": t_opt},
    }
    print(f"{args.iters} steps in {t_opt:.1f} s: RMSE at {args.ref_spp} spp {results['clean_loss_initial']:.4f} -> "
          f"{results['clean_loss_final']:.4f}; mean vertex distance to the target's "
          f"{results['vertex_error_initial']:.3f} -> {results['vertex_error_final']:.3f}; output in {out}")
    return results


# %%
if __name__ == "__main__":
    results = main()
