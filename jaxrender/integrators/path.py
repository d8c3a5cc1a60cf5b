"""Unidirectional path tracing with next-event estimation and MIS (Mitsuba's
`path`), wavefront style: every bounce is one closest-hit query, one shading
step over the whole batch and one shadow query, inside `lax.fori_loop`.

`direct` has its own estimator (direct.py, any number of emitter and BSDF
samples); with one of each it equals `path` at max_depth 2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrender.integrators import bsdf_math as bm
from jaxrender.integrators._math import materialize
from jaxrender.integrators.boundary import nee_edge_term, shadow_edges
from jaxrender.integrators.bsdfs import sampled_direction
from jaxrender.integrators.interaction import (
    bsdfs_at,
    frame_at,
    geometry_of,
    SceneArrays,
    offset_origin,
    surface_interaction,
    trace,
)
from jaxrender.integrators.lights import emission_along, light_tables, next_event
from jaxrender.integrators.warp import power_heuristic, to_local
from jaxrender.scene import IntegratorConfig, Scene

# Bounce cap for max_depth = -1 ("unbounded", ended by Russian roulette).
UNBOUNDED_DEPTH = 64


def hash_uniform(seed, depth, n, k):
    """(n, k) uniforms in [0, 1) from a counter-based integer hash (PCG's
    output permutation over (seed, depth, sample, dimension)). The seed comes
    from the pass's jax.random key, so the same key still gives the same
    image; this costs a few integer ops per number where threefry costs ~20
    rounds, which was ~20% of a bounce on the CPU."""
    idx = (jnp.arange(n, dtype=jnp.uint32)[:, None] * jnp.uint32(k) + jnp.arange(k, dtype=jnp.uint32)[None, :])
    x = idx ^ (seed + jnp.asarray(depth, jnp.uint32) * jnp.uint32(0x9E3779B9))
    for _ in range(2):
        x = x * jnp.uint32(747796405) + jnp.uint32(2891336453)
        word = ((x >> ((x >> 28) + jnp.uint32(4))) ^ x) * jnp.uint32(277803737)
        x = (word >> 22) ^ word
    # Into a buffer once: XLA would recompute the hash in every fusion that
    # reads a dimension of it (over a hundred in a Cornell-box render).
    return materialize((x >> 8).astype(jnp.float32) * jnp.float32(2.0**-24))


def russian_roulette(cfg: IntegratorConfig, depth, beta, eta, u, active):
    """Mitsuba's Russian roulette from `cfg.rr_depth` on: a path survives
    with probability q = min(max(beta) eta^2, 0.95) and its throughput is
    divided by q. Returns (beta, active)."""
    rr = depth >= cfg.rr_depth
    # As Mitsuba, the probability is detached: it only decides which paths
    # go on. Paths with q <= 1e-7 can never survive (u is a multiple of
    # 2^-24) and end here, which keeps 1/q finite in every lane.
    q = jax.lax.stop_gradient(jnp.minimum(jnp.max(beta, axis=-1) * eta * eta, 0.95))
    survive = (u < q) & (q > 1e-7)
    scaled = rr & active & survive
    q_safe = jnp.where(scaled, q, 1.0)  # double where: no 0/0 in unused lanes
    beta = jnp.where(scaled[:, None], beta / q_safe[:, None], beta)
    return beta, active & (~rr | survive)


def continue_paths(active, o_next, d_next, o, d, beta):
    """The next rays (o, d) where paths go on (the old ones elsewhere) and
    the throughput, zero where they ended."""
    return (jnp.where(active[:, None], o_next, o), jnp.where(active[:, None], d_next, d),
            jnp.where(active[:, None], beta, 0.0))


def trace_paths(scene: Scene, arrays: SceneArrays, cfg: IntegratorConfig, origins, directions, key,
                t_max=None, unroll=None, boundary=False):
    """Radiance (N, 3) along camera rays (N, 3) + (N, 3), one path each;
    t_max (N,) bounds the camera rays (the far clip plane). unroll: unroll
    the bounce loop (default: when max_depth <= 16); a rolled loop keeps the
    memory of one bounce (XLA keeps some buffers of every unrolled bounce
    alive: ~110 bytes per sample per bounce). boundary: add the
    direct-illumination boundary term (shadow edges, `nee_edge_term`) at
    every vertex; zero in value, it costs nothing unless geometry or the
    camera is differentiated."""
    n = origins.shape[0]
    max_depth = cfg.max_depth if cfg.max_depth >= 0 else UNBOUNDED_DEPTH
    has_emitters = len(scene.emitters) > 0
    tables = light_tables(scene, arrays)
    f32 = jnp.float32

    seed = jax.random.bits(key, (), jnp.uint32)
    edges = shadow_edges(arrays) if boundary and has_emitters and arrays.faces.shape[0] else None

    def body(depth, state):
        o, d, beta, L, eta, active, prev_pdf, prev_delta = state
        u = hash_uniform(seed, depth, n, 7)
        # Ended paths trace nothing (t_max 0: the kernel returns at once);
        # they used to re-trace their last ray every bounce.
        far = jnp.inf if t_max is None else jnp.where(depth == 0, t_max, jnp.inf)
        hit = trace(arrays, o, d, jnp.where(active, far, 0.0))
        si = surface_interaction(arrays, hit, o, d)
        # The hit's interpolated data into buffers: every consumer (emission,
        # NEE, the spawned ray) would otherwise re-gather and re-interpolate it.
        si = si._replace(p=materialize(si.p), n=materialize(si.n), sh_n=materialize(si.sh_n), uv=materialize(si.uv))

        # Emission seen along the ray, MIS-weighted against emitter sampling.
        if has_emitters:
            le, pdf_em = emission_along(scene, arrays, si, d, tables)
            w = jnp.where((depth == 0) | prev_delta, 1.0, power_heuristic(prev_pdf, pdf_em))
            visible = ~((depth == 0) & cfg.hide_emitters)
            L = L + jnp.where((active & visible)[:, None], beta * le * w[:, None], 0.0)

        active = active & si.valid & (depth + 1 < max_depth)
        frame = frame_at(si)
        wi = to_local(frame, -d)
        bsdfs = bsdfs_at(scene, si, frame)

        # Next-event estimation.
        if has_emitters:
            L = L + beta * next_event(scene, arrays, si, frame, wi, bsdfs, u[:, 0:3], tables, active)
        if edges is not None:
            # The visibility boundaries of that direct illumination (both
            # strategies: NEE here and the emission the BSDF sample finds)
            # and, where the path goes on to a vertex that does NEE, of the
            # light reflected once by what the BSDF sample sees.
            term = nee_edge_term(scene, arrays, edges, si, d, jax.random.fold_in(key, depth),
                                 indirect=active & (depth + 2 < max_depth))
            L = L + beta * jnp.where(active[:, None], term, 0.0)

        # BSDF sampling for the next bounce.
        bs = bsdfs.sample(wi, u[:, 3], u[:, 4:6])
        d_next, bs_weight, bs_pdf = sampled_direction(scene, si.uv, si.bsdf, si.sh_n, -d, bs, geometry_of(si))
        d_next, bs_weight, bs_pdf = materialize(d_next), materialize(bs_weight), materialize(bs_pdf)  # as si
        beta = beta * bs_weight
        eta = eta * bs.eta
        active = active & (bs.pdf > 0)

        beta, active = russian_roulette(cfg, depth, beta, eta, u[:, 6], active)
        o, d, beta = continue_paths(active, offset_origin(si.p, si.n, d_next), d_next, o, d, beta)
        # L in its own buffer each bounce: otherwise XLA fuses the whole sum
        # over bounces into one fusion after the loop, which recomputes every
        # bounce's NEE and emission terms per colour channel and keeps their
        # inputs alive (measured: 22% of a Cornell-box render).
        return o, d, beta, materialize(L), eta, active, bs_pdf, bm.is_delta(bs.flags)

    state = (
        origins, directions, jnp.ones((n, 3), f32), jnp.zeros((n, 3), f32), jnp.ones((n,), f32),
        jnp.ones((n,), bool), jnp.zeros((n,), f32), jnp.zeros((n,), bool),
    )
    # Unrolled: XLA:CPU runs fusions inside a while loop about 2x slower
    # (fewer threads, state copies), and the depth is small and static.
    state = jax.lax.fori_loop(0, max_depth, body, state, unroll=max_depth <= 16 if unroll is None else unroll)
    return jnp.nan_to_num(state[3], nan=0.0, posinf=0.0, neginf=0.0)
