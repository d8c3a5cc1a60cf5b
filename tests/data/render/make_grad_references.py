"""Regenerates the Mitsuba 3 derivative images used by tests/test_grad_mitsuba.py.

Run with Mitsuba 3 (llvm_ad_rgb needs Debian's libllvm19):
    python tests/data/render/make_grad_references.py

Scene: grad.xml (an open box: bitmap-textured floor, red left wall, white back
wall, quad light; 32x32, path max_depth 4). It also writes the scene's
texture, grad_texture.exr (16x16), and the texture tangent,
grad_texture_tangent.exr (1, 0.5, 0.25 on a 4x4 block of texels, 0 elsewhere).

References: forward-mode derivative images of Mitsuba's `prb` integrator,
d image / d theta at theta = 0, where
  grad_red_r.exr:           red.reflectance.value = value + theta (1, 0, 0)
  grad_floor_texels.exr:    floor_bsdf.reflectance.data = data + theta tangent
each the mean of 8 `render_forward` passes of 1024 spp (8192 spp in all). The
parameter is made a function of one scalar theta, the derivative pushed to
the scene with `dr.forward(theta, dr.ADFlag.ClearEdges)` (after
`params.update()`, so the bitmap's texture is rebuilt from the tensor), then
`prb.render_forward(scene, params, seed, spp)` returns d image / d theta.
"""

import os

import drjit as dr
import mitsuba as mi
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SCENE = os.path.join(HERE, "grad.xml")
PASSES, SPP = 8, 1024


def texture():
    y, x = np.mgrid[0:16, 0:16] / 15.0
    tex = np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.7 - 0.5 * x * y], -1).astype(np.float32)
    tex[2:5, 9:13] = [0.9, 0.8, 0.2]
    return tex


def texture_tangent():
    t = np.zeros((16, 16, 3), np.float32)
    t[9:13, 3:7] = [1.0, 0.5, 0.25]
    return t


def write_exr(path, array):
    mi.Bitmap(np.ascontiguousarray(array, np.float32), mi.Bitmap.PixelFormat.RGB).write(path)


def derivative_image(scene, integrator, key, tangent):
    params = mi.traverse(scene)
    base = type(params[key])(params[key])
    total = 0.0
    for i in range(PASSES):
        theta = mi.Float(0.0)
        dr.enable_grad(theta)
        params[key] = base + theta * tangent
        params.update()
        dr.forward(theta, dr.ADFlag.ClearEdges)
        grad = integrator.render_forward(scene, params=params, seed=1000 + i, spp=SPP)
        total = total + np.array(grad)
    params[key] = base
    params.update()
    return total / PASSES


def main():
    mi.set_variant("llvm_ad_rgb")
    write_exr(os.path.join(HERE, "grad_texture.exr"), texture())
    write_exr(os.path.join(HERE, "grad_texture_tangent.exr"), texture_tangent())
    scene = mi.load_file(SCENE, optimize=False)
    prb = mi.load_dict({"type": "prb", "max_depth": 4})
    refs = {
        "grad_red_r": ("red.reflectance.value", mi.Color3f(1.0, 0.0, 0.0)),
        "grad_floor_texels": ("floor_bsdf.reflectance.data", mi.TensorXf(texture_tangent())),
    }
    for name, (key, tangent) in refs.items():
        image = derivative_image(scene, prb, key, tangent)
        write_exr(os.path.join(HERE, f"{name}.exr"), image)
        print("wrote", name, image.mean((0, 1)))


if __name__ == "__main__":
    main()
