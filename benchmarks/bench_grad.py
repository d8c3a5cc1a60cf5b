"""Gradient benchmark: the Cornell box's material gradient (or, --geometry, a shape's), jaxrender and Mitsuba 3.

Default task (issue 5): built-in cbox, 256x256, 16 spp, `path` max_depth 8;
reverse mode; loss = mean squared error to a reference image; gradient with
respect to every `*.reflectance.value` of `jr.traverse`. Prints jaxrender's
compile time, the steady-state time of `jit(value_and_grad(loss))` and its
ratio to our primal render of the same scene and spp (target <= 3x), then
Mitsuba 3's `prb` integrator on the same scene file in `llvm_ad_rgb`
(forward + `dr.backward`, same loss and reference) and the ratio to it.
Checks that both gradients agree within their noise, and with `--memory`
reports the compiled gradient's memory per max_depth.

    python benchmarks/bench_grad.py [--res 256] [--spp 16] [--max-depth 8] [--repeats 3]
        [--check-runs 10] [--no-mitsuba] [--jacfwd] [--memory] [--memory-res 64] [--memory-depths 2,4,8,16]

The reference image is jaxrender's render (4x the spp) of the same scene with
the red and green walls' reflectances swapped, so the loss has a real residual.

Gradient check: Mitsuba's `mi.render(..., seed, seed_grad)` differentiates a
primal image from one seed against a derivative pass from another, so its
gradient of the MSE is an unbiased estimate of d MSE(E[image]) / d params.
`jax.value_and_grad` of one render differentiates the same samples it
measured the residual with, which adds the pixels' covariance between value
and derivative (a bias of O(1/spp)). For the check, jaxrender's gradient is
therefore computed as Mitsuba's: `jax.vjp` of a render with one key,
applied to 2 (image - reference) / size from a render with another key.
Each side is repeated `--check-runs` times with independent seeds; the
table shows the means, their difference relative to Mitsuba's and that
difference in units of the combined standard error (|z| < ~3: agreement
within noise). The standard errors come from the runs themselves, and path
tracing's per-run gradients are heavy-tailed (fireflies), so a few runs tend
to underestimate them: trust z from >= 10 runs. The correlated
`value_and_grad` mean is shown alongside.

Geometry section (issue 6), `--geometry` (instead of the material task):
tests/data/render/shadow_projective.xml (a cube above a floor under a small
area light: its silhouette, creases and shadow move), 256x256, 16 spp,
`direct`; loss = MSE to a target image (our render, 4x the spp, with the cube
moved by TARGET); gradient with respect to the cube's translation t (3
scalars: its `to_world` for us, its vertex_positions for Mitsuba). Times, in
one run and at the same spp, `jit(value_and_grad(loss))` with
`boundary=False` (interior only: wrong where visibility changes) and with
`boundary=True` (full), printing (full - interior) / interior (target <=
1.0), then Mitsuba 3's `direct_projective` (`llvm_ad_rgb`, its defaults:
sppc = sppp = sppi = spp, octree guiding) reverse mode: `mi.render(scene,
params, seed, seed_grad)` + loss + `dr.backward`, printing ours / Mitsuba
(target <= 0.25; `--mi-guiding none` turns off its guiding structure for
indirectly seen silhouettes, which it rebuilds on every call). Both sides
decorrelate the primal image from the derivative pass (ours: `render(...,
key, key_grad)`, Mitsuba's `seed_grad`), so each gradient is an unbiased estimate of d MSE(E[image]) / dt. Agreement:
the directional derivative along (1, 0.5, 0) of `--check-runs` independent
gradients per renderer (interior-only too) against central finite
differences of the primal loss (Mitsuba's `direct` primal, or ours with
--no-mitsuba; `--fd-runs` seeds of `--fd-spp` spp, step `--fd-step`, the
same seed on both sides), with standard errors and z.

    python benchmarks/bench_grad.py --geometry [--res 256] [--spp 16] [--repeats 3] [--check-runs 10]
        [--fd-spp 1024] [--fd-runs 4] [--fd-step 0.01] [--mi-guiding octree|grid|none] [--no-mitsuba]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from _common import best_of_wall_cpu, jit, load_average, load_mitsuba, machine_line, plain_jit_line

SWAP = {"red.reflectance.value": "green.reflectance.value", "green.reflectance.value": "red.reflectance.value"}


def material_names(params):
    return sorted(k for k in params if k.endswith(".reflectance.value"))


def make_loss(scene, names, ref, integrator=None):
    import jax.numpy as jnp

    import jaxrender as jr

    def loss(x, key):
        image = jr.render(jr.replace(scene, x), integrator, key=key)
        return jnp.mean((image - ref) ** 2)

    return loss


def reference_image(scene, names, spp):
    """jaxrender's render of the scene with the red and green walls swapped."""
    import jax

    import jaxrender as jr

    params = jr.traverse(scene)
    target = {k: params[SWAP[k]] for k in names if k in SWAP}
    return np.asarray(jr.render(jr.replace(scene, target), spp=spp, key=jax.random.key(12345)))


def memory_stats(compiled):
    """Bytes (temp, arguments, outputs) of a compiled executable, or None."""
    try:
        m = compiled.memory_analysis()
    except Exception:
        return None
    if m is None:
        return None
    return m.temp_size_in_bytes, m.argument_size_in_bytes, m.output_size_in_bytes


def mib(x):
    return x / 2**20


def rss_probe(path, res, spp, depth):
    """Peak resident set size of one gradient evaluation (run in a subprocess)."""
    import jax

    import jaxrender as jr

    scene = jr.load_file(path, res=res, spp=spp, max_depth=depth)
    names = material_names(jr.traverse(scene))
    x = {k: jr.traverse(scene)[k] for k in names}
    loss = make_loss(scene, names, np.zeros((res, res, 3), np.float32))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    jax.block_until_ready(jit(jax.value_and_grad(loss))(x, jax.random.key(0)))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kib": before, "peak_kib": after}))


def memory_table(path, res, spp, depths, integrator=None):
    """Compiled memory of our gradient (and primal) pass per max_depth."""
    import jax

    import jaxrender as jr

    print(f"\n# memory of jit(value_and_grad(loss)) per max_depth, {res}x{res}, {spp} spp "
          f"({res * res * spp} samples; compiled buffer assignment, XLA memory_analysis)")
    print("| max_depth | grad temp (MiB) | grad total (MiB) | primal temp (MiB) | grad / primal | compile grad (s) |")
    print("|---|---|---|---|---|---|")
    for depth in depths:
        scene = jr.load_file(path, res=res, spp=spp, max_depth=depth)
        params = jr.traverse(scene)
        names = material_names(params)
        x = {k: params[k] for k in names}
        key = jax.random.key(0)
        loss = make_loss(scene, names, np.zeros((res, res, 3), np.float32), integrator)
        t0 = time.perf_counter()
        grad = jit(jax.value_and_grad(loss)).lower(x, key).compile()
        t_compile = time.perf_counter() - t0
        primal = jit(lambda x, k: jr.render(jr.replace(scene, x), key=k)).lower(x, key).compile()
        g, p = memory_stats(grad), memory_stats(primal)
        if g is None or p is None:
            # No memory_analysis on this backend: peak RSS of a fresh process.
            out = subprocess.run([sys.executable, __file__, "--rss-probe", path, str(res), str(spp), str(depth)],
                                 capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            print(f"| {depth} | n/a | peak RSS {r['peak_kib'] / 1024:.0f} (after import: "
                  f"{r['before_kib'] / 1024:.0f}) | n/a | n/a | {t_compile:.1f} |")
            continue
        print(f"| {depth} | {mib(g[0]):.1f} | {mib(sum(g)):.1f} | {mib(p[0]):.1f} | {g[0] / max(p[0], 1):.1f}x "
              f"| {t_compile:.1f} |")


GEOMETRY_SCENE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "tests", "data", "render", "shadow_projective.xml")
OCCLUDER = "occluder"
TARGET = (0.12, -0.08, 0.0)  # the target image's translation of the occluder
DIRECTION = (1.0, 0.5, 0.0)  # the directional derivative checked against finite differences


def mean_se(xs):
    xs = np.asarray(xs, np.float64)
    return xs.mean(), (xs.std(ddof=1) / np.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def geometry(args):
    """Issue 6: the gradient of an MSE loss with respect to a translation of
    the occluder, interior-only and full, against Mitsuba's direct_projective
    and finite differences."""
    import jax
    import jax.numpy as jnp

    import jaxrender as jr

    path = args.scene or GEOMETRY_SCENE
    params = {"res": args.res, "spp": args.spp}
    direction = np.asarray(DIRECTION, np.float64)
    print(machine_line())
    print(f"# geometry gradient (issue 6): {os.path.basename(path)}, {args.res}x{args.res}, {args.spp} spp, "
          f"integrator of the file; loss = MSE to a target image (occluder moved by {TARGET}); "
          f"d loss / d translation of '{OCCLUDER}' (3 scalars), reverse mode, primal and derivative "
          "from independent samples on both sides")
    scene = jr.load_file(path, **params)
    to_world = jr.traverse(scene)[f"{OCCLUDER}.to_world"]

    def moved(t):
        return jr.replace(scene, {f"{OCCLUDER}.to_world": jr.translate(t) @ to_world})

    ref = np.asarray(jit(lambda t: jr.render(moved(t), spp=4 * args.spp, key=jax.random.key(12345)))(
        jnp.asarray(TARGET, jnp.float32)))
    t0 = jnp.zeros(3, jnp.float32)

    def make_vg(boundary):
        def loss(t, key, key_grad):
            image = jr.render(moved(t), key=key, key_grad=key_grad, boundary=boundary)
            return jnp.mean((image - ref) ** 2)
        return jit(jax.value_and_grad(loss))

    primal = jit(lambda t, k: jr.render(moved(t), key=k))
    primal(t0, jax.random.key(0)).block_until_ready()
    t_primal, c_primal, _ = best_of_wall_cpu(lambda: primal(t0, jax.random.key(1)).block_until_ready(),
                                             args.repeats)
    print(f"jaxrender primal:           render {t_primal:.3f} s (CPU {c_primal:.3f} s)")
    timings, grads = {}, {}
    for name, boundary in (("interior", False), ("full", True)):
        vg = make_vg(boundary)
        keys = (jax.random.key(0), jax.random.key(1))
        t1 = time.perf_counter()
        compiled = vg.lower(t0, *keys).compile()
        compile_s = time.perf_counter() - t1
        runs = []

        def run(compiled=compiled, runs=runs):
            i = len(runs)
            value, g = compiled(t0, jax.random.key(100 + 2 * i), jax.random.key(101 + 2 * i))
            runs.append(np.asarray(jax.block_until_ready(g), np.float64))
            return float(value)

        run()  # warm-up
        wall, cpu, value = best_of_wall_cpu(run, args.repeats)
        for _ in range(max(0, args.check_runs - len(runs))):
            run()
        timings[name], grads[name] = (wall, cpu), runs
        print(f"jaxrender {name:8s} gradient: compile {compile_s:.1f} s, value_and_grad {wall:.3f} s "
              f"(CPU {cpu:.3f} s; loss {value:.6f}); {wall / t_primal:.2f}x primal wall, "
              f"{cpu / c_primal:.2f}x CPU")
    (wa, ca), (wb, cb) = timings["interior"], timings["full"]
    print(f"boundary terms' cost (full - interior) / interior: {(wb - wa) / wa:.2f} wall, {(cb - ca) / ca:.2f} CPU "
          "(target <= 1.0)")

    loaded = None if args.no_mitsuba else load_mitsuba(args.mi_variant)
    mitsuba = []
    if loaded is not None:
        mi, dr = loaded
        ms = mi.load_file(path, optimize=False, **params)
        proj = mi.load_dict({"type": "direct_projective", "guiding": args.mi_guiding})
        mp = mi.traverse(ms)
        key = f"{OCCLUDER}.vertex_positions"
        initial = dr.unravel(mi.Point3f, mp[key])
        ref_mi = mi.TensorXf(ref)

        def mi_grad(seed):
            theta = mi.Vector3f(0.0)
            dr.enable_grad(theta)
            mp[key] = dr.ravel(initial + theta)
            mp.update()
            image = mi.render(ms, mp, integrator=proj, spp=args.spp, seed=seed, seed_grad=seed + 10_000)
            dr.backward(dr.mean(dr.square(image - ref_mi), axis=None))
            g = np.array([dr.grad(theta)[i][0] for i in range(3)], np.float64)
            mitsuba.append(g)
            return g

        t1 = time.perf_counter()
        mi_grad(0)
        mi_first = time.perf_counter() - t1
        t_mi, c_mi, _ = best_of_wall_cpu(lambda: mi_grad(len(mitsuba)), args.repeats)
        for _ in range(max(0, args.check_runs - len(mitsuba))):
            mi_grad(len(mitsuba))
        mp[key] = dr.ravel(initial)
        mp.update()
        print(f"mitsuba direct_projective (guiding {args.mi_guiding}): first {mi_first:.2f} s, forward+backward "
              f"{t_mi:.3f} s (CPU {c_mi:.3f} s)")
        print(f"ratio jaxrender full / mitsuba gradient time: {wb / t_mi:.2f}x wall, {cb / c_mi:.2f}x CPU "
              "(target <= 0.25)")

    if args.check_runs <= 0:
        return
    # Finite differences of the primal loss along DIRECTION, the same seed on both sides.
    if loaded is not None:
        mi, dr = loaded
        fs = mi.load_file(path, optimize=False, **params)
        fp = mi.traverse(fs)
        base = np.array(fp[f"{OCCLUDER}.vertex_positions"]).reshape(-1, 3)

        def loss_at(x, seed):
            fp[f"{OCCLUDER}.vertex_positions"] = mi.Float((base + x * direction).ravel())
            fp.update()
            return float(np.mean((np.array(mi.render(fs, spp=args.fd_spp, seed=seed)) - ref) ** 2))
        fd_source = "mitsuba primal (the file's integrator)"
    else:
        fd_render = jit(lambda t, k: jr.render(moved(t), spp=args.fd_spp, key=k))

        def loss_at(x, seed):
            t = jnp.asarray(x * direction, jnp.float32)
            return float(np.mean((np.asarray(fd_render(t, jax.random.key(seed))) - ref) ** 2))
        fd_source = "jaxrender primal"
    t1 = time.perf_counter()
    h = args.fd_step
    fd = [(loss_at(h, 7000 + i) - loss_at(-h, 7000 + i)) / (2 * h) for i in range(args.fd_runs)]
    fd_s = time.perf_counter() - t1
    m_fd, se_fd = mean_se(fd)
    print(f"\n# d loss / d t along {DIRECTION}: means of independent {args.spp}-spp gradients (z = difference "
          f"to finite differences / combined standard error); finite differences of the {fd_source} loss, "
          f"{args.fd_runs} x {args.fd_spp} spp per side, step {h} ({fd_s:.0f} s)")
    print("| estimate | runs | d loss / d t . dir | +- se | rel. diff to FD | z | gradient (x, y, z) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| finite differences | {args.fd_runs} | {m_fd:.4e} | {se_fd:.1e} | — | — | — |")
    rows = [("jaxrender full", grads["full"]), ("jaxrender interior only", grads["interior"])]
    if mitsuba:
        rows.append((f"mitsuba direct_projective ({args.mi_guiding})", mitsuba))
    for name, gs in rows:
        gs = np.array(gs)
        m, se = mean_se(gs @ direction)
        z = (m - m_fd) / np.hypot(se, se_fd)
        mean = gs.mean(0)
        print(f"| {name} | {len(gs)} | {m:.4e} | {se:.1e} | {(m - m_fd) / abs(m_fd):+.3f} | {z:+.1f} "
              f"| {mean[0]:.3e}, {mean[1]:.3e}, {mean[2]:.3e} |")
    print(f"# load average at the end: {load_average():.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", default=None,
                    help="scene file or built-in name (default: cbox; with --geometry shadow_projective.xml)")
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--spp", type=int, default=16)
    ap.add_argument("--max-depth", type=int, default=8)
    ap.add_argument("--integrator", default="path", choices=("path", "prb"),
                    help="reverse mode of path tracing: ordinary AD (path) or path replay (prb)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--check-runs", type=int, default=10,
                    help="independent gradient estimates per renderer for the agreement check (0: skip)")
    ap.add_argument("--no-mitsuba", action="store_true")
    ap.add_argument("--mi-variant", default=None,
                    help="Mitsuba variant (default: cuda_ad_rgb when JAX runs on a GPU, else llvm_ad_rgb)")
    ap.add_argument("--jacfwd", action="store_true",
                    help="also time forward mode: jit(jacfwd(loss)), one tangent per parameter scalar")
    ap.add_argument("--memory", action="store_true", help="also report memory per max_depth")
    ap.add_argument("--memory-res", type=int, default=64)
    ap.add_argument("--memory-depths", default="2,4,8,16")
    ap.add_argument("--geometry", action="store_true",
                    help="the geometry-gradient section (issue 6) instead of the material gradient")
    ap.add_argument("--fd-spp", type=int, default=1024, help="--geometry: spp of the finite differences")
    ap.add_argument("--fd-runs", type=int, default=4, help="--geometry: seeds of the finite differences")
    ap.add_argument("--fd-step", type=float, default=0.01, help="--geometry: finite-difference step (scene units)")
    ap.add_argument("--mi-guiding", default="octree", choices=("octree", "grid", "none"),
                    help="--geometry: direct_projective's guiding (its default: octree)")
    ap.add_argument("--rss-probe", nargs=4, metavar=("PATH", "RES", "SPP", "DEPTH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.rss_probe:
        p, r, s, d = args.rss_probe
        rss_probe(p, int(r), int(s), int(d))
        return
    if args.geometry:
        geometry(args)
        return
    args.scene = args.scene or "cbox"

    import jax

    import jaxrender as jr

    path = str(jr.BUILTIN_SCENES.get(args.scene, args.scene))
    params = {"res": args.res, "spp": args.spp, "max_depth": args.max_depth}
    samples = args.res * args.res * args.spp
    print(machine_line())
    print(f"# {args.scene}: {args.res}x{args.res}, {args.spp} spp, {args.integrator} max_depth "
          f"{args.max_depth}; reverse mode, loss = MSE to a reference image")

    scene = jr.load_file(path, **params)
    traversed = jr.traverse(scene)
    names = material_names(traversed)
    x = {k: traversed[k] for k in names}
    print(f"# parameters: {', '.join(names)} ({sum(int(np.size(v)) for v in x.values())} scalars)")
    ref = reference_image(scene, names, 4 * args.spp)
    loss = make_loss(scene, names, ref, args.integrator)

    # Our primal: the same scene and spp, parameters as arguments too.
    primal = jit(lambda x, k: jr.render(jr.replace(scene, x), key=k))
    t0 = time.perf_counter()
    primal(x, jax.random.key(0)).block_until_ready()
    primal_first = time.perf_counter() - t0
    t_primal, c_primal, _ = best_of_wall_cpu(lambda: primal(x, jax.random.key(1)).block_until_ready(),
                                             args.repeats)

    # Our gradient: compile (lower + XLA compile) timed on its own.
    vg = jit(jax.value_and_grad(loss))
    t0 = time.perf_counter()
    compiled = vg.lower(x, jax.random.key(0)).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(x, jax.random.key(0)))
    first_s = time.perf_counter() - t0
    corr = []

    def run_grad():
        value, g = compiled(x, jax.random.key(100 + len(corr)))
        g = jax.block_until_ready(g)
        corr.append({k: np.asarray(v) for k, v in g.items()})
        return float(value)

    t_grad, c_grad, value = best_of_wall_cpu(run_grad, args.repeats)
    mem = memory_stats(compiled)
    print(f"jaxrender primal:   compile+first {primal_first:.2f} s, render {t_primal:.3f} s "
          f"(CPU {c_primal:.3f} s), {samples / t_primal / 1e6:.2f} M samples/s")
    print(f"jaxrender gradient: compile {compile_s:.2f} s, first run {first_s:.2f} s, "
          f"value_and_grad {t_grad:.3f} s (CPU {c_grad:.3f} s; loss {value:.5f})")
    if mem is not None:
        print(f"jaxrender gradient memory (compiled): temp {mib(mem[0]):.1f} MiB, "
              f"arguments {mib(mem[1]):.3f} MiB, outputs {mib(mem[2]):.3f} MiB")
    print(f"ratio gradient / primal (jaxrender): {t_grad / t_primal:.2f}x wall, {c_grad / c_primal:.2f}x CPU "
          f"(target <= 3x)")
    plain_jit_line(lambda k: jax.value_and_grad(loss)(x, k)[1], "gradient", args.repeats)
    if args.jacfwd:
        # The same gradient by forward mode: cheaper than reverse for a few parameters.
        fwd = jit(jax.jacfwd(loss))
        t0 = time.perf_counter()
        fwd_compiled = fwd.lower(x, jax.random.key(0)).compile()
        fwd_compile = time.perf_counter() - t0
        g_rev = corr[-1]
        t_fwd, c_fwd, g_fwd = best_of_wall_cpu(
            lambda: jax.block_until_ready(fwd_compiled(x, jax.random.key(100 + len(corr) - 1))), args.repeats)
        diff = max(float(np.max(np.abs(np.asarray(g_fwd[k]) - g_rev[k]))) for k in names)
        print(f"jaxrender jacfwd:   compile {fwd_compile:.2f} s, {t_fwd:.3f} s (CPU {c_fwd:.3f} s): "
              f"{t_fwd / t_primal:.2f}x primal wall, {c_fwd / c_primal:.2f}x CPU; same key as the last "
              f"value_and_grad, max |difference| {diff:.1e}")

    # Our gradient as Mitsuba estimates it (decorrelated primal and derivative passes).
    ours = []
    if args.check_runs > 0:
        @jit
        def decorrelated(x, k_primal, k_grad):
            image = primal(x, k_primal)
            cot = 2.0 * (image - ref) / image.size
            _, vjp = jax.vjp(lambda y: jr.render(jr.replace(scene, y), args.integrator, key=k_grad), x)
            return vjp(cot)[0]

        for i in range(args.check_runs):
            g = decorrelated(x, jax.random.key(200 + i), jax.random.key(300 + i))
            ours.append({k: np.asarray(v) for k, v in jax.block_until_ready(g).items()})

    mitsuba = []
    if not args.no_mitsuba and (loaded := load_mitsuba(args.mi_variant)) is not None:
        mi, dr = loaded
        ms = mi.load_file(path, optimize=False, **params)
        prb = mi.load_dict({"type": "prb", "max_depth": args.max_depth})
        mp = mi.traverse(ms)
        missing = [k for k in names if k not in mp]
        if missing:
            print(f"mitsuba: parameters {missing} not found; skipped")
            return
        mp.keep(names)
        ref_mi = mi.TensorXf(ref)

        def mi_grad(seed):
            for k in names:
                dr.enable_grad(mp[k])
            image = mi.render(ms, mp, integrator=prb, spp=args.spp, seed=seed, seed_grad=seed + 10_000)
            value = dr.mean(dr.square(image - ref_mi), axis=None)
            dr.backward(value)
            g = {k: np.array(dr.grad(mp[k])).reshape(-1) for k in names}
            dr.sync_thread()
            for k in names:
                dr.disable_grad(mp[k])
                dr.set_grad(mp[k], 0)
            return g

        def mi_primal(seed):
            image = mi.render(ms, integrator=prb, spp=args.spp, seed=seed)
            dr.eval(image)
            dr.sync_thread()
            return image

        t0 = time.perf_counter()
        mitsuba.append(mi_grad(0))
        mi_first = time.perf_counter() - t0
        t_mi, c_mi, _ = best_of_wall_cpu(lambda: mitsuba.append(mi_grad(len(mitsuba))),
                                         max(args.repeats, args.check_runs - 1))
        mi_primal(0)
        t_mi_primal, c_mi_primal, _ = best_of_wall_cpu(lambda: mi_primal(1), args.repeats)
        print(f"mitsuba prb:        first {mi_first:.2f} s, forward+backward {t_mi:.3f} s (CPU {c_mi:.3f} s), "
              f"primal {t_mi_primal:.3f} s (CPU {c_mi_primal:.3f} s); gradient / primal "
              f"{t_mi / t_mi_primal:.2f}x wall, {c_mi / c_mi_primal:.2f}x CPU")
        print(f"ratio jaxrender / mitsuba gradient time: {t_grad / t_mi:.2f}x wall, {c_grad / c_mi:.2f}x CPU")

    if ours and mitsuba:
        print(f"\n# gradient agreement: means over {len(ours)} (jaxrender, decorrelated) and {len(mitsuba)} "
              f"(mitsuba prb) independent {args.spp}-spp estimates; z = difference / combined standard error")
        print("| parameter | jaxrender | +- se | mitsuba | +- se | rel. diff | z | jaxrender value_and_grad |")
        print("|---|---|---|---|---|---|---|---|")
        worst = 0.0
        for k in names:
            o = np.stack([g[k].reshape(-1) for g in ours])
            m = np.stack([g[k].reshape(-1) for g in mitsuba])
            c = np.stack([g[k].reshape(-1) for g in corr])
            for j in range(o.shape[1]):
                mo, mm = o[:, j].mean(), m[:, j].mean()
                so = o[:, j].std(ddof=1) / np.sqrt(len(o))
                sm = m[:, j].std(ddof=1) / np.sqrt(len(m))
                se = np.hypot(so, sm)
                z = (mo - mm) / se if se > 0 else (0.0 if mo == mm else np.inf)
                rel = abs(mo - mm) / abs(mm) if mm != 0 else np.inf
                if not k.startswith("light_bsdf"):
                    worst = max(worst, abs(z))
                print(f"| {k}[{'rgb'[j]}] | {mo:.4e} | {so:.1e} | {mm:.4e} | {sm:.1e} | {rel:.3f} | {z:+.1f} "
                      f"| {c[:, j].mean():.4e} |")
        print(f"largest |z|: {worst:.1f} (light_bsdf excluded: Mitsuba's prb ends paths whose throughput "
              "is 0, so its derivative for the black light BSDF is exactly 0; ours keeps those paths "
              "until Russian roulette)")

    if args.memory:
        memory_table(path, args.memory_res, args.spp, [int(d) for d in args.memory_depths.split(",")],
                     args.integrator)
    print(f"# load average at the end: {load_average():.2f}")


if __name__ == "__main__":
    main()
