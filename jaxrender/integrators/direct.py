"""Mitsuba's `direct` integrator: emission seen directly plus
`emitter_samples` emitter samples and `bsdf_samples` BSDF samples at the
first hit, combined with the power heuristic on sample-count-weighted
densities (Mitsuba's m_frac_lum / m_frac_bsdf) and averaged per strategy.
With one sample of each it is the same estimator as `path` at max_depth 2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrender.integrators import bsdf_math as bm
from jaxrender.integrators._math import zero_nonfinite
from jaxrender.integrators.bsdfs import sampled_direction
from jaxrender.integrators.interaction import bsdfs_at, frame_at, geometry_of, offset_origin, surface_interaction, trace
from jaxrender.integrators.lights import emission_along, light_tables, next_event
from jaxrender.integrators.path import hash_uniform
from jaxrender.integrators.warp import power_heuristic, to_local


def mis_shares(cfg) -> tuple[float, float]:
    """The shares of emitter and BSDF samples weighing `direct`'s MIS
    (Mitsuba's m_frac_lum, m_frac_bsdf)."""
    total = max(cfg.emitter_samples + cfg.bsdf_samples, 1)
    return cfg.emitter_samples / total, cfg.bsdf_samples / total


def trace_direct(scene, arrays, cfg, origins, directions, key, t_max=None):
    """Radiance (N, 3) along camera rays with Mitsuba's direct-illumination estimator."""
    n = origins.shape[0]
    n_em, n_bsdf = cfg.emitter_samples, cfg.bsdf_samples
    frac_em, frac_bsdf = mis_shares(cfg)
    tables = light_tables(scene, arrays)
    seed = jax.random.bits(key, (), jnp.uint32)
    u = hash_uniform(seed, 0, n, 3 * n_em + 3 * n_bsdf + 1)

    hit = trace(arrays, origins, directions, t_max)
    si = surface_interaction(arrays, hit, origins, directions)
    L = jnp.zeros((n, 3), jnp.float32)
    if not scene.emitters:
        return L
    if not cfg.hide_emitters:
        L = L + emission_along(scene, arrays, si, directions, tables)[0]
    frame = frame_at(si)
    wi = to_local(frame, -directions)
    bsdfs = bsdfs_at(scene, si, frame)

    for j in range(n_em):
        L = L + next_event(scene, arrays, si, frame, wi, bsdfs, u[:, 3 * j:3 * j + 3], tables,
                           si.valid, frac_em, frac_bsdf) / n_em

    for j in range(n_bsdf):
        uj = u[:, 3 * n_em + 3 * j:3 * n_em + 3 * j + 3]
        bs = bsdfs.sample(wi, uj[:, 0], uj[:, 1:3])
        d2, bs_weight, bs_pdf = sampled_direction(scene, si.uv, si.bsdf, si.sh_n, -directions, bs, geometry_of(si))
        o2 = offset_origin(si.p, si.n, d2)
        ok = si.valid & (bs.pdf > 0)
        hit2 = trace(arrays, o2, d2)
        si2 = surface_interaction(arrays, hit2, o2, d2)
        le, pdf_em = emission_along(scene, arrays, si2, d2, tables)
        delta = bm.is_delta(bs.flags)
        w = jnp.where(delta, 1.0, power_heuristic(bs_pdf * frac_bsdf, pdf_em * frac_em))
        L = L + jnp.where(ok[:, None], bs_weight * le * (w / n_bsdf)[:, None], 0.0)
    return zero_nonfinite(L)
