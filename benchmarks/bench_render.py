"""Render benchmark: the Cornell box with jaxrender and Mitsuba 3 in one run.

Default task (issue 4): built-in cbox, 256x256, 64 spp, `path` max_depth 8.
Prints jaxrender's compile time, steady-state render time and samples/s,
Mitsuba 3 `llvm_ad_rgb`'s (it needs Debian's libllvm19) on the same scene
file, and the ratio. Also checks that both images agree within noise.

    python benchmarks/bench_render.py [--res 256] [--spp 64] [--max-depth 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import best_of, jit, load_mitsuba, machine_line, plain_jit_line


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", default="cbox")
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--spp", type=int, default=64)
    ap.add_argument("--max-depth", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-mitsuba", action="store_true")
    ap.add_argument("--mi-variant", default=None,
                    help="Mitsuba variant (default: cuda_ad_rgb when JAX runs on a GPU, else llvm_ad_rgb)")
    args = ap.parse_args(argv)

    import jax

    import jaxrender as jr

    path = str(jr.BUILTIN_SCENES.get(args.scene, args.scene))
    params = {"res": args.res, "spp": args.spp, "max_depth": args.max_depth}
    samples = args.res * args.res * args.spp
    print(machine_line())
    print(f"# {args.scene}: {args.res}x{args.res}, {args.spp} spp, path max_depth {args.max_depth}")

    scene = jr.load_file(path, **params)
    render = jit(lambda s, k: jr.render(s, key=k))
    t0 = time.perf_counter()
    ours = np.asarray(render(scene, jax.random.key(0)).block_until_ready())
    compile_s = time.perf_counter() - t0
    t_ours, ours = best_of(lambda: np.asarray(render(scene, jax.random.key(1)).block_until_ready()),
                           args.repeats)
    print(f"jaxrender: compile+first {compile_s:.2f} s, render {t_ours:.3f} s, "
          f"{samples / t_ours / 1e6:.2f} M samples/s")
    plain_jit_line(lambda k: jr.render(scene, key=k), "render", args.repeats)

    if args.no_mitsuba:
        return
    loaded = load_mitsuba(args.mi_variant)
    if loaded is None:
        return
    mi, dr = loaded
    ms = mi.load_file(path, optimize=False, **params)

    def mi_render():
        img = mi.render(ms, spp=args.spp, seed=1)
        dr.eval(img)
        dr.sync_thread()
        return np.array(img)

    t0 = time.perf_counter()
    mi_render()
    mi_first = time.perf_counter() - t0
    t_mi, ref = best_of(mi_render, args.repeats)
    print(f"mitsuba {mi.variant()}: first {mi_first:.2f} s, render {t_mi:.3f} s, {samples / t_mi / 1e6:.2f} M samples/s")
    print(f"ratio jaxrender / mitsuba render time: {t_ours / t_mi:.2f}x (target <= 1.0x)")
    rel = np.abs(ours.mean() - ref.mean()) / ref.mean()
    print(f"image means: jaxrender {ours.mean():.5f}, mitsuba {ref.mean():.5f} (rel. diff {rel:.4f})")


if __name__ == "__main__":
    main()
