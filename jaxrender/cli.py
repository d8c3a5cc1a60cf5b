"""The `jaxrender` command.

  jaxrender info                        what was built, which devices JAX sees
  jaxrender params SCENE [-D k=v ...]   a scene's differentiable parameters
  jaxrender render SCENE -o OUT         render a scene (path, prb, direct or aov
                                        integrator), in passes with a progress bar
  jaxrender raycast SCENE -o OUT        ray-cast a scene (file or built-in, e.g.
                                        cbox) or a built-in mesh (sphere, torus,
                                        box) from its camera, eye-light shaded,
                                        and time BVH build and tracing

SCENE is a Mitsuba XML file or a built-in scene name. Errors in the input are
reported as one line naming the file/line or parameter, with exit code 2.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

import numpy as np

MESHES = ("sphere", "torus", "box")


def _parse_resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--resolution must look like 640x480, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"--resolution must be positive, got {text!r}")
    from jaxrender.scene.load import MAX_FILM_PIXELS, MAX_FILM_SIDE

    # The limits a scene's film has (see jaxrender.scene.load).
    if w > MAX_FILM_SIDE or h > MAX_FILM_SIDE or w * h > MAX_FILM_PIXELS:
        raise argparse.ArgumentTypeError(
            f"--resolution {text!r} is too large (at most {MAX_FILM_SIDE} a side and "
            f"{MAX_FILM_PIXELS} pixels)"
        )
    return w, h


def _parse_define(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"-D expects name=value, got {text!r}")
    return name, value


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


def _load_scene(args):
    import jaxrender as jr

    return jr.load_file(args.scene, **dict(args.define or ()))


def _shape_colours(scene) -> np.ndarray:
    """A display colour per shape: diffuse albedo, normalized emitted radiance, or gray."""
    import jaxrender as jr

    colours = np.full((len(scene.shapes), 3), 0.7, np.float32)
    for i, mesh in enumerate(scene.shapes):
        tex = None
        if mesh.emitter >= 0 and isinstance(scene.emitters[mesh.emitter], jr.AreaLight):
            tex = scene.emitters[mesh.emitter].radiance
        elif isinstance(scene.bsdfs[mesh.bsdf], jr.Diffuse):
            tex = scene.bsdfs[mesh.bsdf].reflectance
        if isinstance(tex, jr.ConstantTexture):
            c = np.broadcast_to(np.asarray(tex.value, np.float32), (3,))
            colours[i] = c / max(float(c.max()), 1.0)
    return colours


def _cmd_info(args) -> int:
    import jax

    import jaxrender as jr
    from jaxrender.geometry import HAS_CUDA_KERNELS

    print(f"jaxrender {jr.__version__}, jax {jax.__version__}")
    print(f"CUDA kernels built: {'yes' if HAS_CUDA_KERNELS else 'no'}")
    print(f"JAX devices: {', '.join(str(d) for d in jax.devices())}")
    print(f"built-in scenes: {', '.join(sorted(jr.BUILTIN_SCENES))}")
    return 0


def _cmd_params(args) -> int:
    import jaxrender as jr

    scene = _load_scene(args)
    params = jr.traverse(scene)
    width = max((len(k) for k in params), default=0)
    for name, value in params.items():
        print(f"{name:<{width}}  {str(value.dtype):<8} {tuple(value.shape)}")
    cam = scene.sensors[0] if scene.sensors else None
    summary = f"{len(params)} parameters; {len(scene.shapes)} shapes, {len(scene.bsdfs)} BSDFs, " \
              f"{len(scene.emitters)} emitters, {len(scene.sensors)} sensors"
    if cam is not None:
        f = cam.film
        summary += f"; film {f.width}x{f.height}"
        if f.cropped:
            summary += f" (crop {f.crop_width}x{f.crop_height} at {f.crop_offset_x},{f.crop_offset_y})"
        summary += f", {cam.sample_count} spp"
    print(summary)
    return 0


def _scene_camera(args, scene, verb: str):
    """The sensor the command uses, with --resolution applied; errors name it."""
    import jaxrender as jr

    if not scene.sensors:
        raise jr.SceneError(f"{args.scene}: the scene has no sensor to {verb} from")
    if not 0 <= args.sensor < len(scene.sensors):
        raise jr.SceneError(f"--sensor {args.sensor}: the scene has {len(scene.sensors)} sensor(s)")
    return _with_resolution(scene.sensors[args.sensor], args.resolution)


def _with_resolution(camera, resolution):
    import jaxrender as jr

    if resolution is None:
        return camera
    try:
        return jr.with_film(camera, jr.Film(resolution[0], resolution[1], camera.film.rfilter))
    except ValueError as e:
        raise jr.SceneError(f"--resolution {resolution[0]}x{resolution[1]}: {e}") from None


def _check_output(path):
    """Refuses an output path that cannot be written before any work is done:
    an unknown image extension or a folder that does not exist."""
    import os

    from jaxrender.io.image import check_output_path

    check_output_path(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OSError(f"{path}: the output folder {folder} does not exist")


def _cmd_render(args) -> int:
    import dataclasses

    import jax

    import jaxrender as jr

    t_start = time.perf_counter()
    _check_output(args.output)
    if args.max_depth is not None and not -1 <= args.max_depth < 2**31:
        raise ValueError(f"--max-depth must be -1 (unbounded) or in [0, 2^31), got {args.max_depth}")
    if not -(2**31) <= args.seed < 2**32:
        # As render(seed=...): JAX keys hold 32 bits, larger seeds repeat smaller ones.
        raise ValueError(f"--seed must be in [-2^31, 2^32), got {args.seed}")
    if args.spp is not None and not 0 < args.spp < 2**31:
        raise ValueError(f"--spp must be a positive integer below 2^31, got {args.spp}")
    scene = _load_scene(args)
    camera = _scene_camera(args, scene, "render")
    from jaxrender.integrators.aov import aov_channel_names
    from jaxrender.integrators.render import integrator_config
    from jaxrender.io.image import check_output_path

    cfg = integrator_config(scene, args.integrator)
    if args.max_depth is not None:
        cfg = dataclasses.replace(cfg, max_depth=args.max_depth)
    names = aov_channel_names(cfg) if cfg.type == "aov" else None
    if names is not None and len(names) in (1, 3):
        names = None  # an ordinary gray or RGB image
    check_output_path(args.output, names)
    spp = args.spp if args.spp is not None else camera.sample_count
    width, height = camera.film.crop_width, camera.film.crop_height
    # Passes of about pass_samples() samples, each one jitted call, so
    # progress can be shown; the image is their average.
    from jaxrender.integrators.render import pass_samples

    chunk = max(1, min(spp, pass_samples() // (width * height)))
    # Lazily: spp may be up to 2^31 passes of one sample.
    sizes = (min(chunk, spp - start) for start in range(0, spp, chunk))
    key = jax.random.key(args.seed)
    fn = jax.jit(lambda scene, camera, k, n: jr.render(scene, cfg, sensor=camera, spp=n, key=k),
                 static_argnums=3, compiler_options=jr.compiler_options() or None)
    total = None
    done = 0
    t0 = time.perf_counter()
    compile_s = None
    for i, n in enumerate(sizes):
        t_pass = time.perf_counter()
        image = fn(scene, camera, jax.random.fold_in(key, i), n).block_until_ready()
        if compile_s is None:
            compile_s = time.perf_counter() - t_pass
            t0 = time.perf_counter()
        total = image * n if total is None else total + image * n
        done += n
        if not args.quiet:
            elapsed = max(time.perf_counter() - t0, 1e-9)
            # The first pass (compilation included) is left out of the rate.
            rate = (done - chunk) * width * height / elapsed if done > chunk else 0.0
            left = (spp - done) * width * height / rate if rate > 0 else 0.0
            bar = "#" * int(30 * done / spp)
            print(f"\r[{bar:<30}] {done}/{spp} spp  {rate / 1e6:6.2f} M samples/s  {left:5.1f} s left",
                  end="", file=sys.stderr, flush=True)
    if not args.quiet:
        print(file=sys.stderr)
    image = np.asarray(total / spp)
    if not np.isfinite(image).all():
        bad = int(np.sum(~np.isfinite(image).all(-1)))
        raise ValueError(f"{args.scene}: the render produced non-finite values in {bad} pixel(s), "
                         f"nothing written to {args.output} (values beyond float32's range? "
                         "check emitter radiance and the scene's scale)")
    jr.write_image(args.output, image, channel_names=names)
    render_s = time.perf_counter() - t0
    print(f"{args.scene}: {width}x{height}, {spp} spp, {cfg.type} (max_depth {cfg.max_depth}) "
          f"on {jax.devices()[0].platform}")
    print(f"compile (first pass incl.): {compile_s:.2f} s; render: {render_s:.2f} s; "
          f"total {time.perf_counter() - t_start:.2f} s")
    print(f"wrote {args.output}")
    return 0


def _cmd_raycast(args) -> int:
    import jax
    import jax.numpy as jnp

    import jaxrender as jr
    from jaxrender.geometry.shapes import MESHES as PROCEDURAL
    from jaxrender.geometry.shapes import icosphere
    from jaxrender.geometry.world import flatten_scene
    from jaxrender.scene import METERS

    _check_output(args.output)
    if not 0 <= args.subdivisions <= 9:
        raise ValueError(f"--subdivisions must be in [0, 9] (4^9 * 20 = 5.2M triangles), got {args.subdivisions}")
    if args.repeat < 1:
        raise ValueError(f"--repeat must be >= 1, got {args.repeat}")
    if args.scene in MESHES:
        if args.define or args.sensor != 0:
            raise ValueError(f"-D and --sensor apply to scenes; the built-in mesh {args.scene!r} has neither")
        vertices, faces = icosphere(args.subdivisions) if args.scene == "sphere" else PROCEDURAL[args.scene]()
        width, height = args.resolution or (512, 512)
        origins, directions = _pinhole_rays(width, height, eye=(2.6, -3.4, 2.0), target=(0, 0, 0))
        colour = np.full((1, 3), 0.9, np.float32)
        face_colour = np.zeros(faces.shape[0], np.int32)
    else:
        scene = _load_scene(args)
        camera = _scene_camera(args, scene, "ray-cast")
        if isinstance(camera, METERS):
            raise jr.SceneError(f"--sensor {args.sensor}: a {type(camera).__name__} has no film view to "
                                "ray-cast (render it with `jaxrender render`)")
        width, height = camera.film.crop_width, camera.film.crop_height
        geometry = flatten_scene(scene)
        vertices, faces = geometry.vertices, geometry.faces
        if not faces.shape[0]:
            raise jr.SceneError(f"{args.scene}: the scene has no shapes to ray-cast")
        origins, directions = jr.camera_rays(camera, jnp.full((height, width, 2), 0.5, jnp.float32))
        colour = _shape_colours(scene)
        face_colour = geometry.shape_index

    colour, face_colour = jnp.asarray(colour), jnp.asarray(face_colour)

    @jax.jit
    def shade(vertices, origins, directions):
        accel = jr.build_bvh(vertices, faces, method=args.method)
        hit = jr.intersect(accel, vertices, faces, origins, directions)
        prim = jnp.maximum(hit.prim, 0)
        tri = vertices[jnp.asarray(faces)[prim]]
        n = jnp.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :])
        n = n / jnp.maximum(jnp.linalg.norm(n, axis=-1, keepdims=True), 1e-30)
        d = directions / jnp.linalg.norm(directions, axis=-1, keepdims=True)
        cos = jnp.abs(jnp.sum(n * d, axis=-1, keepdims=True))
        value = colour[face_colour[prim]] * (0.2 + 0.8 * cos)
        return jnp.where((hit.prim >= 0)[..., None], value, 0.0)

    t0 = time.perf_counter()
    image = shade(vertices, origins, directions).block_until_ready()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        image = shade(vertices, origins, directions).block_until_ready()
        times.append(time.perf_counter() - t0)
    best = min(times)
    jr.write_image(args.output, np.asarray(image))
    print(f"{args.scene}: {faces.shape[0]} triangles, {width}x{height} rays on {jax.devices()[0].platform}")
    print(f"first call (compile + build + trace): {compile_s:.2f} s; "
          f"build + trace: {best * 1e3:.1f} ms ({width * height / best / 1e6:.1f} M rays/s incl. build)")
    print(f"wrote {args.output}")
    return 0


_VALUE_FLAGS = ("--resolution", "--spp", "--seed", "--max-depth", "--sensor", "--subdivisions", "--repeat")


def _attach_dash_values(argv: list) -> list:
    """argparse takes a value that starts with '-' and is not a plain number
    ("--resolution -4x4") for a flag and says only "expected one argument".
    Such a value is attached to its flag ("--resolution=-4x4") so that the
    flag's own check names what is wrong with it."""
    out = []
    for a in argv:
        if out and out[-1] in _VALUE_FLAGS and re.match(r"-[\d.]", a):
            out[-1] = f"{out[-1]}={a}"
        else:
            out.append(a)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="jaxrender", description="A differentiable renderer native to JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="show build configuration, JAX devices and built-in scenes")

    pp = sub.add_parser("params", help="list a scene's differentiable parameters (traverse)")
    pp.add_argument("scene", help="Mitsuba XML file or built-in scene name (e.g. cbox)")
    pp.add_argument("-D", dest="define", action="append", type=_parse_define, metavar="NAME=VALUE",
                    help="set a $NAME scene parameter (repeatable)")

    rp = sub.add_parser("render", help="render a scene to an image (EXR or PNG by extension)")
    rp.add_argument("scene", help="Mitsuba XML file or built-in scene name (e.g. cbox)")
    rp.add_argument("-o", "--output", required=True, help="output image (.exr, .png or .jpg)")
    rp.add_argument("--spp", type=int, default=None, help="samples per pixel (default: the scene's)")
    rp.add_argument("--integrator", default=None, metavar="{path,direct,prb,depth,aov:TYPES}",
                    help="integrator (default: the scene's); aov:TYPES renders arbitrary output variables, "
                    "e.g. aov:depth,nn (more than 3 channels need an .exr output: one named channel each)")
    rp.add_argument("--max-depth", type=int, default=None, help="longest path (-1: unbounded)")
    rp.add_argument("--seed", type=int, default=0, help="random seed (same seed, same image)")
    rp.add_argument("--sensor", type=int, default=0, help="sensor index")
    rp.add_argument("--resolution", type=_parse_resolution, default=None, help="WxH (default: the film's)")
    rp.add_argument("-D", dest="define", action="append", type=_parse_define, metavar="NAME=VALUE",
                    help="set a $NAME scene parameter (repeatable)")
    rp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    rc = sub.add_parser("raycast", help="ray-cast a scene or built-in mesh to an image and time it")
    rc.add_argument("scene", help=f"Mitsuba XML file, built-in scene (cbox) or mesh ({', '.join(MESHES)})")
    rc.add_argument("-o", "--output", required=True, help="output image (.png, .jpg or .exr)")
    rc.add_argument("-D", dest="define", action="append", type=_parse_define, metavar="NAME=VALUE",
                    help="set a $NAME scene parameter (repeatable)")
    rc.add_argument("--sensor", type=int, default=0, help="sensor index (scenes)")
    rc.add_argument("--resolution", type=_parse_resolution, default=None,
                    help="WxH (default: the scene's film, 512x512 for meshes)")
    rc.add_argument("--subdivisions", type=int, default=5, help="icosphere subdivisions (sphere only)")
    rc.add_argument("--method", choices=["sah", "lbvh"], default="sah", help="BVH builder (CPU)")
    rc.add_argument("--repeat", type=int, default=5, help="timed repetitions")
    args = parser.parse_args(_attach_dash_values(sys.argv[1:] if argv is None else list(argv)))

    from jaxrender.io import SceneError

    try:
        if args.command == "info":
            return _cmd_info(args)
        if args.command == "params":
            return _cmd_params(args)
        if args.command == "render":
            return _cmd_render(args)
        return _cmd_raycast(args)
    except RecursionError:
        # The loaders bound include and object nesting; this is a last guard
        # so that no input ends in a traceback.
        print(f"jaxrender: error: {getattr(args, 'scene', '')}: input nested too deeply "
              "(Python's recursion limit was reached)", file=sys.stderr)
        return 2
    except (SceneError, OSError, ValueError, TypeError) as e:
        # SceneError is a ValueError; OSError covers unreadable inputs and
        # unwritable outputs. One line, whatever the message holds.
        text = " ".join(line.strip() for line in str(e).splitlines()) or type(e).__name__
        print(f"jaxrender: error: {text}", file=sys.stderr)
        return 2
    except MemoryError:
        print("jaxrender: error: out of memory (lower --resolution or the scene's size)", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - narrowed below
        import jax

        if not (isinstance(e, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(e)):
            raise
        # XLA could not allocate a buffer: one line, not a traceback.
        first = str(e).strip().splitlines()[0] if str(e).strip() else "RESOURCE_EXHAUSTED"
        print(f"jaxrender: error: out of memory ({first}); lower --resolution or the scene's size",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
