"""Ray tracing core benchmark: BVH build, closest hit and any hit.

Compares `jaxrender.build_bvh` / `intersect` / `occluded` (under `jax.jit`)
with Intel Embree as Mitsuba 3 uses it on the CPU (variant `llvm_ad_rgb`) and
with `embreex` (Embree called one ray at a time on one thread), on the same
procedural meshes and the same rays:

* meshes: a displaced ("bumpy") cube-sphere of about 10k, 100k and 1M
  triangles, deterministic for a given --seed;
* primary rays: a pinhole camera looking at the mesh (coherent);
* bounce rays: cosine-distributed rays leaving the primary hit points, in
  random order (incoherent).

Run:  python benchmarks/bench_rays.py            # 10k, 100k, 1M
      python benchmarks/bench_rays.py --quick    # 10k, 100k, fewer rays
      python benchmarks/bench_rays.py --sizes 100k --no-embreex

Throughputs are in millions of rays per second; "x" columns are
jaxrender / reference (> 1 means jaxrender is faster). Missing references are
reported and skipped. Timings: every query is called once (compilation), then
repeated; the best repeat is reported (--stat median for the median). Rays are
generated once, before timing, as device arrays (jaxrender) or evaluated
Dr.Jit arrays (Mitsuba).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}


# ----------------------------------------------------------------------------
# Procedural mesh: displaced cube-sphere.


def cube_sphere(target_faces: int, seed: int = 0):
    """A closed, watertight bumpy sphere with about `target_faces` triangles.

    Six n x n grids on the cube [-1, 1]^3 (12 n^2 triangles), seam vertices
    shared, projected onto the unit sphere and displaced radially by ridged
    noise (random sinusoids over several octaves: crests, valleys and pits
    that make bounce rays hit the mesh again).
    """
    n = max(1, int(round(np.sqrt(target_faces / 12.0))))
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    i, j = i.ravel(), j.ravel()
    full = np.full_like(i, n)
    zero = np.zeros_like(i)
    # Integer lattice coordinates in [0, n]^3 for each cube face; (i, j) map
    # to the two in-face axes, orientation fixed up below.
    faces_ijk = [
        np.stack([full, i, j], 1), np.stack([zero, j, i], 1),
        np.stack([j, full, i], 1), np.stack([i, zero, j], 1),
        np.stack([i, j, full], 1), np.stack([j, i, zero], 1),
    ]
    lattice = np.concatenate(faces_ijk, 0)
    uniq, inverse = np.unique(lattice, axis=0, return_inverse=True)
    inverse = inverse.reshape(6, (n + 1) * (n + 1))

    a = np.arange(n)[:, None] * (n + 1) + np.arange(n)[None, :]
    a = a.ravel()
    b, c, d = a + (n + 1), a + 1, a + (n + 1) + 1  # (i+1, j), (i, j+1), (i+1, j+1)
    tris = []
    for f in range(6):
        idx = inverse[f]
        t = np.concatenate([np.stack([idx[a], idx[b], idx[d]], 1),
                            np.stack([idx[a], idx[d], idx[c]], 1)], 0)
        tris.append(t)
    faces = np.concatenate(tris, 0).astype(np.int32)

    p = uniq.astype(np.float64) * (2.0 / n) - 1.0
    u = p / np.linalg.norm(p, axis=1, keepdims=True)
    # Orient all faces outward, on the undisplaced sphere.
    u0, u1, u2 = (u[faces[:, k]] for k in range(3))
    flip = np.sum(np.cross(u1 - u0, u2 - u0) * (u0 + u1 + u2), 1) < 0
    faces[flip] = faces[flip][:, [0, 2, 1]]

    # Ridged multi-octave noise: sharp crests and deep valleys, so that about
    # 40% of the bounce rays hit the mesh again. Frequencies stay low enough
    # for the 10k mesh to resolve them, so all sizes share one shape.
    rng = np.random.default_rng(seed)
    r = np.ones(len(u))
    for octave in range(4):
        freq, amp = 3.0 * 2.0**octave, 0.3 / 1.5**octave
        acc = np.zeros(len(u))
        for _ in range(6):
            k = rng.normal(size=3)
            k /= np.linalg.norm(k)
            acc += np.sin(freq * (u @ k) + rng.uniform(0, 2 * np.pi))
        r += amp * (1 - 2 * np.abs(acc / np.sqrt(6)))
    verts = (u * np.maximum(r, 0.25)[:, None]).astype(np.float32)
    return verts, faces


# ----------------------------------------------------------------------------
# Rays.


def primary_rays(res: int):
    """Pinhole camera at distance 4.2 looking at the origin, 40 degree FOV."""
    eye = np.array([2.0, 1.2, 2.3])
    eye = eye / np.linalg.norm(eye) * 4.2
    fwd = -eye / np.linalg.norm(eye)
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    s = np.tan(np.radians(40.0) / 2)
    x = ((np.arange(res) + 0.5) / res * 2 - 1) * s
    yy, xx = np.meshgrid(-x, x, indexing="ij")
    d = fwd + xx.ravel()[:, None] * right + yy.ravel()[:, None] * up
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = np.broadcast_to(eye, d.shape)
    return np.ascontiguousarray(o, np.float32), np.ascontiguousarray(d, np.float32)


def bounce_rays(verts, faces, o, d, t, prim, count: int, seed: int):
    """`count` cosine-distributed rays leaving primary hit points, shuffled."""
    rng = np.random.default_rng(seed + 1)
    hit = np.nonzero(prim >= 0)[0]
    pick = rng.choice(hit, size=count, replace=count > len(hit))
    p = o[pick].astype(np.float64) + t[pick, None] * d[pick]
    f = faces[prim[pick]]
    v0, v1, v2 = (verts[f[:, k]].astype(np.float64) for k in range(3))
    n = np.cross(v1 - v0, v2 - v0)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    n *= -np.sign(np.sum(n * d[pick], 1, keepdims=True))  # face the camera
    # Orthonormal frame around n, cosine-weighted hemisphere sample.
    a = np.where(np.abs(n[:, :1]) > 0.9, [[0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]])
    tx = np.cross(n, a)
    tx /= np.linalg.norm(tx, axis=1, keepdims=True)
    ty = np.cross(n, tx)
    u1, u2 = rng.random(count), rng.random(count)
    rad, phi = np.sqrt(u1), 2 * np.pi * u2
    dirs = (rad * np.cos(phi))[:, None] * tx + (rad * np.sin(phi))[:, None] * ty \
        + np.sqrt(np.maximum(0.0, 1 - u1))[:, None] * n
    origins = p + 1e-4 * n  # leave the surface (same offset for every tracer)
    return origins.astype(np.float32), dirs.astype(np.float32)


# ----------------------------------------------------------------------------
# Timing.


def time_fn(fn, repeats: int, budget_s: float, stat: str):
    """Calls fn() once (warm-up / compile), then repeats; returns (first, t)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    start = time.perf_counter()
    while len(times) < repeats:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 2 and time.perf_counter() - start > budget_s:
            break
    return first, (min(times) if stat == "best" else statistics.median(times))


# ----------------------------------------------------------------------------
# Tracers. Each exposes build(verts, faces) -> build seconds, and
# closest(rays) / anyhit(rays) timings plus results as numpy.


class JaxTracer:
    name = "jaxrender"

    def __init__(self, args):
        import jax
        import jax.numpy as jnp

        import jaxrender

        self.jax, self.jnp, self.jr, self.args = jax, jnp, jaxrender, args
        import functools
        import inspect

        build = jaxrender.build_bvh
        if "method" in inspect.signature(build).parameters:
            build = functools.partial(build, method=args.bvh_method)
        elif args.bvh_method != "sah":
            raise SystemExit("this jaxrender's build_bvh has no `method` argument")
        self._build = jax.jit(build)
        self._closest = jax.jit(
            lambda acc, v, f, o, d: tuple(jaxrender.intersect(acc, v, f, o, d)))
        self._any = jax.jit(lambda acc, v, f, o, d: jaxrender.occluded(acc, v, f, o, d))

    def build(self, verts, faces):
        jnp = self.jnp
        self.v = self.jax.device_put(jnp.asarray(verts))
        self.f = self.jax.device_put(jnp.asarray(faces))
        out = {}

        def run():
            self.accel = self._build(self.v, self.f)
            self.jax.block_until_ready(self.accel)

        out["first"], out["build"] = time_fn(run, self.args.repeats, self.args.budget, self.args.stat)
        return out

    def prepare(self, o, d):
        return self.jax.device_put(o), self.jax.device_put(d)

    def closest(self, rays):
        res = {}

        def run():
            res["out"] = self._closest(self.accel, self.v, self.f, *rays)
            self.jax.block_until_ready(res["out"])

        first, t = time_fn(run, self.args.repeats, self.args.budget, self.args.stat)
        tt, prim = np.asarray(res["out"][0]), np.asarray(res["out"][1])
        return t, tt, prim

    def anyhit(self, rays):
        res = {}

        def run():
            res["out"] = self._any(self.accel, self.v, self.f, *rays)
            self.jax.block_until_ready(res["out"])

        first, t = time_fn(run, self.args.repeats, self.args.budget, self.args.stat)
        return t, np.asarray(res["out"])


class MitsubaTracer:
    name = "mitsuba"

    def __init__(self, args):
        import drjit as dr
        import mitsuba as mi

        mi.set_variant("llvm_ad_rgb")
        self.mi, self.dr, self.args = mi, dr, args
        self.version = f"mitsuba {mi.__version__}, drjit {dr.__version__}, {dr.thread_count()} threads"

    def build(self, verts, faces):
        mi, dr = self.mi, self.dr
        mesh = mi.Mesh("bench", vertex_count=len(verts), face_count=len(faces),
                       has_vertex_normals=False, has_vertex_texcoords=False)
        params = mi.traverse(mesh)
        params["vertex_positions"] = mi.Float(np.ascontiguousarray(verts).ravel())
        params["faces"] = mi.UInt32(np.ascontiguousarray(faces).astype(np.uint32).ravel())
        params.update()
        dr.eval(params["vertex_positions"], params["faces"])
        dr.sync_thread()
        self.mesh = mesh
        t0 = time.perf_counter()
        self.scene = mi.load_dict({"type": "scene", "mesh": mesh})
        dr.sync_thread()
        return {"build": time.perf_counter() - t0}

    def prepare(self, o, d):
        mi, dr = self.mi, self.dr
        ray = mi.Ray3f(mi.Point3f(*(mi.Float(np.ascontiguousarray(o[:, k])) for k in range(3))),
                       mi.Vector3f(*(mi.Float(np.ascontiguousarray(d[:, k])) for k in range(3))))
        dr.eval(ray)
        dr.sync_thread()
        return ray

    def closest(self, ray):
        res = {}

        def run():
            pi = self.scene.ray_intersect_preliminary(ray)
            self.dr.eval(pi.t, pi.prim_index, pi.prim_uv)
            self.dr.sync_thread()
            res["pi"] = pi

        _, t = time_fn(run, self.args.repeats, self.args.budget, self.args.stat)
        pi = res["pi"]
        tt = np.asarray(pi.t, dtype=np.float32)
        valid = np.asarray(pi.is_valid(), dtype=bool)
        prim = np.where(valid, np.asarray(pi.prim_index).astype(np.int64), -1)
        return t, tt, prim

    def anyhit(self, ray):
        res = {}

        def run():
            m = self.scene.ray_test(ray)
            self.dr.eval(m)
            self.dr.sync_thread()
            res["m"] = m

        _, t = time_fn(run, self.args.repeats, self.args.budget, self.args.stat)
        return t, np.asarray(res["m"], dtype=bool)


class EmbreexTracer:
    name = "embreex"

    def __init__(self, args):
        from embreex import mesh_construction, rtcore_scene

        self.mc, self.rs, self.args = mesh_construction, rtcore_scene, args
        self.version = "embreex (single-threaded rtcIntersect1 loop)"

    def build(self, verts, faces):
        t0 = time.perf_counter()
        self.scene = self.rs.EmbreeScene()
        self.mesh = self.mc.TriangleMesh(self.scene, np.ascontiguousarray(verts, np.float32),
                                         np.ascontiguousarray(faces, np.int32))
        # Embree builds lazily on the first query: include one ray.
        self.scene.run(np.zeros((1, 3), np.float32), np.ones((1, 3), np.float32))
        return {"build": time.perf_counter() - t0}

    def prepare(self, o, d):
        return np.ascontiguousarray(o, np.float32), np.ascontiguousarray(d, np.float32)

    def closest(self, rays):
        res = {}

        def run():
            res["out"] = self.scene.run(rays[0], rays[1], query="INTERSECT", output=1)

        _, t = time_fn(run, self.args.repeats, self.args.budget, self.args.stat)
        out = res["out"]
        return t, out["tfar"], out["primID"].astype(np.int64)

    def anyhit(self, rays):
        res = {}

        def run():
            res["out"] = self.scene.run(rays[0], rays[1], query="OCCLUDED")

        _, t = time_fn(run, self.args.repeats, self.args.budget, self.args.stat)
        return t, np.asarray(res["out"]) >= 0


# ----------------------------------------------------------------------------


def jaxrender_version() -> str:
    """Git commit of the jaxrender checkout (+ dirty flag) and native module date."""
    import subprocess

    import jaxrender

    info = [f"jaxrender {jaxrender.__version__}"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(jaxrender.__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "log", "-1", "--format=%h %ci"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "jaxrender", "cuda"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        if head:
            info.append(f"commit {head}" + (" + uncommitted changes" if dirty else ""))
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from jaxrender import _cpu

        mtime = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(_cpu.__file__)))
        info.append(f"_cpu module built {mtime}")
    except (ImportError, OSError):
        pass
    return ", ".join(info)


def fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default=None,
                   help="comma-separated subset of 10k,100k,1m (default all; --quick: 10k,100k)")
    p.add_argument("--quick", action="store_true",
                   help="only 10k and 100k, 512x512 primary and 256k bounce rays")
    p.add_argument("--res", type=int, default=None, help="primary rays: res x res (default 1024)")
    p.add_argument("--bounce", type=int, default=None, help="number of bounce rays (default 2^20)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per query (default 5, quick 3)")
    p.add_argument("--budget", type=float, default=3.0,
                   help="stop repeating a query after this many seconds (at least 2 repeats)")
    p.add_argument("--stat", choices=["best", "median"], default="best")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bvh-method", default="sah",
                   help="jaxrender build_bvh method (sah or lbvh), when supported")
    p.add_argument("--no-mitsuba", action="store_true")
    p.add_argument("--no-embreex", action="store_true")
    p.add_argument("--markdown", action="store_true", help="also print a markdown table")
    args = p.parse_args(argv)

    sizes = args.sizes.lower().split(",") if args.sizes else (
        ["10k", "100k"] if args.quick else ["10k", "100k", "1m"])
    for s in sizes:
        if s not in SIZES:
            p.error(f"unknown size {s!r}; choose from {', '.join(SIZES)}")
    res = args.res or (512 if args.quick else 1024)
    n_bounce = args.bounce or ((1 << 18) if args.quick else (1 << 20))
    args.repeats = args.repeats or (3 if args.quick else 5)

    t_start = time.perf_counter()
    import jax

    print(f"# host: {platform.node()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"load average {os.getloadavg()[0]:.2f} (other processes skew the timings)")
    print(f"# jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}, "
          f"bvh method {args.bvh_method}")
    jt = JaxTracer(args)
    print(f"# jaxrender: {jaxrender_version()}")
    refs = []
    for cls, skip in ((MitsubaTracer, args.no_mitsuba), (EmbreexTracer, args.no_embreex)):
        if skip:
            print(f"# {cls.name}: skipped (--no-{cls.name})")
            continue
        try:
            refs.append(cls(args))
            print(f"# {cls.name}: {refs[-1].version}")
        except Exception as e:  # missing package, missing libLLVM, ...
            print(f"# {cls.name}: unavailable, column skipped ({type(e).__name__}: {e})")
    print(f"# primary rays {res}x{res} = {res * res}, bounce rays {n_bounce}, "
          f"{args.stat} of up to {args.repeats} repeats, seed {args.seed}")
    sys.stdout.flush()

    build_rows, ray_rows = [], []
    for size in sizes:
        verts, faces = cube_sphere(SIZES[size], args.seed)
        print(f"\n## mesh {size}: {len(faces)} triangles, {len(verts)} vertices")
        b = jt.build(verts, faces)
        brow = {"size": size, "faces": len(faces), "jax": b["build"], "jax_first": b["first"]}
        print(f"build  jaxrender {b['build'] * 1e3:9.1f} ms (first call incl. compile {b['first'] * 1e3:.1f} ms)")
        for r in refs:
            t = r.build(verts, faces)["build"]
            brow[r.name] = t
            print(f"build  {r.name:9s} {t * 1e3:9.1f} ms (scene creation incl. Embree BVH)")
        build_rows.append(brow)

        o, d = primary_rays(res)
        jrays = jt.prepare(o, d)
        _, t0p, prim0 = jt.closest(jrays)
        o2, d2 = bounce_rays(verts, faces, o, d, t0p, prim0, n_bounce, args.seed)
        for label, (ro, rd) in (("primary", (o, d)), ("bounce", (o2, d2))):
            n = len(ro)
            jr = jt.prepare(ro, rd)
            rr = [r.prepare(ro, rd) for r in refs]
            for query in ("closest", "any"):
                if query == "closest":
                    t, _, jprim = jt.closest(jr)
                    jhit = jprim >= 0
                else:
                    t, jhit = jt.anyhit(jr)
                row = {"size": size, "rays": label, "query": query, "n": n,
                       "jax": n / t / 1e6, "hitfrac": jhit.mean()}
                line = (f"{label:8s} {query:8s} {n:8d} rays  hit {jhit.mean():6.1%}  "
                        f"jaxrender {row['jax']:8.2f} Mrays/s")
                for r, rays in zip(refs, rr):
                    if query == "closest":
                        tr, _, rprim = r.closest(rays)
                        rhit = rprim >= 0
                        same_prim = np.mean(jprim[jhit & rhit] == rprim[jhit & rhit]) if (jhit & rhit).any() else 1.0
                        row[r.name + "_prim"] = same_prim
                    else:
                        tr, rhit = r.anyhit(rays)
                    row[r.name] = n / tr / 1e6
                    row[r.name + "_agree"] = np.mean(jhit == rhit)
                    line += (f" | {r.name} {row[r.name]:8.2f} Mrays/s  x{row['jax'] / row[r.name]:6.2f}"
                             f"  agree {row[r.name + '_agree']:.4%}")
                    if query == "closest":
                        line += f" same-prim {same_prim:.4%}"
                print(line)
                sys.stdout.flush()
                ray_rows.append(row)
            del jr, rr

    names = [r.name for r in refs]
    print("\n## Summary (Mrays/s; x = jaxrender / reference, > 1 means jaxrender is faster)\n")
    hdr = ["mesh", "rays", "query", "jaxrender"]
    for nm in names:
        hdr += [nm, f"x {nm}", f"hit agree {nm}"]
    table = [hdr]
    for row in ray_rows:
        cells = [row["size"], row["rays"], row["query"], fmt(row["jax"])]
        for nm in names:
            cells += [fmt(row.get(nm)), fmt(row["jax"] / row[nm] if nm in row else None),
                      fmt(100 * row[nm + "_agree"], ".4f") + "%" if nm in row else "-"]
        table.append(cells)
    btable = [["mesh", "triangles", "jaxrender build (ms)", "jaxrender first call (ms)"]
              + [f"{nm} scene build (ms)" for nm in names]]
    for row in build_rows:
        btable.append([row["size"], str(row["faces"]), fmt(row["jax"] * 1e3, ".1f"),
                       fmt(row["jax_first"] * 1e3, ".1f")] + [fmt(row[nm] * 1e3, ".1f") for nm in names])

    for tab in (btable, table):
        w = [max(len(r[k]) for r in tab) for k in range(len(tab[0]))]
        for k, r in enumerate(tab):
            print("  ".join(c.rjust(w[i]) for i, c in enumerate(r)))
            if k == 0:
                print("  ".join("-" * x for x in w))
        print()
        if args.markdown:
            print("| " + " | ".join(tab[0]) + " |")
            print("|" + "|".join("---" for _ in tab[0]) + "|")
            for r in tab[1:]:
                print("| " + " | ".join(r) + " |")
            print()
    print(f"# total wall time {time.perf_counter() - t_start:.1f} s, "
          f"load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
