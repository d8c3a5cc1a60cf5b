"""Regenerates the geometry-derivative references used by tests/test_boundary_mitsuba.py.

Run with Mitsuba 3 (llvm_ad_rgb needs Debian's libllvm19), ~5 minutes on 2 cores:
    python tests/data/render/make_boundary_references.py

Scene: shadow_projective.xml at its defaults (32x32, `direct`, box filter): a
welded cube (occluder_cube.obj, written by hand: 8 shared vertices, face
normals; Mitsuba's own 24-vertex `cube` would make every edge a boundary
edge for Mitsuba's silhouette sampling) above a gray floor, lit by a
small quad light, in two variants: "color" (the cube reflects 0.8, 0.3, 0.2,
so its creases are shading jumps) and "black" (occluder_color = 0, 0, 0: only
its silhouette and its shadow are discontinuities).

The parameter: the occluder translated by theta * (1, 0.5, 0) (world space),
derivatives at theta = 0. For each variant it writes

  shadow_projective_<variant>_mitsuba.npy: d image / d theta by Mitsuba's
    `direct_projective` (projective sampling of primary and direct-lighting
    silhouettes, octree guiding; sppc = sppp = sppi = SPP), the mean of
    MI_PASSES forward-mode renders, each done the way Mitsuba's tutorials
    do it: theta = mi.Float(0) with dr.enable_grad, params[
    "occluder.vertex_positions"] = ravel(translate(theta * d) @ initial),
    params.update(), image = mi.render(scene, params, spp, seed),
    dr.forward(theta), dr.grad(image);
  shadow_projective_<variant>_fd.npy: central finite differences
    (image(h) - image(-h)) / 2h of Mitsuba `direct` primal renders
    (the scene's integrator), the same seed on both sides, h = FD_STEP
    (0.2 px of motion at the cube), the mean over FD_PASSES seeds of
    FD_SPP spp each;

float32 (32, 32, 3), and shadow_projective_refs.json: the Mitsuba version,
sample counts, and the self-checks printed below (each reference's noise as
the rel_mae between the means of its two halves of passes / sqrt 2 -- that is
the noise of one half; the full mean's is ~1/sqrt 2 of it --, the finite
differences at h against h / 2 (nonlinearity), and Mitsuba's error against
the finite differences), all with tests/reference.py's rel_mae.
"""

import json
import os
import sys
import time

import drjit as dr
import mitsuba as mi
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SCENE = os.path.join(HERE, "shadow_projective.xml")
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # tests/ (reference.py)
from reference import rel_mae

KEY = "occluder.vertex_positions"
DIRECTION = (1.0, 0.5, 0.0)
VARIANTS = {"color": {}, "black": {"occluder_color": "0, 0, 0"}}
MI_PASSES, SPP = 32, 256  # direct_projective: 8192 spp in all
FD_PASSES, FD_SPP, FD_STEP = 16, 4096, 0.02  # 65536 spp per side


def projective_derivative(scene, seed):
    params = mi.traverse(scene)
    initial = dr.unravel(mi.Point3f, params[KEY])
    integrator = mi.load_dict({"type": "direct_projective"})
    theta = mi.Float(0.0)
    dr.enable_grad(theta)
    params[KEY] = dr.ravel(mi.Transform4f().translate(mi.Vector3f(DIRECTION) * theta) @ initial)
    params.update()
    image = mi.render(scene, params, integrator=integrator, spp=SPP, seed=seed)
    dr.forward(theta)
    grad = np.array(dr.grad(image))
    params[KEY] = dr.ravel(initial)
    params.update()
    return grad


def finite_differences(scene, step, seeds):
    params = mi.traverse(scene)
    base = np.array(params[KEY]).reshape(-1, 3)

    def image(x, seed):
        params[KEY] = mi.Float((base + x * np.array(DIRECTION)).ravel())
        params.update()
        return np.array(mi.render(scene, spp=FD_SPP, seed=seed))

    out = [(image(step, s) - image(-step, s)) / (2 * step) for s in seeds]
    params[KEY] = mi.Float(base.ravel())
    params.update()
    return np.array(out)


def halves_noise(passes):
    h = len(passes) // 2
    return rel_mae(passes[:h].mean(0), passes[h:].mean(0)) / np.sqrt(2)


def main():
    mi.set_variant("llvm_ad_rgb")
    meta = {"mitsuba": mi.__version__, "variant": "llvm_ad_rgb", "scene": "shadow_projective.xml",
            "parameter": f"{KEY} translated by theta * {list(DIRECTION)}",
            "direct_projective": {"passes": MI_PASSES, "spp_per_pass": SPP, "sppc=sppp=sppi": SPP},
            "fd": {"passes": FD_PASSES, "spp_per_pass": FD_SPP, "step": FD_STEP, "integrator": "direct"},
            "checks": {}}
    for name, params in VARIANTS.items():
        t0 = time.time()
        scene = mi.load_file(SCENE, optimize=False, **params)
        fd = finite_differences(scene, FD_STEP, range(7000, 7000 + FD_PASSES))
        fd_half = finite_differences(scene, FD_STEP / 2, range(7000, 7000 + FD_PASSES // 4))
        proj = np.array([projective_derivative(scene, 100 + i) for i in range(MI_PASSES)])
        ref, mit = fd.mean(0).astype(np.float32), proj.mean(0).astype(np.float32)
        checks = {
            "fd_noise_half": halves_noise(fd),
            "fd_step_vs_half_step": rel_mae(fd[: FD_PASSES // 4].mean(0), fd_half.mean(0)),
            "mitsuba_noise_half": halves_noise(proj),
            "mitsuba_vs_fd": rel_mae(mit, ref),
        }
        meta["checks"][name] = {k: round(float(v), 4) for k, v in checks.items()}
        np.save(os.path.join(HERE, f"shadow_projective_{name}_fd.npy"), ref)
        np.save(os.path.join(HERE, f"shadow_projective_{name}_mitsuba.npy"), mit)
        print(name, f"{time.time() - t0:.0f} s", meta["checks"][name], "means", ref.mean((0, 1)),
              mit.mean((0, 1)))
    with open(os.path.join(HERE, "shadow_projective_refs.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
