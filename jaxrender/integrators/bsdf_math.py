"""Evaluation, density and sampling of Mitsuba 3's BSDFs, as pure functions.

For each BSDF kind X there are three functions of arrays, in the *local*
shading frame (shading normal +z, tangent +x as `warp.make_frame`):

  eval_X(*params, wi, wo)      -> (..., 3) BSDF value times |cos(theta_o)|
  pdf_X(*params, wi, wo)       -> (...)    solid-angle density of sample_X
  sample_X(*params, wi, u1, u2) -> BSDFSample(wo, weight, pdf, eta, flags)

`wi` points away from the surface towards where the light goes (the camera
side), `wo` away from the surface towards where it comes from, as in Mitsuba
(radiance transport mode). `u1` (...) and `u2` (..., 2) are uniform samples;
Mitsuba's `sample(ctx, si, sample1, sample2)` gets the same numbers and,
formulas being the same, returns the same direction and weight.

Parameters are arrays that broadcast against the batch (leading axes of
`wi`): roughness, eta and sampling weights as (...) scalars, colours as
(..., 3) (a 0-d scalar is grey). Texture lookups are the caller's business:
pass the values at each shading point. Static options (`distribution`,
`nonlinear`) are keyword arguments.

Conventions, as in Mitsuba:
- The one-sided BSDFs (diffuse, conductor, roughconductor, plastic,
  roughplastic) are black when cos(theta_i) <= 0 and only reflect into the
  upper hemisphere; wrap them with `twosided` for Mitsuba's `twosided`.
  Dielectrics scatter from both sides (eta is interior / exterior IOR, +z
  pointing outside).
- `eval` includes the cosine foreshortening factor |cos(theta_o)|; `weight`
  of a sample is eval / pdf (for delta lobes: the lobe's value / its
  selection probability).
- Delta lobes (smooth conductor, dielectric, plastic's coating, thin
  dielectric) have eval = pdf = 0; `sample` returns the delta direction, the
  lobe's selection probability as `pdf` and a `flags` value with a delta bit
  set (`is_delta(flags)`), so the integrator skips MIS for it.
- A sample with pdf == 0 is invalid (weight is then 0): e.g. a reflection
  below the horizon. Mitsuba sometimes leaves a nonzero pdf on such a
  zero-weight sample; here pdf is 0 exactly where the sample is not counted
  by `pdf_X`, so histograms of valid samples match `pdf_X`.

Derivatives: everything is differentiable (forward and reverse mode) with
respect to the BSDF parameters, wi, wo and the samples, and NaN-free also at
normal incidence, grazing angles and alpha at its clamp (guarded divisions
and square roots, see `_math`). A sampled direction is a differentiable
function of (wi, u, parameters) (reparameterization); integrators that want
Mitsuba's detached-sample estimators stop the gradient of `wo` and re-evaluate
`eval_X`/`pdf_X`. Discrete lobe choices are made with their probability held
constant in the weight's derivative: dielectric, roughdielectric and
thindielectric weights are 1 in value with derivative dF / F of the chosen
lobe (Mitsuba's `replace_grad(1, F / detach(F))` for dielectrics); plastic
divides by the held selection probability. The roughplastic weight is the
mixture eval / pdf, differentiated as such.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrender.integrators._math import (
    INV_PI,
    as_float,
    dot,
    one_with_log_derivative,
    safe_div,
    safe_normalize,
    spectrum,
    vec3,
)
from jaxrender.integrators.fresnel import (
    fresnel_conductor,
    fresnel_dielectric,
    fresnel_diffuse_reflectance,
    reflect,
    refract,
)
from jaxrender.integrators.microfacet import Microfacet
from jaxrender.integrators.warp import (
    square_to_cosine_hemisphere,
    square_to_cosine_hemisphere_pdf,
)

# --------------------------------------------------------------------------
# Sampled-lobe flags: Mitsuba's BSDFFlags bit values.

NULL = 1
DIFFUSE_REFLECTION = 2
DIFFUSE_TRANSMISSION = 4
GLOSSY_REFLECTION = 8
GLOSSY_TRANSMISSION = 16
DELTA_REFLECTION = 32
DELTA_TRANSMISSION = 64
DELTA = NULL | DELTA_REFLECTION | DELTA_TRANSMISSION
REFLECTION = DIFFUSE_REFLECTION | GLOSSY_REFLECTION | DELTA_REFLECTION
TRANSMISSION = NULL | DIFFUSE_TRANSMISSION | GLOSSY_TRANSMISSION | DELTA_TRANSMISSION


def is_delta(flags):
    """True where a sampled lobe is a Dirac delta (no MIS, eval/pdf are 0)."""
    return (flags & DELTA) != 0


class BSDFSample(NamedTuple):
    """A sampled scattering direction.

    wo: (..., 3) unit direction in the local frame.
    weight: (..., 3) eval / pdf (0 for invalid samples).
    pdf: (...) solid-angle density, or the discrete lobe probability of a
      delta lobe; 0 marks an invalid sample.
    eta: (...) relative IOR along the path (eta_it for a refraction, else 1),
      for Russian roulette as in Mitsuba.
    flags: (...) int32, the sampled lobe (one of the flag constants).
    """

    wo: jax.Array
    weight: jax.Array
    pdf: jax.Array
    eta: jax.Array
    flags: jax.Array


class BSDFFunctions(NamedTuple):
    """The (eval, pdf, sample) triple of one BSDF kind."""

    eval: Callable
    pdf: Callable
    sample: Callable


# --------------------------------------------------------------------------
# Helpers.


def _cos(v):
    return v[..., 2]


def _rgb(x, batch):
    """A colour parameter broadcast to batch + (3,)."""
    x = spectrum(x)
    return jnp.broadcast_to(x, jnp.broadcast_shapes(batch + (3,), x.shape))


def _masked(active, value):
    """value where active, else 0; value (..., 3) or (...)."""
    if value.ndim == active.ndim + 1:
        active = active[..., None]
    return jnp.where(active, value, 0)


def _finish(wo, weight, pdf, eta, flags, valid):
    batch = pdf.shape
    valid = valid & (pdf > 0)
    return BSDFSample(
        wo=wo,
        weight=_masked(valid, weight),
        pdf=jnp.where(valid, pdf, 0),
        eta=jnp.broadcast_to(as_float(eta), batch),
        flags=jnp.broadcast_to(jnp.asarray(flags, jnp.int32), batch),
    )


def _batch(*vs):
    return jnp.broadcast_shapes(*(v.shape[:-1] for v in vs))


# --------------------------------------------------------------------------
# diffuse


def eval_diffuse(reflectance, wi, wo):
    """Lambertian: reflectance / pi * cos(theta_o) when wi and wo are above
    the surface. Differentiable in reflectance, wo."""
    wi, wo = as_float(wi), as_float(wo)
    active = (_cos(wi) > 0) & (_cos(wo) > 0)
    value = _rgb(reflectance, _batch(wi, wo)) * (INV_PI * _cos(wo))[..., None]
    return _masked(active, value)


def pdf_diffuse(reflectance, wi, wo):
    """Cosine-weighted hemisphere density cos(theta_o) / pi (0 below)."""
    del reflectance
    wi, wo = as_float(wi), as_float(wo)
    active = (_cos(wi) > 0) & (_cos(wo) > 0)
    return jnp.where(active, square_to_cosine_hemisphere_pdf(wo), 0)


def sample_diffuse(reflectance, wi, u1, u2):
    """Cosine-weighted sampling; weight = reflectance."""
    del u1
    wi = as_float(wi)
    wo = square_to_cosine_hemisphere(u2)
    batch = _batch(wi, wo)
    wo = jnp.broadcast_to(wo, batch + (3,))
    pdf = square_to_cosine_hemisphere_pdf(wo)
    active = _cos(wi) > 0
    return _finish(wo, _rgb(reflectance, batch), pdf, 1.0, DIFFUSE_REFLECTION, active)


# --------------------------------------------------------------------------
# conductor (smooth): a single delta lobe.


def eval_conductor(eta, k, specular_reflectance, wi, wo):
    """0: a smooth conductor is a delta lobe (see `sample_conductor`)."""
    del eta, k, specular_reflectance
    batch = _batch(as_float(wi), as_float(wo))
    return jnp.zeros(batch + (3,), as_float(wi).dtype)


def pdf_conductor(eta, k, specular_reflectance, wi, wo):
    """0: a smooth conductor is a delta lobe."""
    del eta, k, specular_reflectance
    batch = _batch(as_float(wi), as_float(wo))
    return jnp.zeros(batch, as_float(wi).dtype)


def sample_conductor(eta, k, specular_reflectance, wi, u1, u2):
    """Mirror reflection; weight = specular_reflectance * F_conductor(cos_i).

    Args:
      eta, k: (..., 3) complex relative IOR (eta = 0, k = 1 is Mitsuba's
        perfect mirror, material "none"). Differentiable.
      specular_reflectance: (..., 3). Differentiable.
    """
    del u1, u2
    wi = as_float(wi)
    batch = wi.shape[:-1]
    cos_i = _cos(wi)
    wo = reflect(wi)
    weight = _rgb(specular_reflectance, batch) * fresnel_conductor(cos_i, eta, k)
    pdf = jnp.ones(batch, wi.dtype)
    return _finish(wo, weight, pdf, 1.0, DELTA_REFLECTION, cos_i > 0)


# --------------------------------------------------------------------------
# roughconductor


def eval_roughconductor(alpha_u, alpha_v, eta, k, specular_reflectance, wi, wo, *,
                        distribution="beckmann"):
    """Microfacet metal: F(wi.h) D(h) G(wi, wo, h) / (4 cos_i) * specular.

    Args:
      alpha_u, alpha_v: (...) roughness (pass alpha_v = alpha_u for an
        isotropic surface). Differentiable.
      eta, k: (..., 3) complex relative IOR. Differentiable.
      specular_reflectance: (..., 3). Differentiable.
      distribution: "beckmann" (Mitsuba's default) or "ggx" (static).
    """
    wi, wo = as_float(wi), as_float(wo)
    cos_i, cos_o = _cos(wi), _cos(wo)
    active = (cos_i > 0) & (cos_o > 0)
    h = safe_normalize(wo + wi)
    distr = Microfacet.create(distribution, alpha_u, alpha_v)
    d = distr.D(h)
    active = active & (d != 0)
    g = distr.G(wi, wo, h)
    value = safe_div(d * g, 4 * cos_i)
    f = fresnel_conductor(dot(wi, h), eta, k)
    spec = _rgb(specular_reflectance, _batch(wi, wo))
    return _masked(active, f * value[..., None] * spec)


def pdf_roughconductor(alpha_u, alpha_v, eta, k, specular_reflectance, wi, wo, *,
                       distribution="beckmann"):
    """Density of `sample_roughconductor`: D(h) G1(wi, h) / (4 cos_i)."""
    del eta, k, specular_reflectance
    wi, wo = as_float(wi), as_float(wo)
    cos_i, cos_o = _cos(wi), _cos(wo)
    m = safe_normalize(wo + wi)
    # The micro and macro surface must agree on the side (as smith_g1 does).
    active = (cos_i > 0) & (cos_o > 0) & (dot(wi, m) > 0) & (dot(wo, m) > 0)
    distr = Microfacet.create(distribution, alpha_u, alpha_v)
    result = safe_div(distr.D(m) * distr.G1(wi, m), 4 * cos_i)
    return jnp.where(active, result, 0)


def sample_roughconductor(alpha_u, alpha_v, eta, k, specular_reflectance, wi, u1, u2, *,
                          distribution="beckmann"):
    """Visible-normal sampling; weight = F G1(wo, m) * specular."""
    del u1
    wi = as_float(wi)
    cos_i = _cos(wi)
    distr = Microfacet.create(distribution, alpha_u, alpha_v)
    m, pdf = distr.sample(wi, u2)
    wo = reflect(wi, m)
    active = (cos_i > 0) & (pdf != 0) & (_cos(wo) > 0)
    weight = distr.G1(wo, m)
    # Jacobian of the half-vector mapping.
    pdf = safe_div(pdf, 4 * dot(wo, m))
    f = fresnel_conductor(dot(wi, m), eta, k)
    spec = _rgb(specular_reflectance, wo.shape[:-1])
    return _finish(wo, f * weight[..., None] * spec, pdf, 1.0, GLOSSY_REFLECTION, active)


# --------------------------------------------------------------------------
# plastic (smooth coating over a diffuse base)


def plastic_specular_sampling_weight(diffuse_mean, specular_mean=1.0):
    """Mitsuba's (rough)plastic `specular_sampling_weight`: s / (d + s), from
    the means over the whole texture of the diffuse and specular reflectance
    (a per-BSDF constant, not a per-point value; Mitsuba's default specular
    reflectance is 1)."""
    d = as_float(diffuse_mean)
    s = as_float(specular_mean)
    return safe_div(s, d + s)


def _plastic_diffuse(diffuse_reflectance, internal_reflectance, nonlinear, batch):
    diff = _rgb(diffuse_reflectance, batch)
    fdr = as_float(internal_reflectance)[..., None]
    denom = 1 - (diff * fdr if nonlinear else fdr)
    return safe_div(diff, denom)


def _plastic_probs(f_i, weight):
    prob_specular = f_i * weight
    prob_diffuse = (1 - f_i) * (1 - weight)
    prob_specular = safe_div(prob_specular, prob_specular + prob_diffuse)
    return prob_specular, 1 - prob_specular


def eval_plastic(diffuse_reflectance, specular_reflectance, eta, specular_sampling_weight,
                 wi, wo, *, nonlinear=False):
    """The diffuse part of Mitsuba's smooth plastic (the coating is a delta
    lobe): R / (1 - Fdr_int) (or R / (1 - R Fdr_int) if nonlinear) *
    (1 - F(cos_i)) (1 - F(cos_o)) / eta^2 * cos_o / pi.

    Args:
      diffuse_reflectance: (..., 3). Differentiable.
      specular_reflectance: (..., 3), only used by `sample_plastic`.
      eta: (...) int_ior / ext_ior. Differentiable.
      specular_sampling_weight: (...) see `plastic_specular_sampling_weight`.
      nonlinear: static, Mitsuba's `nonlinear`.
    """
    del specular_reflectance, specular_sampling_weight
    wi, wo = as_float(wi), as_float(wo)
    eta = as_float(eta)
    cos_i, cos_o = _cos(wi), _cos(wo)
    active = (cos_i > 0) & (cos_o > 0)
    f_i = fresnel_dielectric(cos_i, eta)[0]
    f_o = fresnel_dielectric(cos_o, eta)[0]
    fdr_int = fresnel_diffuse_reflectance(safe_div(1.0, eta))
    diff = _plastic_diffuse(diffuse_reflectance, fdr_int, nonlinear, _batch(wi, wo))
    scale = INV_PI * jnp.maximum(cos_o, 0) * safe_div(1.0, eta * eta) * (1 - f_i) * (1 - f_o)
    return _masked(active, diff * scale[..., None])


def pdf_plastic(diffuse_reflectance, specular_reflectance, eta, specular_sampling_weight,
                wi, wo, *, nonlinear=False):
    """Density of the diffuse lobe of `sample_plastic`: its selection
    probability times cos_o / pi."""
    del diffuse_reflectance, specular_reflectance, nonlinear
    wi, wo = as_float(wi), as_float(wo)
    cos_i, cos_o = _cos(wi), _cos(wo)
    active = (cos_i > 0) & (cos_o > 0)
    f_i = fresnel_dielectric(cos_i, as_float(eta))[0]
    _, prob_diffuse = _plastic_probs(f_i, as_float(specular_sampling_weight))
    return jnp.where(active, square_to_cosine_hemisphere_pdf(wo) * prob_diffuse, 0)


def sample_plastic(diffuse_reflectance, specular_reflectance, eta, specular_sampling_weight,
                   wi, u1, u2, *, nonlinear=False):
    """Chooses the specular coating (delta) with probability
    F(cos_i) w / (F w + (1 - F)(1 - w)) (w = specular_sampling_weight), else
    the diffuse base (cosine-weighted), as Mitsuba."""
    wi = as_float(wi)
    u1 = as_float(u1)
    eta = as_float(eta)
    cos_i = _cos(wi)
    active = cos_i > 0
    f_i = fresnel_dielectric(cos_i, eta)[0]
    prob_specular, prob_diffuse = _plastic_probs(f_i, as_float(specular_sampling_weight))
    select_specular = u1 < prob_specular

    wo_d = square_to_cosine_hemisphere(u2)
    batch = jnp.broadcast_shapes(wi.shape[:-1], wo_d.shape[:-1], select_specular.shape)
    wo = jnp.where(select_specular[..., None], reflect(wi), wo_d)
    wo = jnp.broadcast_to(wo, batch + (3,))

    spec_weight = _rgb(specular_reflectance, batch) * safe_div(
        f_i, jax.lax.stop_gradient(prob_specular))[..., None]

    f_o = fresnel_dielectric(_cos(wo_d), eta)[0]
    fdr_int = fresnel_diffuse_reflectance(safe_div(1.0, eta))
    diff = _plastic_diffuse(diffuse_reflectance, fdr_int, nonlinear, batch)
    diff_scale = safe_div(1.0, eta * eta) * (1 - f_i) * (1 - f_o)
    diff_weight = diff * safe_div(diff_scale, jax.lax.stop_gradient(prob_diffuse))[..., None]

    weight = jnp.where(select_specular[..., None], spec_weight, diff_weight)
    pdf = jnp.where(select_specular, prob_specular,
                    prob_diffuse * square_to_cosine_hemisphere_pdf(wo_d))
    flags = jnp.where(select_specular, DELTA_REFLECTION, DIFFUSE_REFLECTION)
    return _finish(wo, weight, pdf, 1.0, flags, active)


# --------------------------------------------------------------------------
# roughplastic (rough coating over a diffuse base)

ROUGH_TRANSMITTANCE_RES = 64  # Mitsuba's MI_ROUGH_TRANSMITTANCE_RES


class RoughPlasticTables(NamedTuple):
    """What Mitsuba's roughplastic precomputes from (alpha, eta, distribution).

    external_transmittance: (..., 64) albedo of rough-dielectric transmission
      into the coating, at cos_theta_i = linspace(0, 1, 64) (lerped).
    internal_reflectance: (...) diffusely averaged internal reflectance of the
      rough interface (seen from inside, eta -> 1/eta).
    """

    external_transmittance: jax.Array
    internal_reflectance: jax.Array


@functools.lru_cache(maxsize=None)
def _gauss_legendre_grid(res):
    # Mitsuba computes the nodes in double and stores them as float; so do we.
    nodes, weights = np.polynomial.legendre.leggauss(res)
    nodes = nodes.astype(np.float32).astype(np.float64)
    weights = weights.astype(np.float32).astype(np.float64)
    nx, ny = np.meshgrid(nodes, nodes)
    wx, wy = np.meshgrid(weights, weights)
    u = np.stack([nx.ravel() * 0.5 + 0.5, ny.ravel() * 0.5 + 0.5], axis=-1)
    return u.astype(np.float32), (wx.ravel() * wy.ravel()).astype(np.float32)


def _rough_albedo(distr, wi, eta, res, transmission):
    """Mitsuba's eval_transmittance / eval_reflectance (microfacet.h):
    Gauss-Legendre quadrature (res x res) over visible normals of the rough
    dielectric transmission or reflection albedo for incident directions wi
    (n, 3). distr holds scalar alphas; eta is a scalar."""
    u, w = _gauss_legendre_grid(res)
    u = jnp.asarray(u, wi.dtype)
    w = jnp.asarray(w, wi.dtype)
    wi_b = wi[:, None, :]
    m = distr.sample_visible(wi_b, u[None])
    cos_im = dot(wi_b, m)
    f, cos_t, _, eta_ti = fresnel_dielectric(cos_im, eta)
    if transmission:
        wo = refract(wi_b, cos_t, eta_ti, m)
        smith = distr.G1(wo, m) * (1 - f)
        smith = jnp.where(_cos(wo) * _cos(wi_b) >= 0, 0, smith)
    else:
        wo = reflect(wi_b, m)
        smith = distr.G1(wo, m) * f
        smith = jnp.where((_cos(wo) <= 0) | (_cos(wi_b) <= 0), 0, smith)
    return jnp.sum(smith * w, axis=-1) * 0.25


# Steps of the central differences that differentiate the roughplastic
# tables (see `roughplastic_tables`): relative to alpha, and to eta.
TABLE_STEP_ALPHA = 0.05
TABLE_STEP_ETA = 0.01


def _albedo_at(distr, wi, eta, transmission, above):
    """`_rough_albedo` at Mitsuba's resolution: 32 where `above` (the IOR of
    the lookup is > 1), else 128. `above` is a Python bool (static choice) or
    a traced bool (lax.cond, both branches computed only under a batched
    predicate)."""
    def at(res):
        return lambda e: _rough_albedo(distr, wi, e, res, transmission)

    if isinstance(above, (bool, np.bool_)):
        return at(32 if above else 128)(eta)
    return jax.lax.cond(above, at(32), at(128), eta)


def _tables_value(alpha, eta, distribution, t_above, r_above):
    dtype = jnp.result_type(alpha, eta)
    distr = Microfacet.create(distribution, alpha)
    mu = jnp.maximum(1e-6, jnp.linspace(0, 1, ROUGH_TRANSMITTANCE_RES, dtype=dtype))
    wi = vec3(jnp.sqrt(1 - mu * mu), jnp.zeros_like(mu), mu)
    t = _albedo_at(distr, wi, eta, True, t_above)
    r = _albedo_at(distr, wi, safe_div(1.0, eta), False, r_above)
    return t, jnp.mean(r * mu) * 2


def _resolutions(eta, static_above):
    """(eta > 1, 1 / eta > 1): static bools when known, else traced."""
    return static_above if static_above is not None else (eta > 1, eta < 1)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _tables(alpha, eta, distribution, static_above):
    return _tables_value(alpha, eta, distribution, *_resolutions(eta, static_above))


@_tables.defjvp
def _tables_jvp(distribution, static_above, primals, tangents):
    # Central differences of the quadrature, at the centre's resolutions: its
    # exact derivative is dominated by the few nodes next to the integrand's
    # kinks (the critical angle of the internal reflection, where dF/deta
    # has an integrable 1/sqrt singularity, and the horizon), so it does not
    # converge with the resolution (internal reflectance: 1.8% off in eta,
    # 3% in alpha at res 128; a rendered int_ior derivative, where the
    # diffuse terms cancel, 20% off). Steps of 1% in eta and 5% in alpha
    # average over those nodes: within 0.4% and 1.5% of a converged
    # (res 512, float64) reference.
    alpha, eta = primals
    d_alpha, d_eta = tangents
    above = _resolutions(eta, static_above)
    ha = TABLE_STEP_ALPHA * jnp.maximum(alpha, 1e-3)
    he = TABLE_STEP_ETA * jnp.maximum(eta, 1e-3)
    a = jnp.stack([alpha, alpha + ha, alpha - ha, alpha, alpha])
    e = jnp.stack([eta, eta, eta, eta + he, eta - he])
    t, r = jax.vmap(lambda a, e: _tables_value(a, e, distribution, *above))(a, e)
    dt = (t[1] - t[2]) * (d_alpha / (2 * ha)) + (t[3] - t[4]) * (d_eta / (2 * he))
    dr = (r[1] - r[2]) * (d_alpha / (2 * ha)) + (r[3] - r[4]) * (d_eta / (2 * he))
    return (t[0], r[0]), (dt, dr)


def roughplastic_tables(alpha, eta, *, distribution="beckmann") -> RoughPlasticTables:
    """Precomputes roughplastic's rough-interface albedos, as Mitsuba does in
    `parameters_changed`.

    external_transmittance[j] is the transmission albedo of a rough dielectric
    interface (eta) for cos_theta_i = max(1e-6, j / 63), and
    internal_reflectance = 2 * mean_j(R_int(mu_j) mu_j), R_int the reflection
    albedo for 1/eta, both by res x res Gauss-Legendre quadrature over visible
    normals (res = 32 for an IOR > 1, else 128), as Mitsuba's
    `eval_transmittance` and `eval_reflectance`.

    Args:
      alpha: scalar roughness (Mitsuba's roughplastic alpha is a float, not a
        texture). Differentiable (Mitsuba does not differentiate the tables).
      eta: scalar int_ior / ext_ior. Differentiable.
      distribution: "beckmann" or "ggx" (static).
    Returns:
      RoughPlasticTables with shapes (64,) and (). Use `jax.vmap` for several
      materials. About 1M microfacet samples: compute it once per material and
      render, not per shading point.

    Derivatives (forward and reverse mode) are central differences of the
    tables with steps TABLE_STEP_ALPHA * alpha and TABLE_STEP_ETA * eta (at
    the centre's quadrature resolution), not the quadrature's own derivative,
    which is dominated by the nodes next to the integrand's kinks (see
    `_tables_jvp`). Differentiating costs four more table evaluations.
    """
    alpha = as_float(alpha)
    eta = as_float(eta)
    if alpha.ndim or eta.ndim:
        raise ValueError(
            f"alpha and eta must be scalars (vmap for several materials), got shapes "
            f"{alpha.shape} and {eta.shape}"
        )
    # Mitsuba picks the quadrature resolution from the IOR (32 above 1, else
    # 128): statically for a concrete eta, with lax.cond for a traced one.
    try:
        static_above = (bool(eta > 1), bool(eta < 1))
    except jax.errors.ConcretizationTypeError:
        static_above = None
    t, r = _tables(alpha, eta, distribution, static_above)
    return RoughPlasticTables(t, r)


def _lerp_table(table, x, batch):
    """Mitsuba's lerp_gather: linear interpolation of table (..., n) at
    x in [0, 1] (x * (n - 1), index clamped to [0, n - 2])."""
    table = as_float(table)
    n = table.shape[-1]
    x = jnp.broadcast_to(x, batch) * (n - 1)
    idx = jnp.clip(jnp.floor(x), 0, n - 2).astype(jnp.int32)
    t = x - idx
    if table.ndim == 1:  # one material: a plain gather
        v0, v1 = table[idx], table[idx + 1]
    else:  # per-point tables
        table = jnp.broadcast_to(table, batch + (n,))
        v0 = jnp.take_along_axis(table, idx[..., None], axis=-1)[..., 0]
        v1 = jnp.take_along_axis(table, idx[..., None] + 1, axis=-1)[..., 0]
    return v0 * (1 - t) + v1 * t


def _roughplastic_probs(t_i, weight):
    prob_specular = (1 - t_i) * weight
    prob_diffuse = t_i * (1 - weight)
    prob_specular = safe_div(prob_specular, prob_specular + prob_diffuse)
    return prob_specular, 1 - prob_specular


def eval_roughplastic(diffuse_reflectance, specular_reflectance, alpha, eta,
                      specular_sampling_weight, tables, wi, wo, *,
                      distribution="beckmann", nonlinear=False):
    """Mitsuba's roughplastic: a rough dielectric reflection lobe
    F D G / (4 cos_i) * specular, plus a diffuse base seen through the rough
    interface, R / (1 - R_int) (nonlinear: R / (1 - R R_int)) *
    T(cos_i) T(cos_o) / eta^2 * cos_o / pi, with T and R_int from `tables`.

    Args:
      diffuse_reflectance, specular_reflectance: (..., 3). Differentiable.
      alpha: (...) isotropic roughness. Differentiable.
      eta: (...) int_ior / ext_ior. Differentiable.
      specular_sampling_weight: (...) see `plastic_specular_sampling_weight`.
      tables: `roughplastic_tables(alpha, eta)` (broadcastable leaves).
      distribution, nonlinear: static.
    """
    del specular_sampling_weight
    wi, wo = as_float(wi), as_float(wo)
    eta = as_float(eta)
    batch = _batch(wi, wo)
    cos_i, cos_o = _cos(wi), _cos(wo)
    active = (cos_i > 0) & (cos_o > 0)
    distr = Microfacet.create(distribution, alpha)
    h = safe_normalize(wo + wi)
    d = distr.D(h)
    f = fresnel_dielectric(dot(wi, h), eta)[0]
    g = distr.G(wi, wo, h)
    spec = safe_div(f * d * g, 4 * cos_i)[..., None] * _rgb(specular_reflectance, batch)

    t_i = _lerp_table(tables.external_transmittance, cos_i, batch)
    t_o = _lerp_table(tables.external_transmittance, cos_o, batch)
    diff = _plastic_diffuse(diffuse_reflectance, tables.internal_reflectance, nonlinear, batch)
    scale = INV_PI * safe_div(1.0, eta * eta) * cos_o * t_i * t_o
    return _masked(active, spec + diff * scale[..., None])


def pdf_roughplastic(diffuse_reflectance, specular_reflectance, alpha, eta,
                     specular_sampling_weight, tables, wi, wo, *,
                     distribution="beckmann", nonlinear=False):
    """Density of `sample_roughplastic`: the mixture of visible-normal
    reflection and cosine sampling with Mitsuba's lobe probabilities,
    (1 - T(cos_i)) w : T(cos_i) (1 - w)."""
    del diffuse_reflectance, specular_reflectance, eta, nonlinear
    wi, wo = as_float(wi), as_float(wo)
    batch = _batch(wi, wo)
    cos_i, cos_o = _cos(wi), _cos(wo)
    active = (cos_i > 0) & (cos_o > 0)
    t_i = _lerp_table(tables.external_transmittance, cos_i, batch)
    prob_specular, prob_diffuse = _roughplastic_probs(t_i, as_float(specular_sampling_weight))
    h = safe_normalize(wo + wi)
    distr = Microfacet.create(distribution, alpha)
    result = safe_div(distr.D(h) * distr.G1(wi, h), 4 * cos_i) * prob_specular
    result = result + prob_diffuse * square_to_cosine_hemisphere_pdf(wo)
    return jnp.where(active, result, 0)


def sample_roughplastic(diffuse_reflectance, specular_reflectance, alpha, eta,
                        specular_sampling_weight, tables, wi, u1, u2, *,
                        distribution="beckmann", nonlinear=False):
    """Picks the glossy lobe if u1 < its probability (visible-normal
    sampling), else the diffuse one (cosine); pdf = the mixture density,
    weight = eval / pdf, as Mitsuba."""
    params = (diffuse_reflectance, specular_reflectance, alpha, eta,
              specular_sampling_weight, tables)
    kw = dict(distribution=distribution, nonlinear=nonlinear)
    wi = as_float(wi)
    u1 = as_float(u1)
    cos_i = _cos(wi)
    t_i = _lerp_table(tables.external_transmittance, cos_i, wi.shape[:-1])
    prob_specular, _ = _roughplastic_probs(t_i, as_float(specular_sampling_weight))
    select_specular = u1 < prob_specular
    distr = Microfacet.create(distribution, alpha)
    wo_s = reflect(wi, distr.sample_visible(wi, u2))
    wo_d = square_to_cosine_hemisphere(u2)
    wo = jnp.where(select_specular[..., None], wo_s, wo_d)
    pdf = pdf_roughplastic(*params, wi, wo, **kw)
    value = eval_roughplastic(*params, wi, wo, **kw)
    weight = value * safe_div(1.0, pdf)[..., None]
    flags = jnp.where(select_specular, GLOSSY_REFLECTION, DIFFUSE_REFLECTION)
    return _finish(wo, weight, pdf, 1.0, flags, cos_i > 0)


# --------------------------------------------------------------------------
# dielectric (smooth)


def eval_dielectric(eta, specular_reflectance, specular_transmittance, wi, wo):
    """0: both lobes of a smooth dielectric are deltas."""
    del eta, specular_reflectance, specular_transmittance
    wi, wo = as_float(wi), as_float(wo)
    return jnp.zeros(_batch(wi, wo) + (3,), wi.dtype)


def pdf_dielectric(eta, specular_reflectance, specular_transmittance, wi, wo):
    """0: both lobes of a smooth dielectric are deltas."""
    del eta, specular_reflectance, specular_transmittance
    wi, wo = as_float(wi), as_float(wo)
    return jnp.zeros(_batch(wi, wo), wi.dtype)


def sample_dielectric(eta, specular_reflectance, specular_transmittance, wi, u1, u2):
    """Reflects with probability F(cos_i) (u1 <= F), else refracts.

    Weight: specular_reflectance, or specular_transmittance / eta_it^2 for a
    refraction (radiance compression); pdf: F or 1 - F (held constant for
    derivatives); eta: 1 or eta_it.

    Args:
      eta: (...) int_ior / ext_ior (wi.z < 0 means arriving from inside).
        Differentiable.
    """
    del u2
    wi = as_float(wi)
    u1 = as_float(u1)
    cos_i = _cos(wi)
    r_i, cos_t, eta_it, eta_ti = fresnel_dielectric(cos_i, eta)
    t_i = 1 - r_i
    selected_r = u1 <= r_i
    batch = selected_r.shape
    pdf = jax.lax.stop_gradient(jnp.where(selected_r, r_i, t_i))
    wo = jnp.where(selected_r[..., None], reflect(wi), refract(wi, cos_t, eta_ti))
    w_r = one_with_log_derivative(r_i)[..., None] * _rgb(specular_reflectance, batch)
    w_t = (one_with_log_derivative(t_i) * eta_ti * eta_ti)[..., None] * _rgb(specular_transmittance, batch)
    weight = jnp.where(selected_r[..., None], w_r, w_t)
    eta_out = jnp.where(selected_r, 1.0, eta_it)
    flags = jnp.where(selected_r, DELTA_REFLECTION, DELTA_TRANSMISSION)
    return _finish(wo, weight, pdf, eta_out, flags, jnp.ones(batch, bool))


# --------------------------------------------------------------------------
# roughdielectric


def _roughdielectric_half_vector(wi, wo, eta):
    cos_i, cos_o = _cos(wi), _cos(wo)
    reflect_ = cos_i * cos_o > 0
    eta_rel = jnp.where(cos_i > 0, eta, safe_div(1.0, eta))
    m = safe_normalize(wi + wo * jnp.where(reflect_, 1.0, eta_rel)[..., None])
    # The half-vector points into the macro surface's upper hemisphere.
    m = jnp.where(jnp.signbit(m[..., 2:3]), -m, m)
    return m, reflect_, eta_rel


def eval_roughdielectric(alpha_u, alpha_v, eta, specular_reflectance, specular_transmittance,
                         wi, wo, *, distribution="beckmann"):
    """Walter et al.'s rough dielectric, both sides, as Mitsuba (radiance mode:
    transmission is scaled by 1/eta_rel^2).

    Args:
      alpha_u, alpha_v: (...) roughness. Differentiable.
      eta: (...) int_ior / ext_ior. Differentiable.
      specular_reflectance, specular_transmittance: (..., 3). Differentiable.
      distribution: static.
    """
    wi, wo = as_float(wi), as_float(wo)
    eta = as_float(eta)
    batch = _batch(wi, wo)
    cos_i = _cos(wi)
    active = cos_i != 0
    m, reflect_, eta_rel = _roughdielectric_half_vector(wi, wo, eta)
    inv_eta_rel = jnp.where(cos_i > 0, safe_div(1.0, eta), eta)
    distr = Microfacet.create(distribution, alpha_u, alpha_v)
    d = distr.D(m)
    f = fresnel_dielectric(dot(wi, m), eta)[0]
    g = distr.G(wi, wo, m)

    r_value = safe_div(f * d * g, 4 * jnp.abs(cos_i))
    wi_m, wo_m = dot(wi, m), dot(wo, m)
    den = wi_m + eta_rel * wo_m
    t_value = jnp.abs(safe_div(
        inv_eta_rel * inv_eta_rel * (1 - f) * d * g * eta_rel * eta_rel * wi_m * wo_m,
        cos_i * den * den))
    r = r_value[..., None] * _rgb(specular_reflectance, batch)
    t = t_value[..., None] * _rgb(specular_transmittance, batch)
    return _masked(active, jnp.where(reflect_[..., None], r, t))


def pdf_roughdielectric(alpha_u, alpha_v, eta, specular_reflectance, specular_transmittance,
                        wi, wo, *, distribution="beckmann"):
    """Density of `sample_roughdielectric` (visible normals from the side of
    wi, Fresnel-weighted lobe choice, half-vector Jacobians)."""
    del specular_reflectance, specular_transmittance
    wi, wo = as_float(wi), as_float(wo)
    eta = as_float(eta)
    cos_i, cos_o = _cos(wi), _cos(wo)
    m, reflect_, eta_rel = _roughdielectric_half_vector(wi, wo, eta)
    wi_m, wo_m = dot(wi, m), dot(wo, m)
    # Micro and macro surface must agree on the side (as smith_g1 does).
    active = (cos_i != 0) & (wi_m * cos_i > 0) & (wo_m * cos_o > 0)
    den = wi_m + eta_rel * wo_m
    dwh_dwo = jnp.where(reflect_, safe_div(1.0, 4 * wo_m),
                        safe_div(eta_rel * eta_rel * wo_m, den * den))
    distr = Microfacet.create(distribution, alpha_u, alpha_v)
    wi_side = jnp.where(jnp.signbit(cos_i)[..., None], -wi, wi)
    prob = distr.pdf_visible(wi_side, m)
    f = fresnel_dielectric(wi_m, eta)[0]
    prob = prob * jnp.where(reflect_, f, 1 - f)
    return jnp.where(active, prob * jnp.abs(dwh_dwo), 0)


def sample_roughdielectric(alpha_u, alpha_v, eta, specular_reflectance,
                           specular_transmittance, wi, u1, u2, *, distribution="beckmann"):
    """Samples a visible normal m (from wi's side), then reflects about m with
    probability F(wi.m) (u1 <= F) or refracts; weight = G1(wo, m) times the
    lobe's colour (and 1/eta_it^2 for a refraction), as Mitsuba."""
    wi = as_float(wi)
    u1 = as_float(u1)
    eta = as_float(eta)
    cos_i = _cos(wi)
    distr = Microfacet.create(distribution, alpha_u, alpha_v)
    wi_side = jnp.where(jnp.signbit(cos_i)[..., None], -wi, wi)
    m, pdf = distr.sample(wi_side, u2)
    active = (cos_i != 0) & (pdf != 0)
    wi_m = dot(wi, m)
    f, cos_t, eta_it, eta_ti = fresnel_dielectric(wi_m, eta)
    selected_r = u1 <= f
    batch = selected_r.shape
    pdf = pdf * jax.lax.stop_gradient(jnp.where(selected_r, f, 1 - f))

    wo_r = reflect(wi, m)
    wo_t = refract(wi, cos_t, eta_ti, m)
    wo = jnp.where(selected_r[..., None], wo_r, wo_t)
    wo_m = dot(wo, m)
    den = wi_m + eta_it * wo_m
    dwh_dwo = jnp.where(selected_r, safe_div(1.0, 4 * wo_m),
                        safe_div(eta_it * eta_it * wo_m, den * den))
    pdf = pdf * jnp.abs(dwh_dwo)

    w_r = one_with_log_derivative(f)[..., None] * _rgb(specular_reflectance, batch)
    w_t = (one_with_log_derivative(1 - f) * eta_ti * eta_ti)[..., None] * _rgb(
        specular_transmittance, batch)
    g1 = distr.G1(wo, m)
    weight = jnp.where(selected_r[..., None], w_r, w_t) * g1[..., None]
    # A direction on the wrong side of its microfacet has G1 = 0 and is not
    # counted by pdf_roughdielectric: mark it invalid.
    active = active & (g1 > 0)
    eta_out = jnp.where(selected_r, 1.0, eta_it)
    flags = jnp.where(selected_r, GLOSSY_REFLECTION, GLOSSY_TRANSMISSION)
    return _finish(wo, weight, pdf, eta_out, flags, active)


# --------------------------------------------------------------------------
# thindielectric


def _thin_reflectance(eta, wi):
    r = fresnel_dielectric(jnp.abs(_cos(wi)), eta)[0]
    # Internal reflections: r' = r + t r t + t r^3 t + ... = 2 r / (1 + r).
    return r * 2 / (1 + r)


def eval_thindielectric(eta, specular_reflectance, specular_transmittance, wi, wo):
    """0: a thin dielectric's lobes are deltas."""
    del eta, specular_reflectance, specular_transmittance
    wi, wo = as_float(wi), as_float(wo)
    return jnp.zeros(_batch(wi, wo) + (3,), wi.dtype)


def pdf_thindielectric(eta, specular_reflectance, specular_transmittance, wi, wo):
    """0: a thin dielectric's lobes are deltas."""
    del eta, specular_reflectance, specular_transmittance
    wi, wo = as_float(wi), as_float(wo)
    return jnp.zeros(_batch(wi, wo), wi.dtype)


def sample_thindielectric(eta, specular_reflectance, specular_transmittance, wi, u1, u2):
    """Mirror reflection with probability r' = 2 r / (1 + r) (r the Fresnel
    reflectance at |cos_i|, summed over internal bounces), else straight
    through (-wi, a Null lobe: the ray goes on unbent). Weight: the lobe's
    colour; pdf: r' or 1 - r' (held constant for derivatives)."""
    del u2
    wi = as_float(wi)
    u1 = as_float(u1)
    r = _thin_reflectance(as_float(eta), wi)
    t = 1 - r
    selected_r = u1 <= r
    batch = selected_r.shape
    pdf = jax.lax.stop_gradient(jnp.where(selected_r, r, t))
    wo = jnp.where(selected_r[..., None], reflect(wi), -wi)
    w_r = one_with_log_derivative(r)[..., None] * _rgb(specular_reflectance, batch)
    w_t = one_with_log_derivative(t)[..., None] * _rgb(specular_transmittance, batch)
    weight = jnp.where(selected_r[..., None], w_r, w_t)
    flags = jnp.where(selected_r, DELTA_REFLECTION, NULL)
    return _finish(wo, weight, pdf, 1.0, flags, jnp.ones(batch, bool))


def null_transmission_thindielectric(eta, specular_transmittance, wi):
    """Mitsuba's eval_null_transmission: (1 - r') * specular_transmittance,
    the attenuation of a ray passing straight through (e.g. shadow rays)."""
    wi = as_float(wi)
    r = _thin_reflectance(as_float(eta), wi)
    return (1 - r)[..., None] * _rgb(specular_transmittance, wi.shape[:-1])


# --------------------------------------------------------------------------
# twosided and the registry


def _flip(v, back):
    return jnp.where(back[..., None], v * jnp.asarray([1, 1, -1], v.dtype), v)


def flip_to_front(wi, v):
    """v with its z negated where wi is below the surface (wi.z < 0): the
    change of frame Mitsuba's `twosided` applies before calling the nested
    BSDF (use it directly when front and back BSDFs differ)."""
    wi, v = as_float(wi), as_float(v)
    return _flip(v, _cos(wi) < 0)


def twosided(fns: BSDFFunctions) -> BSDFFunctions:
    """Mitsuba's `twosided` around one one-sided BSDF used on both sides.

    For wi.z < 0, evaluates the nested BSDF with wi and wo mirrored through
    the surface (z negated) and mirrors sampled directions back; wi.z == 0
    gives 0. With different front and back BSDFs, evaluate each with
    `flip_to_front` and select on the sign of wi.z.
    """

    def eval_(*args, **kw):
        *params, wi, wo = args
        back = _cos(as_float(wi)) < 0
        return fns.eval(*params, _flip(as_float(wi), back), _flip(as_float(wo), back), **kw)

    def pdf_(*args, **kw):
        *params, wi, wo = args
        back = _cos(as_float(wi)) < 0
        return fns.pdf(*params, _flip(as_float(wi), back), _flip(as_float(wo), back), **kw)

    def sample_(*args, **kw):
        *params, wi, u1, u2 = args
        wi = as_float(wi)
        back = _cos(wi) < 0
        s = fns.sample(*params, _flip(wi, back), u1, u2, **kw)
        return s._replace(wo=_flip(s.wo, jnp.broadcast_to(back, s.pdf.shape)))

    return BSDFFunctions(eval_, pdf_, sample_)


BSDFS = {
    "diffuse": BSDFFunctions(eval_diffuse, pdf_diffuse, sample_diffuse),
    "conductor": BSDFFunctions(eval_conductor, pdf_conductor, sample_conductor),
    "roughconductor": BSDFFunctions(
        eval_roughconductor, pdf_roughconductor, sample_roughconductor),
    "plastic": BSDFFunctions(eval_plastic, pdf_plastic, sample_plastic),
    "roughplastic": BSDFFunctions(eval_roughplastic, pdf_roughplastic, sample_roughplastic),
    "dielectric": BSDFFunctions(eval_dielectric, pdf_dielectric, sample_dielectric),
    "roughdielectric": BSDFFunctions(
        eval_roughdielectric, pdf_roughdielectric, sample_roughdielectric),
    "thindielectric": BSDFFunctions(
        eval_thindielectric, pdf_thindielectric, sample_thindielectric),
}
"""Mitsuba plugin name -> (eval, pdf, sample) of that BSDF kind."""
