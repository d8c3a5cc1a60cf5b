"""The `jaxrender` command.

  jaxrender info                     what was built, which devices JAX sees
  jaxrender raycast MESH -o OUT.png  ray-cast a built-in mesh (eye-light shading)
                                     and report BVH build and tracing speed
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _parse_resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--resolution must look like 640x480, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"--resolution must be positive, got {text!r}")
    return w, h


def _pinhole_rays(width, height, eye, target, fov_degrees=40.0):
    """Rays through pixel centres of a camera at `eye` looking at `target` (+z up)."""
    eye, target = np.asarray(eye, np.float32), np.asarray(target, np.float32)
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    tan = np.tan(np.radians(fov_degrees) / 2)
    x = (2 * (np.arange(width) + 0.5) / width - 1) * tan
    y = (1 - 2 * (np.arange(height) + 0.5) / height) * tan * height / width
    xx, yy = np.meshgrid(x, y)
    d = forward + xx[..., None] * right + yy[..., None] * up
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return np.broadcast_to(eye, d.shape).astype(np.float32), d.astype(np.float32)


def _cmd_info(args) -> int:
    import jax

    from jaxrender.geometry import HAS_CUDA_KERNELS

    print(f"jaxrender {__import__('jaxrender').__version__}, jax {jax.__version__}")
    print(f"CUDA kernels built: {'yes' if HAS_CUDA_KERNELS else 'no'}")
    print(f"JAX devices: {', '.join(str(d) for d in jax.devices())}")
    return 0


def _cmd_raycast(args) -> int:
    import jax
    import jax.numpy as jnp

    import jaxrender as jr
    from jaxrender._png import write_png
    from jaxrender.geometry.shapes import MESHES, icosphere

    if not args.output.lower().endswith(".png"):
        print(f"jaxrender: error: -o must name a .png file, got {args.output!r}", file=sys.stderr)
        return 2
    if args.mesh == "sphere":
        vertices, faces = icosphere(args.subdivisions)
    else:
        vertices, faces = MESHES[args.mesh]()
    width, height = args.resolution
    origins, directions = _pinhole_rays(width, height, eye=(2.6, -3.4, 2.0), target=(0, 0, 0))

    @jax.jit
    def shade(vertices, origins, directions):
        accel = jr.build_bvh(vertices, faces, method=args.method)
        hit = jr.intersect(accel, vertices, faces, origins, directions)
        tri = vertices[jnp.asarray(faces)[jnp.maximum(hit.prim, 0)]]
        n = jnp.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :])
        n = n / jnp.linalg.norm(n, axis=-1, keepdims=True)
        cos = jnp.abs(jnp.sum(n * directions, axis=-1))
        value = jnp.where(hit.prim >= 0, 0.15 + 0.85 * cos, 0.0)
        return jnp.broadcast_to(value[..., None], value.shape + (3,))

    t0 = time.perf_counter()
    image = shade(vertices, origins, directions).block_until_ready()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(max(args.repeat, 1)):
        t0 = time.perf_counter()
        image = shade(vertices, origins, directions).block_until_ready()
        times.append(time.perf_counter() - t0)
    best = min(times)
    srgb = np.where(image <= 0.0031308, 12.92 * image, 1.055 * np.power(np.asarray(image), 1 / 2.4) - 0.055)
    write_png(args.output, np.clip(np.round(np.asarray(srgb) * 255), 0, 255).astype(np.uint8))
    print(f"{args.mesh}: {faces.shape[0]} triangles, {width}x{height} rays on {jax.devices()[0].platform}")
    print(f"first call (compile + build + trace): {compile_s:.2f} s; "
          f"build + trace: {best * 1e3:.1f} ms ({width * height / best / 1e6:.1f} M rays/s incl. build)")
    print(f"wrote {args.output}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="jaxrender", description="A differentiable renderer native to JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="show build configuration and JAX devices")
    rc = sub.add_parser("raycast", help="ray-cast a built-in mesh to a PNG and time it")
    rc.add_argument("mesh", choices=["sphere", "torus", "box"])
    rc.add_argument("-o", "--output", required=True, help="output .png path")
    rc.add_argument("--resolution", type=_parse_resolution, default=(512, 512), help="WxH (default 512x512)")
    rc.add_argument("--subdivisions", type=int, default=5, help="icosphere subdivisions (sphere only)")
    rc.add_argument("--method", choices=["sah", "lbvh"], default="sah", help="BVH builder (CPU)")
    rc.add_argument("--repeat", type=int, default=5, help="timed repetitions")
    args = parser.parse_args(argv)
    if args.command == "info":
        return _cmd_info(args)
    return _cmd_raycast(args)


if __name__ == "__main__":
    sys.exit(main())
