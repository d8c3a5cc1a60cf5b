# %% [markdown]
# # Recovering an environment map from one image
#
# After Mitsuba 2's "differentiating textures" example: a rough metal sphere
# is lit only by an environment map. We render a reference image, forget the
# map (reset it to uniform white) and recover its 32 x 16 x 3 texels by
# gradient descent on the image error, rendering one sample per pixel per
# iteration. The map is made procedurally (sky gradient, ground, sun), so the
# example needs no data files.
#
# At the default size (128x128, 100 iterations; 1 min 40 s on two CPU
# cores) the texel error (MSE) falls from 0.51 to 0.040, and the image error
# at the reference's 256 spp 258x; the 1-spp loss falls 9.6x, down to the
# variance of a 1-spp image.
#
# Run it as a script (`python examples/envmap_recovery.py --help`) or here;
# in a notebook, `$JAXRENDER_EXAMPLE_ARGS` (e.g. `"--res 32 --iters 20"`)
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

import jaxrender as jr

# `_common` sits next to this file; a notebook runs from notebooks/.
EXAMPLES = Path(__file__).resolve().parent if "__file__" in globals() else Path("../examples").resolve()
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
from _common import output_dir, parse_args, plot_curves  # noqa: E402

# %% [markdown]
# ## The scene
#
# The environment map is a latitude-longitude image: row 0 looks up (+y), the
# last row down, and column u looks along (sin 2 pi u, 0, -cos 2 pi u) (Mitsuba's
# convention). The sun sits up and to the right, behind the camera, so the
# sphere shows it as a highlight; the camera also sees part of the map
# directly behind the sphere.
#
# One convex object under an environment map: light reaches the camera after
# exactly one bounce, so the `direct` integrator (emitter and BSDF sampling
# with MIS) is exact here, and cheaper to compile than `path`.

# %%
PARAM = "envmap.data"

SCENE = """<scene version="3.0.0">
    <default name="res" value="128"/>
    <integrator type="direct"/>
    <sensor type="perspective">
        <float name="fov" value="35"/>
        <transform name="to_world">
            <lookat origin="0, 0, 4" target="0, 0, 0" up="0, 1, 0"/>
        </transform>
        <film type="hdrfilm">
            <integer name="width" value="$res"/>
            <integer name="height" value="$res"/>
            <rfilter type="box"/>
        </film>
    </sensor>
    <emitter type="envmap" id="envmap">
        <string name="filename" value="$envmap"/>
    </emitter>
    <shape type="sphere">
        <float name="radius" value="1"/>
        <bsdf type="roughconductor">
            <string name="material" value="Al"/>
            <float name="alpha" value="0.1"/>
        </bsdf>
    </shape>
</scene>"""


def reference_envmap(height=16, width=32) -> np.ndarray:
    """Sky (blue at the zenith, pale at the horizon), brown ground, a sun."""
    t, u = np.meshgrid(np.arange(height) / (height - 1), (np.arange(width) + 0.5) / width, indexing="ij")
    t = t[..., None]  # 0: up, 1: down
    zenith, horizon, ground = np.array([0.25, 0.45, 1.0]), np.array([0.9, 0.9, 0.85]), np.array([0.35, 0.25, 0.15])
    env = np.where(t < 0.5, zenith + (horizon - zenith) * (2 * t) ** 2, ground)
    # Directions of the texels, and their angle to the sun (35 degrees above
    # the horizon at azimuth u = 0.35).
    theta, phi = np.pi * t[..., 0], 2 * np.pi * u
    d = np.stack([np.sin(theta) * np.sin(phi), np.cos(theta), -np.sin(theta) * np.cos(phi)], -1)
    ts, ps = np.radians(55.0), 2 * np.pi * 0.35
    sun = np.array([np.sin(ts) * np.sin(ps), np.cos(ts), -np.sin(ts) * np.cos(ps)])
    angle = np.arccos(np.clip(d @ sun, -1, 1))[..., None]
    env = env + np.array([6.0, 5.0, 3.5]) * np.exp(-0.5 * (angle / np.radians(12)) ** 2)
    return env.astype(np.float32)


def upscale(image, k=8):
    """Nearest-neighbour enlargement, to look at a 32 x 16 map."""
    return np.repeat(np.repeat(np.asarray(image), k, axis=0), k, axis=1)


# %% [markdown]
# ## The optimization
#
# One `jax.jit`-compiled step: render at 1 spp with a fresh key, the mean
# squared error against the reference, its gradient with respect to every
# texel, an Adam update. `key_grad` makes `jr.render` estimate derivatives
# from a second, independent render, so that the gradient of the squared
# error is unbiased (Mitsuba 2's `unbiased=True`, Mitsuba 3's `seed_grad`):
# with one render, the noise of the residual and of the derivative are
# correlated, and the expected gradient also lowers the image's variance. After each step the map is clamped at zero:
# radiance cannot be negative, yet the noisy 1-spp gradients push rarely seen
# texels below zero (Mitsuba's example shows such negative regions), and the
# emitter's importance-sampling distribution, built from the texels'
# luminance, needs non-negative values.

# %%
def make_step(optimizer, spp):
    @jax.jit
    def step(scene, envmap, opt_state, reference, key):
        key, key_grad = jax.random.split(key)

        def loss(envmap):
            image = jr.render(jr.replace(scene, {PARAM: envmap}), spp=spp, key=key, key_grad=key_grad)
            return jnp.mean((image - reference) ** 2), image

        (value, image), grad = jax.value_and_grad(loss, has_aux=True)(envmap)
        updates, opt_state = optimizer.update(grad, opt_state, envmap)
        envmap = jnp.maximum(optax.apply_updates(envmap, updates), 0.0)
        return envmap, opt_state, value, image

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description="Recover an environment map from one image.")
    parser.add_argument("--res", type=int, default=128, help="image width and height")
    parser.add_argument("--spp", type=int, default=1, help="samples per pixel per iteration")
    parser.add_argument("--ref-spp", type=int, default=256, help="samples per pixel of the reference")
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.05, help="Adam's learning rate")
    parser.add_argument("--save-every", type=int, default=10, help="write image and map every N iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(EXAMPLES / "out" / "envmap_recovery"))
    args = parse_args(parser, argv)
    out = output_dir(args.out)

    # Reference map and image.
    env_ref = reference_envmap()
    jr.write_image(out / "envmap_reference.exr", env_ref)
    jr.write_image(out / "envmap_reference.png", upscale(env_ref))
    scene = jr.load_string(SCENE, res=args.res, envmap=str((out / "envmap_reference.exr").resolve()))
    key_ref, key_eval, key_opt = jax.random.split(jax.random.key(args.seed), 3)
    render_ref = jax.jit(lambda scene, key: jr.render(scene, spp=args.ref_spp, key=key))
    t0 = time.perf_counter()
    reference = render_ref(scene, key_ref).block_until_ready()
    print(f"reference: {args.res}x{args.res}, {args.ref_spp} spp, {time.perf_counter() - t0:.1f} s")
    jr.write_image(out / "reference.png", reference)

    # Forget the map: uniform white, as in Mitsuba's example.
    envmap = jnp.ones_like(env_ref)
    optimizer = optax.adam(args.lr)
    opt_state = optimizer.init(envmap)
    step = make_step(optimizer, args.spp)

    def envmap_error(envmap):
        return float(jnp.mean((envmap - env_ref) ** 2))

    def clean_loss(envmap):
        """The image loss at the reference's spp (the 1-spp loss includes the
        variance of a 1-spp image, a floor that no map can go below)."""
        image = render_ref(jr.replace(scene, {PARAM: envmap}), key_eval)
        return float(jnp.mean((image - reference) ** 2))

    clean_initial = clean_loss(envmap)

    losses, errors = [], [envmap_error(envmap)]
    t0 = time.perf_counter()
    for it in range(args.iters):
        envmap, opt_state, loss, image = step(scene, envmap, opt_state, reference,
                                              jax.random.fold_in(key_opt, it))
        losses.append(float(loss))
        errors.append(envmap_error(envmap))
        if it == 0:
            t_first = time.perf_counter() - t0
        print(f"iteration {it:3d}  loss {losses[-1]:.3e}  envmap error {errors[-1]:.3e}")
        if args.save_every and (it % args.save_every == 0 or it == args.iters - 1):
            jr.write_image(out / f"image_{it:03d}.png", image)
            jr.write_image(out / f"envmap_{it:03d}.png", upscale(envmap))
    seconds = time.perf_counter() - t0
    clean_final = clean_loss(envmap)
    jr.write_image(out / "envmap_final.exr", envmap)
    plot_curves(out / "loss.png", {"image loss (MSE)": losses, "envmap error (MSE)": errors[1:]},
                title=f"envmap recovery, {args.res}x{args.res}, {args.spp} spp/iteration")

    # The 1-spp loss is noisy: compare the first iteration with the last tenth's mean.
    window = max(1, args.iters // 10)
    results = {
        "losses": losses,
        "envmap_errors": errors,
        "loss_ratio": losses[0] / float(np.mean(losses[-window:])),
        "envmap_error_initial": errors[0],
        "envmap_error_final": float(np.mean(errors[-window:])),
        "clean_loss_ratio": clean_initial / clean_final,
        "seconds_first_iteration": t_first,
        "seconds_per_iteration": (seconds - t_first) / max(args.iters - 1, 1),
    }
    print(f"loss fell {results['loss_ratio']:.1f}x ({results['clean_loss_ratio']:.1f}x at {args.ref_spp} spp); "
          f"envmap error {errors[0]:.3e} -> {results['envmap_error_final']:.3e}; first iteration (compiles) {t_first:.1f} s, then "
          f"{results['seconds_per_iteration']:.3f} s per iteration; output in {out}")
    return results


# %%
if __name__ == "__main__":
    results = main()
