# %% [markdown]
# # Derivative images with `jax.jvp`
#
# Forward-mode differentiation of a render with respect to one scalar gives a
# whole image: how each pixel changes as that scalar moves. Two such images
# of the Cornell box:
#
# * with respect to the red wall's reflectance (its red channel): positive on
#   the wall and, through indirect light, on whatever the wall lights (the
#   red glow on the floor, ceiling and the tall block's side);
# * with respect to the light's position along x (towards the red wall):
#   surfaces near the wall the light moves to get brighter, those on the far
#   side darker; the image changes sign across the box.
#
# Both come from one compiled function (the tangent is an argument), and are
# written as false-colour PNGs: red positive, blue negative, white zero.
#
# These are the interior derivatives: what changes smoothly with the light's
# position (distances, angles) is there; what moves as an edge (the light's
# own outline in the image, the blocks' shadow boundaries) needs the boundary
# terms that jaxrender does not compute yet, and shows as zero.
#
# Run it as a script (`python examples/derivative_images.py --help`) or here;
# in a notebook, `$JAXRENDER_EXAMPLE_ARGS` (e.g. `"--res 32 --spp 16"`)
# stands in for the command line.

# %%
import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxrender as jr

# `_common` sits next to this file; a notebook runs from notebooks/.
EXAMPLES = Path(__file__).resolve().parent if "__file__" in globals() else Path("../examples").resolve()
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
from _common import false_colour, output_dir, parse_args  # noqa: E402

# %% [markdown]
# ## The function to differentiate
#
# The image as a function of the red wall's reflectance (3,) and of a shift
# (in millimetres, the scene's unit) of the light along x, applied to its
# `to_world` with `jr.translate`. In the built-in box, x grows to the
# camera's left: the red wall is on the left of the image.

# %%
REFLECTANCE = "red.reflectance.value"
LIGHT = "light.to_world"


def make_derivatives(scene, spp, key):
    light_to_world = jr.traverse(scene)[LIGHT]

    def image(reflectance, shift):
        moved = jr.translate(jnp.stack([shift, 0.0, 0.0])) @ light_to_world
        return jr.render(jr.replace(scene, {REFLECTANCE: reflectance, LIGHT: moved}), spp=spp, key=key)

    primals = (jr.traverse(scene)[REFLECTANCE], jnp.float32(0.0))

    @jax.jit
    def derivatives(tangents):
        """(image, its derivative along `tangents` = (d reflectance, d shift))."""
        return jax.jvp(image, primals, tangents)

    return derivatives


# %% [markdown]
# ## Rendering and writing the images
#
# The surfaces are told apart with the `aov:shape_index` integrator, to
# summarize each derivative image per surface.

# %%
def main(argv=None):
    parser = argparse.ArgumentParser(description="Derivative images of the Cornell box with jax.jvp.")
    parser.add_argument("--res", type=int, default=128, help="image width and height")
    parser.add_argument("--spp", type=int, default=64, help="samples per pixel")
    parser.add_argument("--max-depth", type=int, default=4, help="path length (2: direct light only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(EXAMPLES / "out" / "derivative_images"))
    args = parse_args(parser, argv)
    out = output_dir(args.out)

    scene = jr.load_file("cbox", res=args.res, max_depth=args.max_depth)
    derivatives = make_derivatives(scene, args.spp, jax.random.key(args.seed))
    t0 = time.perf_counter()
    image, d_reflectance = derivatives((jnp.array([1.0, 0.0, 0.0]), jnp.float32(0.0)))
    d_reflectance.block_until_ready()
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, d_shift = derivatives((jnp.zeros(3), jnp.float32(1.0)))
    d_shift.block_until_ready()
    t_second = time.perf_counter() - t0
    print(f"{args.res}x{args.res}, {args.spp} spp: first jvp (compiles) {t_first:.1f} s, second {t_second:.1f} s")

    image, d_reflectance, d_shift = (np.asarray(x) for x in (image, d_reflectance, d_shift))
    jr.write_image(out / "image.png", image)
    jr.write_image(out / "d_red_wall_reflectance.png", false_colour(d_reflectance[..., 0]), raw=True)
    jr.write_image(out / "d_light_x.png", false_colour(d_shift.sum(-1)), raw=True)
    np.savez(out / "derivatives.npz", image=image, d_red_wall_reflectance=d_reflectance, d_light_x=d_shift)

    # Per-surface summaries.
    index = np.asarray(jax.jit(lambda s: jr.render(s, "aov:shape_index", spp=1))(scene))[..., 0]
    names = [shape.id for shape in scene.shapes]
    red_wall = index == names.index("left_wall")
    left, right = np.s_[:, : args.res // 3], np.s_[:, -(args.res // 3):]
    results = {
        "image": image,
        "d_red_wall_reflectance": d_reflectance,
        "d_light_x": d_shift,
        "shape_index": index,
        "shape_names": names,
        "red_wall_mean": float(d_reflectance[red_wall, 0].mean()),
        "elsewhere_mean": float(d_reflectance[~red_wall & (index >= 0), 0].mean()),
        "light_x_left_third": float(d_shift[left].sum(-1).mean()),
        "light_x_right_third": float(d_shift[right].sum(-1).mean()),
    }
    print(f"d image / d red-wall reflectance (red channel): {results['red_wall_mean']:.3f} on the wall, "
          f"{results['elsewhere_mean']:.4f} elsewhere (indirect light)")
    print(f"d image / d light x (per mm, RGB summed): {results['light_x_left_third']:.2e} on the left third "
          f"(the red wall's side), {results['light_x_right_third']:.2e} on the right third; output in {out}")
    return results


# %%
if __name__ == "__main__":
    results = main()
