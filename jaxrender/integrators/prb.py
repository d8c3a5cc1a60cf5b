"""Path replay backpropagation (Mitsuba 3's `prb`; Vicini, Speierer and
Jakob, "Path Replay Backpropagation", SIGGRAPH 2021).

`trace_paths_prb` returns exactly `path`'s estimate. Its reverse-mode rule
does not keep the forward pass's intermediate values: it traces every path
again from the camera with the same random numbers and, at each vertex k,
back-propagates the radiance cotangent through what depends on the scene's
parameters there, using the radiance still to come (the path's total minus
what it had gathered up to k) in place of the rest of the path:

    dL = sum_k beta_k d(NEE_k) + beta_{k+1} d(Le_{k+1} mis_{k+1})
                + T_{k+1} dW_k / W_k,

where beta_k is the throughput reaching vertex k, W_k the BSDF sample's
weight there (its derivative as in `bsdfs.sampled_direction`: eval at a
fixed direction over the detached pdf), and T_{k+1} all radiance the path
gathers after W_k. So gradient memory is that of one bounce, whatever
max_depth, and the backward sweep costs about one more primal pass plus
the shading derivatives.

As in Mitsuba's `prb`, a vertex whose BSDF weight is zero (a black
reflectance) contributes no derivative: T_{k+1} dW_k / W_k is undefined
there and the path gathers nothing after it. `path` (ordinary reverse
mode) differentiates such parameters.

The replay regenerates paths as trace_paths' render does (a batch of rows;
a row whose path has ended takes the next sample), so its work follows the
paths' lengths, not max_depth.

Replay needs the path's vertices to be independent of the parameters being
differentiated. When vertex positions, `to_world` or the camera carry a
cotangent (geometry derivatives), the rule falls back to ordinary reverse
mode over `path` (memory linear in max_depth again), so every parameter
stays differentiable. Being a `jax.custom_vjp`, it has no forward mode:
`jax.jvp` through `prb` raises; use `path` for derivative images.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name
from jax.custom_derivatives import SymbolicZero

from jaxrender.integrators import bsdf_math as bm
from jaxrender.integrators._math import NumpyLeaves, zero_nonfinite
from jaxrender.integrators.bsdfs import sampled_direction
from jaxrender.integrators.interaction import bsdfs_at, frame_at, geometry_of, offset_origin, surface_interaction, trace
from jaxrender.integrators.lights import emission_along, light_tables, next_event
from jaxrender.integrators.path import (
    continue_paths,
    depth_limit,
    hash_uniform,
    refill,
    regenerate_rows,
    russian_roulette,
    trace_paths,
)
from jaxrender.integrators.warp import power_heuristic, to_local

# The name of the one residual of replay worth keeping across passes.
RESIDUAL_NAME = "jaxrender_prb_radiance"


def trace_paths_prb(scene, arrays, cfg, origins, directions, key, t_max=None, boundary=False):
    """`trace_paths` (same arguments, same value) with path replay as its
    reverse-mode derivative. boundary: as trace_paths' (the shadow-edge term
    moves with geometry and the camera only, so it lives in the fallback)."""
    # numpy leaves (the prepared scene's face tables) are static: they stay
    # out of the custom rule's arguments.
    held, passed = NumpyLeaves.split((scene, arrays, origins, directions, t_max))
    return _replayed(_Static(cfg, held, boundary), key, *passed)


def _fill(mask, taken, others):
    """A list as long as mask: the next of `taken` where mask is true, the
    matching entry of `others` (None: all None) where it is false."""
    it = iter(taken)
    others = [None] * len(mask) if others is None else others
    return [next(it) if m else o for m, o in zip(mask, others)]


class _Static:
    """The non-array part of _replayed's input: config, boundary flag and
    the held tree (`NumpyLeaves`)."""

    def __init__(self, cfg, held, boundary):
        self.cfg, self.held, self.boundary = cfg, held, boundary
        self.num_leaves = held.passed_count()
        # Leaves after the scene's: prepared geometry and camera rays.
        self.num_scene = held.passed_count(held.treedef.children()[0].num_leaves)

    def unflatten(self, leaves):
        return self.held.unflatten(leaves)


def _forward(static, key, *leaves):
    scene, arrays, origins, directions, t_max = static.unflatten(leaves)
    return trace_paths(scene, arrays, static.cfg, origins, directions, key, t_max, boundary=static.boundary)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _replayed(static, key, *leaves):
    # Not differentiated: path's regenerating loop, as path runs it.
    return _forward(static, key, *leaves)


class _Fallback(NamedTuple):
    vjp: object  # jax.vjp's function (a pytree), over the perturbed leaves
    constant: list  # None where perturbed


class _Replay(NamedTuple):
    key: jax.Array
    differentiated: list  # the flat leaves, None where not perturbed
    constant: list  # the others, None where perturbed
    radiance: jax.Array


def _replayed_fwd(static, key, *leaves):
    values = [x.value for x in leaves]
    key = key.value
    # Leaves after the scene's belong to the prepared geometry and the camera
    # rays: replay needs them constant. Any geometry leaf of the scene is
    # perturbed exactly when the prepared arrays are.
    if any(x.perturbed for x in leaves[static.num_scene:]):
        # Only the perturbed leaves are differentiated (the BVH's arrays, for
        # one, have no derivative rule).
        which = [x.perturbed for x in leaves]

        def plain(*perturbed):
            return _forward(static, key, *_fill(which, perturbed, values))

        value, vjp = jax.vjp(plain, *[v for w, v in zip(which, values) if w])
        return value, _Fallback(vjp, [None if w else v for w, v in zip(which, values)])
    # Rolled (path.py's default): the replay keeps this pass's memory bounded.
    value = _forward(static, key, *values)
    differentiated = [x.value if x.perturbed else None for x in leaves]
    constant = [None if x.perturbed else x.value for x in leaves]
    # Named so that render's checkpointed passes keep it (RESIDUAL_NAME):
    # 12 bytes per sample, where recomputing it costs a primal render.
    return value, _Replay(key, differentiated, constant, checkpoint_name(value, RESIDUAL_NAME))


def _replayed_bwd(static, res, ct):
    if isinstance(ct, SymbolicZero):
        return (None,) * (1 + static.num_leaves)
    if isinstance(res, _Fallback):
        return (None, *_fill([c is None for c in res.constant], res.vjp(ct), None))
    which = [x is not None for x in res.differentiated]
    diff = [x for x in res.differentiated if x is not None]

    def rebuild(diff_values):
        return static.unflatten(_fill(which, diff_values, res.constant))

    grads = _replay(static.cfg, rebuild, diff, res.key, res.radiance, ct)
    return (None, *_fill(which, grads, None))


_replayed.defvjp(_replayed_fwd, _replayed_bwd, symbolic_zeros=True)


def _replay(cfg, rebuild, diff, key, radiance, ct):
    """Cotangents of the differentiated leaves `diff` given the radiance
    cotangent ct (N, 3), by re-tracing the paths (see the module docstring)."""
    scene, arrays, origins, directions, t_max = rebuild(
        [jax.lax.stop_gradient(x) for x in diff])
    n = origins.shape[0]
    max_depth = depth_limit(cfg)
    if max_depth == 0:
        return [jnp.zeros_like(x) for x in diff]
    has_emitters = len(scene.emitters) > 0
    seed = jax.random.bits(key, (), jnp.uint32)
    ct = jnp.nan_to_num(ct)
    # The forward pass replaced non-finite radiance by 0; so does the rest.
    radiance = zero_nonfinite(radiance)
    sg = jax.lax.stop_gradient

    def scene_of(diff_values):
        return rebuild(diff_values)[0]

    # The emission seen directly (depth 0).
    hit = trace(arrays, origins, directions, t_max)
    si = surface_interaction(arrays, hit, origins, directions)
    if has_emitters and not cfg.hide_emitters:
        def seen(diff_values):
            s = scene_of(diff_values)
            le = emission_along(s, arrays, si, directions, light_tables(s, arrays))[0]
            return jnp.sum(ct * le), le
        _, vjp, le = jax.vjp(seen, diff, has_aux=True)
        grads = vjp(jnp.float32(1.0))[0]
        gathered = le
    else:
        grads = [jnp.zeros_like(x) for x in diff]
        gathered = jnp.zeros((n, 3), jnp.float32)

    # Paths are regenerated as in trace_paths' render: a batch of rows
    # replays vertices, and a row whose path has ended takes the next
    # sample, so the work follows the paths' lengths, not max_depth. Each
    # row carries its ray's surface interaction (found by the vertex before,
    # which needs it for the emission there) and its sample's radiance and
    # cotangent.
    if max_depth == 1:
        return grads
    rows = regenerate_rows(n)
    f32 = jnp.float32

    def fresh(src):
        return _Row(origins[src], directions[src], jax.tree.map(lambda x: x[src], si),
                    jnp.ones((rows, 3), f32), gathered[src], jnp.ones((rows,), f32),
                    jnp.ones((rows,), bool), radiance[src], ct[src], src, jnp.zeros((rows,), jnp.int32))

    def cond(state):
        taken, row, _ = state
        return (taken < n) | jnp.any(row.active)

    def body(state):
        taken, row, grads = state
        # The last vertex (depth max_depth - 1) only adds emission, which the
        # vertex before it accounts for: max_depth - 1 replayed vertices.
        free = ~(row.active & (row.depth < max_depth - 1))
        taken, _, _, row = refill(taken, free, n, fresh, row)
        o, d, si, beta, gathered, eta, active, radiance, ct, sample, depth = row
        u = hash_uniform(seed, depth, rows, 7, sample)
        active = active & si.valid & (depth < max_depth - 1)

        def vertex(diff_values):
            s = scene_of(diff_values)
            tables = light_tables(s, arrays)
            frame = frame_at(si)
            wi = to_local(frame, -d)
            bsdfs = bsdfs_at(s, si, frame)
            nee = 0.0
            if has_emitters:
                nee = next_event(s, arrays, si, frame, wi, bsdfs, u[:, 0:3], tables, active)
            bs = bsdfs.sample(wi, u[:, 3], u[:, 4:6])
            d_next, weight, pdf = sampled_direction(s, si.uv, si.bsdf, si.sh_n, -d, bs, geometry_of(si))
            d_next = sg(d_next)
            beta_next, active_next = russian_roulette(
                cfg, depth, beta * sg(weight), eta * bs.eta, u[:, 6], active & (bs.pdf > 0))
            o_next, d_next, beta_next = continue_paths(
                active_next, offset_origin(si.p, si.n, d_next), d_next, o, d, beta_next)
            hit_next = trace(arrays, o_next, d_next, jnp.where(active_next, jnp.inf, 0.0))
            si_next = surface_interaction(arrays, hit_next, o_next, d_next)
            emitted = 0.0
            if has_emitters:
                le, pdf_em = emission_along(s, arrays, si_next, d_next, tables)
                mis = jnp.where(bm.is_delta(bs.flags), 1.0, power_heuristic(pdf, pdf_em))
                emitted = jnp.where(active_next[:, None], le * mis[:, None], 0.0)
            # What the path gathers after W_k: everything it gathered in
            # total, minus what it had before this vertex and this NEE.
            later = radiance - gathered - beta * sg(nee)
            w = sg(weight)
            ratio = jnp.where(active_next[:, None] & (w != 0), weight / jnp.where(w != 0, w, 1.0), 0.0)
            objective = jnp.sum(ct * (beta * nee + beta_next * emitted + later * ratio))
            gathered_next = gathered + beta * sg(nee) + beta_next * sg(emitted)
            return objective, row._replace(o=o_next, d=d_next, si=si_next, beta=beta_next,
                                           gathered=gathered_next, eta=eta * bs.eta, active=active_next,
                                           depth=depth + 1)

        _, vjp, after = jax.vjp(vertex, diff, has_aux=True)
        step = vjp(jnp.float32(1.0))[0]
        return taken, after, [g + s for g, s in zip(grads, step)]

    idle = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), jax.eval_shape(fresh, jnp.zeros((rows,), jnp.int32)))
    _, _, grads = jax.lax.while_loop(cond, body, (jnp.int32(0), idle, grads))
    return grads


class _Row(NamedTuple):
    """A replayed path's state (one row per path)."""

    o: jax.Array
    d: jax.Array
    si: object  # the Interaction at the end of (o, d)
    beta: jax.Array
    gathered: jax.Array  # radiance gathered before this vertex
    eta: jax.Array
    active: jax.Array
    radiance: jax.Array  # the sample's total radiance (forward pass)
    ct: jax.Array  # and its cotangent
    sample: jax.Array  # the sample's index (its random numbers)
    depth: jax.Array
