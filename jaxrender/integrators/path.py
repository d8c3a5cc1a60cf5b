"""Unidirectional path tracing with next-event estimation and MIS (Mitsuba's
`path`), wavefront style: every bounce is one closest-hit query, one shading
step over the whole batch and one shadow query, inside `lax.fori_loop`.

`direct` has its own estimator (direct.py, any number of emitter and BSDF
samples); with one of each it equals `path` at max_depth 2.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from jaxrender.integrators import bsdf_math as bm
from jaxrender.integrators._math import NumpyLeaves, jvp_nonzero, materialize, zero_nonfinite
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


def depth_limit(cfg: IntegratorConfig) -> int:
    """The bounces a path takes at most: max_depth, or UNBOUNDED_DEPTH for -1."""
    return cfg.max_depth if cfg.max_depth >= 0 else UNBOUNDED_DEPTH


def hash_uniform(seed, depth, n, k, samples=None):
    """(n, k) uniforms in [0, 1) from a counter-based integer hash (PCG's
    output permutation over (seed, depth, sample, dimension)). The seed comes
    from the pass's jax.random key, so the same key still gives the same
    image; this costs a few integer ops per number where threefry costs ~20
    rounds, which was ~20% of a bounce on the CPU. samples (n,): each row's
    sample index (default 0..n-1); depth: a scalar or one per row. A
    sample's numbers at a depth are the same wherever its row is."""
    samples = jnp.arange(n, dtype=jnp.uint32) if samples is None else samples.astype(jnp.uint32)
    idx = samples[:, None] * jnp.uint32(k) + jnp.arange(k, dtype=jnp.uint32)[None, :]
    depth = jnp.asarray(depth, jnp.uint32)
    x = idx ^ (seed + (depth[:, None] if depth.ndim else depth) * jnp.uint32(0x9E3779B9))
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
                t_max=None, boundary=False):
    """Radiance (N, 3) along camera rays (N, 3) + (N, 3), one path each;
    t_max (N,) bounds the camera rays (the far clip plane).

    Not differentiated, paths are regenerated (`_regenerated`): the work
    follows the paths' lengths, not max_depth (Mitsuba's default max_depth
    of -1 runs up to UNBOUNDED_DEPTH bounces), and memory is that of one
    bounce of a quarter of the paths. Derivatives (jvp, and grad through
    it) go through the fixed loop (`_trace_fixed`), max_depth bounces over
    all N paths; both give the same radiance (the same random numbers per
    sample and bounce). The fixed loop is rolled: one bounce is compiled
    once, and the Cornell box's derivatives compile 1.7-2.7x faster and
    run as fast or faster than unrolled (benchmarks/RESULTS.md, fifteenth
    session). boundary: add the direct-illumination boundary term
    (shadow edges, `nee_edge_term`) at every vertex of the fixed loop; it
    is zero in value and has only a derivative."""
    max_depth = depth_limit(cfg)
    if max_depth <= 1 or origins.shape[0] == 0:
        # Nothing to regenerate: at most one bounce, or no samples.
        return _trace_fixed(scene, arrays, cfg, origins, directions, key, t_max, boundary)
    # numpy leaves (the prepared scene's face tables) are static: they stay
    # out of the custom rule's arguments.
    held, passed = NumpyLeaves.split((scene, arrays, origins, directions, t_max))

    def fixed(key, *leaves):
        scene, arrays, origins, directions, t_max = held.unflatten(leaves)
        return _trace_fixed(scene, arrays, cfg, origins, directions, key, t_max, boundary)

    @jax.custom_jvp
    def run(key, *leaves):
        scene, arrays, origins, directions, t_max = held.unflatten(leaves)
        return _regenerated(scene, arrays, cfg, origins, directions, key, t_max)

    @functools.partial(run.defjvp, symbolic_zeros=True)
    def _(primals, tangents):
        if all(isinstance(t, SymbolicZero) for t in tangents[1:]):
            value = run(*primals)
            return value, jnp.zeros_like(value)
        return jvp_nonzero(functools.partial(fixed, primals[0]), primals[1:], tangents[1:])

    return run(key, *passed)


class _Paths(NamedTuple):
    """The bounce loop's state, one row per path."""

    o: jax.Array  # (n, 3) the next ray
    d: jax.Array
    beta: jax.Array  # (n, 3) throughput, 0 once the path has ended
    L: jax.Array  # (n, 3) radiance gathered
    eta: jax.Array  # (n,) relative IOR product (Russian roulette)
    active: jax.Array  # (n,) bool
    prev_pdf: jax.Array  # (n,) the last BSDF sample's pdf (MIS of emission)
    prev_delta: jax.Array  # (n,) bool, that sample was specular

    @classmethod
    def start(cls, origins, directions):
        n = origins.shape[0]
        return cls(origins, directions, jnp.ones((n, 3), jnp.float32), jnp.zeros((n, 3), jnp.float32),
                   jnp.ones((n,), jnp.float32), jnp.ones((n,), bool), jnp.zeros((n,), jnp.float32),
                   jnp.zeros((n,), bool))


def _bouncer(scene: Scene, arrays: SceneArrays, cfg: IntegratorConfig, key, edges):
    """The path tracer's bounce: `bounce(depth, paths, far, samples)` traces
    every active path one vertex on and returns the next _Paths. depth: the
    paths' depth (a scalar, or one per path), far (n,): the rays' t_max,
    samples (n,): each row's sample index for the random numbers (None:
    the row index). edges: shadow_edges' table for the boundary term (fixed
    loop only: its random numbers are per depth), or None."""
    max_depth = depth_limit(cfg)
    has_emitters = len(scene.emitters) > 0
    tables = light_tables(scene, arrays)
    seed = jax.random.bits(key, (), jnp.uint32)

    def bounce(depth, paths: _Paths, far, samples=None) -> _Paths:
        o, d, beta, L, eta, active, prev_pdf, prev_delta = paths
        u = hash_uniform(seed, depth, o.shape[0], 7, samples)
        # Ended paths trace nothing (t_max 0: the kernel returns at once);
        # they used to re-trace their last ray every bounce.
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
            # Ended rows (every row at the last depth) sample no edge.
            term = nee_edge_term(scene, arrays, edges, si, d, jax.random.fold_in(key, depth),
                                 indirect=active & (depth + 2 < max_depth), active=active)
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
        return _Paths(o, d, beta, materialize(L), eta, active, bs_pdf, bm.is_delta(bs.flags))

    return bounce


def _trace_fixed(scene, arrays, cfg, origins, directions, key, t_max, boundary):
    """trace_paths as max_depth bounces over all N paths (a fori_loop), the
    form that jvp and grad go through."""
    max_depth = depth_limit(cfg)
    has_emitters = len(scene.emitters) > 0
    edges = shadow_edges(arrays) if boundary and has_emitters and arrays.faces.shape[0] else None
    bounce = _bouncer(scene, arrays, cfg, key, edges)

    def body(depth, paths):
        far = jnp.inf if t_max is None else jnp.where(depth == 0, t_max, jnp.inf)
        return bounce(depth, paths, far)

    # Rolled: unrolled, XLA:CPU compiled a differentiated Cornell box 2.6x
    # slower and ran its gradient 2x slower (fifteenth session, RESULTS.md).
    paths = jax.lax.fori_loop(0, max_depth, body, _Paths.start(origins, directions))
    return zero_nonfinite(paths.L)


# Rows of a regenerating loop per sample it traces (at least
# REGENERATE_MIN_ROWS): fewer rows leave fewer rows idle while the last paths
# finish, but take more loop iterations, each with a fixed cost. A quarter
# measured fastest on the Cornell box (benchmarks/RESULTS.md).
REGENERATE_SHARE = 4
REGENERATE_MIN_ROWS = 1024


def regenerate_rows(n: int) -> int:
    """How many rows a regenerating loop over n samples runs."""
    return min(n, max(REGENERATE_MIN_ROWS, -(-n // REGENERATE_SHARE)))


def refill(taken, free, n, fresh, state):
    """Path regeneration's step: the rows where `free` (rows,) take the next
    samples taken, taken + 1, ... below n, in row order. fresh(src) gives
    the new rows' state (a pytree like `state`, rows first) for sample
    indices src (rows,), clipped to n - 1 where no sample is left.
    Returns (taken after, started (rows,) bool, the started rows' sample
    indices, state with those rows replaced)."""
    rank = jnp.cumsum(free.astype(jnp.int32)) - 1
    new = taken + rank
    started = free & (new < n)
    rows = fresh(jnp.minimum(new, n - 1))
    state = jax.tree.map(lambda a, b: jnp.where(started.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), rows, state)
    return jnp.minimum(taken + rank[-1] + 1, n), started, new, state


def _regenerated(scene, arrays, cfg, origins, directions, key, t_max):
    """trace_paths' value (no boundary term, no derivative) by path
    regeneration: a batch of rows smaller than N runs bounces while samples
    wait, and a row whose path has ended takes the next camera ray. A while
    loop runs until every path has ended, so the work is the paths' total
    length plus one batch's tail, where the fixed loop shades every path at
    every depth up to max_depth. Each sample keeps its random numbers
    (hash_uniform by sample and depth), so the radiance equals the fixed
    loop's."""
    n = origins.shape[0]
    rows = regenerate_rows(n)
    bounce = _bouncer(scene, arrays, cfg, key, None)
    f32 = jnp.float32
    far0 = jnp.full((n,), jnp.inf, f32) if t_max is None else t_max

    def fresh(src):
        return _Paths.start(origins[src], directions[src]), jnp.zeros_like(src), far0[src]

    def cond(state):
        taken, _, paths, _, _, _ = state
        return (taken < n) | jnp.any(paths.active)

    def body(state):
        taken, sample, paths, depth, far, out = state
        free = ~paths.active
        # Ended paths hand in their radiance (rows without a sample: index n,
        # dropped) and take the next camera rays.
        out = out.at[jnp.where(free, sample, n)].set(paths.L, mode="drop")
        taken, started, new, (paths, depth, far) = refill(taken, free, n, fresh, (paths, depth, far))
        sample = jnp.where(started, new, jnp.where(free, n, sample))
        paths = bounce(depth, paths, jnp.where(depth == 0, far, jnp.inf), sample)
        return taken, sample, paths, depth + 1, far, out

    idle = _Paths.start(jnp.zeros((rows, 3), f32), jnp.zeros((rows, 3), f32))._replace(
        active=jnp.zeros((rows,), bool))
    state = (jnp.int32(0), jnp.full((rows,), n, jnp.int32), idle, jnp.zeros((rows,), jnp.int32),
             jnp.zeros((rows,), f32), jnp.zeros((n, 3), f32))
    _, sample, paths, _, _, out = jax.lax.while_loop(cond, body, state)
    return zero_nonfinite(out.at[sample].set(paths.L, mode="drop"))
