"""`render`: a scene to an image, as a pure function."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxrender.integrators._math import jvp_nonzero
from jaxrender.integrators.aov import aov_channels, trace_aovs
from jaxrender.integrators.boundary import boundary_term, delta_shadow_term, shadow_term
from jaxrender.integrators.direct import mis_shares, trace_direct
from jaxrender.integrators.film import clip_t_max, splat
from jaxrender.integrators.interaction import prepare_scene
from jaxrender.integrators.lights import DELTA_LIGHTS, check_supported
from jaxrender.integrators.meters import check_meter, meter_rays
from jaxrender.integrators.path import trace_paths
from jaxrender.integrators.prb import RESIDUAL_NAME as PRB_RESIDUAL
from jaxrender.integrators.prb import trace_paths_prb
from jaxrender.scene import (
    METERS,
    SENSORS,
    BatchSensor,
    Camera,
    IntegratorConfig,
    IrradianceMeter,
    Scene,
    ThinLensCamera,
    bind_mesh_attributes,
    camera_rays,
)
from jaxrender.scene.sensors import pixel_film_positions

# Samples traced together in one pass: bounds memory to O(PASS_SAMPLES) per
# bounce (about 1 KiB per sample with the shading temporaries). 2^16 keeps
# XLA:CPU's per-fusion arrays cache-sized (measured ~10% faster than 2^18).
PASS_SAMPLES = 1 << 16
# On a GPU, 2^16 samples are too few to fill it, and every pass is a
# sequence of kernel launches: a 256x256 image gets 16 spp per pass there
# (a 1024x1024 one has 2^20 samples per spp anyway). Not yet measured on a
# GPU (benchmarks/RESULTS.md); reverse mode through `path` keeps ~160 bytes
# per sample and bounce of a pass (1.3 GiB at max_depth 8).
GPU_PASS_SAMPLES = 1 << 20


def pass_samples() -> int:
    """Most samples one pass traces on JAX's default backend: PASS_SAMPLES
    on the CPU, GPU_PASS_SAMPLES elsewhere."""
    return PASS_SAMPLES if jax.default_backend() == "cpu" else GPU_PASS_SAMPLES


def integrator_config(scene: Scene, integrator) -> IntegratorConfig:
    """The IntegratorConfig that `render(scene, integrator)` uses: the scene's
    for None, a name ("path", "prb", "direct", "aov:<types>") applied to the
    scene's parameters, or the config itself. ValueError / TypeError name a
    bad one."""
    if integrator is None:
        return _checked(scene.integrator)
    if isinstance(integrator, IntegratorConfig):
        return _checked(integrator)
    if isinstance(integrator, str):
        if integrator in ("path", "direct", "prb"):
            return dataclasses.replace(scene.integrator, type=integrator)
        if integrator == "depth":
            return IntegratorConfig(type="depth")
        if integrator.startswith("aov:"):
            # "aov:depth,nn" or Mitsuba's "aov:d:depth,n:sh_normal"
            items = [x for x in integrator[4:].split(",") if x]
            aovs = ",".join(x if ":" in x else f"{x}:{x}" for x in items)
            return IntegratorConfig(type="aov", aovs=aovs)
        raise ValueError(
            f"integrator must be 'path', 'prb', 'direct', 'depth', 'aov:<types>' (or an IntegratorConfig), "
            f"got {integrator!r}")
    raise TypeError(f"integrator must be None, a name or an IntegratorConfig, got {type(integrator).__name__}")


# Largest depth / sample count a config may name: loop counters are int32.
_INT_LIMIT = 2**31 - 1


def _checked(cfg: IntegratorConfig) -> IntegratorConfig:
    """cfg, after checking its integer fields (ValueError naming the field)."""
    for name, low in (("max_depth", -1), ("rr_depth", 1), ("emitter_samples", 0), ("bsdf_samples", 0)):
        value = getattr(cfg, name)
        if not _is_integer(value) or not low <= value <= _INT_LIMIT:
            extra = " (-1: unbounded)" if name == "max_depth" else ""
            raise ValueError(f"integrator {name} must be an integer in [{low}, 2^31 - 1]{extra}, got {value!r}")
    if cfg.nested is not None:
        _checked(cfg.nested)
    return cfg


def _camera(scene: Scene, sensor) -> Camera | BatchSensor:
    if isinstance(sensor, SENSORS):
        camera = sensor
    elif not scene.sensors:
        raise ValueError("the scene has no sensor; pass sensor=PerspectiveCamera(...) (or another camera)")
    elif not _is_integer(sensor) or not 0 <= sensor < len(scene.sensors):
        raise ValueError(f"sensor must be an index in [0, {len(scene.sensors)}) or a camera "
                         f"(PerspectiveCamera, ThinLensCamera, OrthographicCamera, Radiancemeter, BatchSensor), got {sensor!r}")
    else:
        camera = scene.sensors[int(sensor)]
    if isinstance(camera, METERS):
        check_meter(scene, camera)
    return camera


def render(scene: Scene, integrator=None, *, sensor=0, spp: int | None = None, key=None,
           seed: int = 0, key_grad=None, seed_grad: int | None = None,
           spp_grad: int | None = None, boundary: bool = True) -> jax.Array:
    """Renders a scene; differentiable in every float leaf of `scene` and of
    the camera.

    Args:
      scene: a Scene (from `load_file`, `load_dict`, `replace`).
        Differentiable: every array `traverse(scene)` lists (materials,
        textures, emitters, vertex positions, `to_world`, camera `to_world`
        and `fov`); derivatives are the interior ones (visibility held
        fixed: silhouettes and shadow edges do not move).
      integrator: None (the scene's), "path", "prb", "direct", "depth"
        (Mitsuba's: the first hit's distance in all channels), "aov:<types>"
        or an IntegratorConfig. "prb" renders path's image and differentiates
        it in reverse mode by path replay (Mitsuba's `prb`): gradient memory
        independent of max_depth, and faster; it has no forward mode (use
        "path" for jax.jvp), and with geometry or camera derivatives it falls
        back to path's reverse mode (`jaxrender.integrators.prb`). A scene
        file's `prb` loads as "path", which serves both modes.
      sensor: index into scene.sensors, or a camera pytree
        (PerspectiveCamera, ThinLensCamera, OrthographicCamera or
        Radiancemeter; `jax.vmap`
        over stacked cameras renders a batch of views; the camera is
        differentiable too), or a BatchSensor (Mitsuba's `batch`: its
        cameras side by side, (H, W) the batch's film), or an
        IrradianceMeter or DistantSensor (Mitsuba's `irradiancemeter` and
        `distant`: a 1x1 film holding the meter's value). Boundary terms
        follow edges across a camera's film (a thin lens's for each lens
        sample); meters have none: with a meter, derivatives that move
        geometry or the sensor raise NotImplementedError unless
        boundary=False.
      spp: samples per pixel, below 2^31 (default: the sensor's sampler).
      key: a jax.random key (`jax.random.key`, or a legacy uint32 (2,)
        PRNGKey); default `jax.random.key(seed)`. The same key gives the
        same image, bit for bit.
      seed: used when key is None.
      key_grad, seed_grad: when either is given, derivatives (jvp, vjp, grad)
        are estimated from an independent render with this key (or
        `jax.random.key(seed_grad)`) and `spp_grad` samples, while the value
        returned is still the render with `key`: the decoupled estimator of
        Mitsuba 3's `seed_grad` (Mitsuba 2's `unbiased=True`), which makes
        gradients of losses nonlinear in the image (e.g. MSE) unbiased.
        Without them the derivative is exactly that of the returned image
        (correlated samples; what finite differences with the same key
        measure). Mitsuba 3 decouples by default.
      spp_grad: samples per pixel of the derivative render (default `spp`);
        only with key_grad / seed_grad.
      boundary: include the visibility boundary terms in derivatives
        (`jaxrender.integrators.boundary`) when vertices, `to_world` or the
        camera change: primary edges (silhouettes and creases moving across
        pixels; one edge sample per pixel sample) and the direct-illumination
        edges (shadow edges, edges hiding part of an emitter; one edge
        sample per shading point): `direct` at the first hit of each camera
        ray, `path` and `prb` at every path vertex that samples an emitter;
        the outlines of point, spot and directional lights' shadows where
        the camera sees them (one edge sample per pixel sample and light;
        through mirrors or glass they have none). `path` and `prb` also
        count, beside each edge, the direct light the surfaces seen there
        reflect (an occluder hiding a lit surface; one bounce of indirect
        light). They add nothing to the image and cost nothing unless
        geometry, the camera or a delta light's placement is
        differentiated. `aov` has none.

    Returns:
      float32 (height, width, 3) linear RGB; for "aov", (height, width, C):
      the nested integrator's RGB first (when it has one), then each AOV's
      channels in order (see `jaxrender.integrators.aov`). Works inside jit.

    Memory: samples are traced in passes of at most `pass_samples()` (2^16
    on the CPU, 2^20 on a GPU), so a render takes O(pass) memory whatever
    the spp; the figures below are for the CPU's 2^16. Reverse mode
    (`grad`, `vjp`) keeps the residuals of one pass: about 160 bytes per
    sample per bounce (measured with XLA's memory analysis on the Cornell
    box: 10 MiB per bounce for a 2^16-sample pass), so roughly
    min(H*W*spp, 2^16) * 160 * max_depth bytes, linear in max_depth; with
    "prb" (no geometry derivatives) that of one bounce, whatever the depth. When
    there are several passes, each is recomputed in the backward sweep from
    the image accumulated before it (`jax.checkpoint`), so gradient memory
    does not grow with spp, at the cost of one more primal pass; "prb"
    instead keeps each pass's radiance (12 bytes per sample, H*W*spp*12
    bytes in all), which is all its replay needs. Forward mode (`jvp`)
    carries tangents alongside and keeps no residuals.
    """
    if not isinstance(scene, Scene):
        hint = " (load it first: jr.load_file(...))" if isinstance(scene, str) else ""
        raise TypeError(f"render expects a Scene, got {type(scene).__name__}{hint}")
    for name, value in (("seed", seed), ("seed_grad", seed_grad)):
        if value is not None and not _is_integer(value):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        # jax.random.key keeps 32 bits: larger seeds would repeat smaller ones.
        if value is not None and not -(2**31) <= value < 2**32:
            raise ValueError(f"{name} must be in [-2^31, 2^32) (JAX keys hold 32 bits), got {value}")
    check_supported(scene)
    # mesh_attribute textures learn where the hit's attributes sit in the
    # texture coordinates (static metadata only: the leaves are the user's).
    scene = bind_mesh_attributes(scene)
    cfg = integrator_config(scene, integrator)
    if cfg.type == "depth":
        # Mitsuba's `depth`: the distance to the first hit (0 for a miss) in
        # all three channels, i.e. the depth AOV.
        image = render(scene, IntegratorConfig(type="aov", aovs="depth:depth"), sensor=sensor, spp=spp, key=key,
                       seed=seed, key_grad=key_grad, seed_grad=seed_grad, spp_grad=spp_grad, boundary=boundary)
        if isinstance(_camera(scene, sensor), IrradianceMeter):
            # Mitsuba's depth is a sampling integrator: its value is weighted
            # by the sensor's ray weight (pi for an irradiance meter), AOVs are not.
            image = image * jnp.pi
        return jnp.repeat(image, 3, axis=-1)
    if cfg.type not in ("path", "prb", "direct", "aov"):
        raise NotImplementedError(f"integrator {cfg.type!r} is not implemented (path, prb, direct, depth, aov are)")
    camera = _camera(scene, sensor)
    spp = _positive(camera.sample_count if spp is None else spp, "spp")
    key = jax.random.key(seed) if key is None else _check_key(key, "key")
    if key_grad is not None:
        _check_key(key_grad, "key_grad")
    if key_grad is None and seed_grad is None:
        if spp_grad is not None:
            raise ValueError("spp_grad needs key_grad or seed_grad (the decoupled derivative render)")
        return _render(scene, camera, cfg, spp, key, boundary)
    if key_grad is None:
        key_grad = jax.random.key(seed_grad)
    spp_grad = spp if spp_grad is None else _positive(spp_grad, "spp_grad")
    if cfg.type == "prb":
        # prb has no forward mode, which _decoupled's rule needs: the value of
        # one render with the derivative of the other, at one more render.
        image = _render(scene, camera, cfg, spp, key, boundary)
        other = _render(scene, camera, cfg, spp_grad, key_grad, boundary)
        return jax.lax.stop_gradient(image) + (other - jax.lax.stop_gradient(other))
    return _decoupled((cfg, spp, spp_grad, boundary), scene, camera, key, key_grad)


def _is_integer(x) -> bool:
    """A Python or numpy integer, not a bool."""
    return not isinstance(x, bool) and isinstance(x, (int, np.integer))


def _positive(n, name):
    if not _is_integer(n) or not 0 < n <= _INT_LIMIT:
        raise ValueError(f"{name} must be a positive integer below 2^31, got {n!r}")
    return int(n)


def _check_key(key, name):
    """A typed jax.random key or a legacy uint32 (2,) key; TypeError naming
    `name` otherwise (JAX's own message names neither)."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and jnp.ndim(key) == 0:
        return key
    if dtype == jnp.uint32 and jnp.shape(key) == (2,):
        return key
    raise TypeError(f"{name} must be a single jax.random.key(...) (or a uint32 (2,) PRNGKey), got "
                    f"{type(key).__name__}{'' if dtype is None else f' of {dtype} {jnp.shape(key)}'}")


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _decoupled(config, scene, camera, key, key_grad):
    """The render with `key`, whose derivative is that of the render with
    `key_grad` (independent samples)."""
    cfg, spp, _, boundary = config
    return _render(scene, camera, cfg, spp, key, boundary)


def _decoupled_jvp(config, primals, tangents):
    cfg, spp, spp_grad, boundary = config
    scene, camera, key, key_grad = primals
    image = _render(scene, camera, cfg, spp, key, boundary)
    # Tangents arrive symbolic where zero: only leaves that carry one are
    # differentiated (instantiated zeros would cost a geometry jvp per render).
    _, d_image = jvp_nonzero(lambda s, c: _render(s, c, cfg, spp_grad, key_grad, boundary), (scene, camera),
                             tangents[:2])
    return image, jnp.zeros_like(image) if d_image is None else d_image


_decoupled.defjvp(_decoupled_jvp, symbolic_zeros=True)


# XLA:CPU options that make renders faster. YNNPACK "fusions" (XLA:CPU's
# library calls for elementwise ops and reductions) turn every size-3 reduce
# of the shading code (dot products, max over RGB) into a library call that
# is slower than XLA's own loop; leaving YNNPACK only matrix products made
# the Cornell box 18% faster (bench_render.py).
_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}


@functools.cache
def compiler_options() -> dict:
    """XLA compiler options under which jaxrender renders fastest on this
    JAX's default backend, for `jax.jit(f, compiler_options=...)` around
    functions that call `render` (the options of the outermost jit apply;
    `render` called outside any jit uses them already). Empty where no
    option helps or this jaxlib does not know them. Changes only speed.
    `import jaxrender` puts the same option in XLA_FLAGS when no backend
    has started yet (jaxrender/_xla_flags.py), which reaches every jit."""
    if jax.default_backend() != "cpu":
        return {}
    try:
        # Unknown options are a compile error (not a crash): probe once.
        jax.jit(lambda x: x + 1, compiler_options=_CPU_OPTIONS).lower(jnp.float32(0)).compile()
    except Exception:  # noqa: BLE001 - any failure means: do without
        return {}
    return dict(_CPU_OPTIONS)


def _render(scene: Scene, camera: Camera, cfg: IntegratorConfig, spp: int, key,
            boundary: bool) -> jax.Array:
    # JAX takes compiler options only on the outermost jit: under a
    # transformation (the user's jit, grad, vmap) the plain jit is used.
    traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((scene, camera, key)))
    return _render_jit(not traced)(scene, camera, cfg, spp, key, boundary)


# Jitted so that calls outside the user's jit reuse the compiled render
# (keyed on the scene's static structure, the integrator and spp) instead of
# recompiling the pass loop each time; inside a jit it is inlined. Built on
# first use: the options probe needs a backend, which import must not start.
@functools.cache
def _render_jit(top_level: bool):
    options = compiler_options() if top_level else {}
    return jax.jit(_render_passes, static_argnums=(2, 3, 5), compiler_options=options or None)


def _render_passes(scene: Scene, camera: Camera, cfg: IntegratorConfig, spp: int, key,
                   boundary: bool) -> jax.Array:
    channels = aov_channels(cfg) if cfg.type == "aov" else 3
    width, height = camera.film.crop_width, camera.film.crop_height
    pixels = width * height
    # The largest divisor of spp that keeps a pass under pass_samples().
    per_pass = max(1, min(spp, pass_samples() // max(pixels, 1)))
    while spp % per_pass:
        per_pass -= 1
    passes = spp // per_pass
    arrays = prepare_scene(scene)
    trace = {"aov": trace_aovs, "direct": trace_direct, "path": trace_paths, "prb": trace_paths_prb}[cfg.type]
    # The boundary terms evaluate the integrator without differentiating it.
    trace_values = trace_paths if cfg.type == "prb" else trace
    # path and prb add the shadow-edge term at each vertex themselves;
    # direct gets it at the camera rays' hits (shadow_term).
    paths = cfg.type in ("path", "prb")
    trace_args = {"boundary": boundary} if paths else {}
    # Delta lights' shadows bound the pixel integral at the camera rays'
    # first hits, wherever the integrator's next-event estimation sees them.
    nee_at_first_hit = cfg.emitter_samples > 0 if cfg.type == "direct" else paths and cfg.max_depth not in (0, 1)
    delta_shadows = (boundary and nee_at_first_hit and scene.shapes
                     and any(isinstance(e, DELTA_LIGHTS) for e in scene.emitters))

    # A batch sensor's cameras each take a band of columns: their rays are
    # traced together and their samples splatted into the whole film.
    cameras = camera.sensors if isinstance(camera, BatchSensor) else (camera,)
    meter = isinstance(camera, METERS)
    band = width // len(cameras)
    sub_pixels = band * height

    def by_camera(fn, *images):
        """fn(camera, k, its columns of each (..., H, W, C) image (None stays
        None)) for each camera k, its outputs (..., H, band, C) side by side."""
        parts = [fn(c, k, *(None if x is None else x[..., k * band:(k + 1) * band, :] for x in images))
                 for k, c in enumerate(cameras)]
        return parts[0] if len(parts) == 1 else jax.tree.map(lambda *x: jnp.concatenate(x, axis=-2), *parts)

    def camera_key(key, k):
        # A single camera keeps the pass's key (images as before batches).
        return key if len(cameras) == 1 else jax.random.fold_in(key, k)

    def one_pass(i, total):
        k = jax.random.fold_in(key, i)
        k_pix, k_path, k_edge = jax.random.split(k, 3)
        offsets = jax.random.uniform(k_pix, (per_pass, height, width, 2), jnp.float32)
        aperture = None
        if meter or any(isinstance(c, ThinLensCamera) for c in cameras):
            aperture = jax.random.uniform(jax.random.fold_in(k_pix, 1), offsets.shape, jnp.float32)

        def rays(c, k, off, ap):
            o, d = camera_rays(c, off, ap)  # cameras without a lens ignore ap
            return o, d, clip_t_max(c, d)[..., None]

        if meter:
            # The film position picks where on a shape an irradiance meter's
            # ray starts (as in Mitsuba); the second sample its direction or
            # a distant sensor's target point.
            pos = pixel_film_positions(camera, offsets)
            o, d, weight = meter_rays(scene, arrays, camera, pos.reshape(-1, 2), aperture.reshape(-1, 2))
            t_max = jnp.full(o.shape[:1], jnp.inf, jnp.float32)
        else:
            o, d, t_max = by_camera(rays, offsets, aperture)
            o, d, t_max = o.reshape(-1, 3), d.reshape(-1, 3), t_max.reshape(-1)
        value = trace(scene, arrays, cfg, o, d, k_path, t_max, **trace_args)
        if meter and cfg.type != "aov":
            value = value * weight[:, None]
        value = value.reshape(per_pass, height, width, channels)
        edges = 0.0
        if meter and cfg.type != "aov" and boundary:
            # No film-space edges: this raises NotImplementedError when
            # geometry or the sensor is differentiated (see _check_camera).
            edges = boundary_term((cfg, 1, per_pass), trace_values, scene, camera, k_edge)
        elif cfg.type != "aov" and boundary:
            k_edge, k_shadow = jax.random.split(k_edge)
            edges = by_camera(lambda c, k: boundary_term(
                (cfg, per_pass * sub_pixels, per_pass), trace_values, scene, c, camera_key(k_edge, k)))
            if delta_shadows:
                edges = edges + by_camera(lambda c, k: delta_shadow_term(
                    (per_pass * sub_pixels, per_pass), scene, c, camera_key(jax.random.fold_in(k_shadow, 1), k)))
            if not paths:
                value = value + by_camera(
                    lambda c, k, off, ap: shadow_term(((per_pass, height, band, 3), *mis_shares(cfg)), scene, c, off,
                                                      ap, camera_key(k_shadow, k)), offsets, aperture)
        if box:
            return total[0] + value.sum(0) + edges, total[1]
        acc, wsum = splat(rfilter, value, offsets, height, width)
        return total[0] + acc + edges, total[1] + wsum

    rfilter = camera.film.rfilter
    box = rfilter.type == "box" and rfilter.radius <= 0.5
    zeros = (jnp.zeros((height, width, channels), jnp.float32), jnp.zeros((height, width, 1), jnp.float32))
    if passes > 1:
        # Reverse mode keeps only each pass's incoming image and recomputes
        # the pass, so gradient memory is that of one pass, not of spp. prb
        # keeps its radiance (12 bytes per sample): its replay needs nothing
        # else, and recomputing it would cost one more primal render.
        policy = jax.checkpoint_policies.save_only_these_names(PRB_RESIDUAL)
        one_pass = jax.checkpoint(one_pass, policy=policy)
    total, wsum = jax.lax.fori_loop(0, passes, one_pass, zeros)
    if box:
        return total / spp
    return total / jnp.maximum(wsum, 1e-20)
