"""Fresnel equations, reflection and refraction (Mitsuba 3's `fresnel.h`).

Cosines are those of the local shading frame (n = +z); everything batches over
leading axes and is NaN-free in value and derivative, including at grazing
incidence, normal incidence, the critical angle and index-matched interfaces.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrender.integrators._math import (
    as_float,
    dot,
    safe_div,
    safe_sqrt,
    spectrum,
    vec3,
)

__all__ = [
    "fresnel_dielectric",
    "fresnel_conductor",
    "fresnel_diffuse_reflectance",
    "reflect",
    "refract",
]


def fresnel_dielectric(cos_theta_i, eta):
    """Unpolarized Fresnel reflectance of a dielectric interface (`mi.fresnel`).

    Args:
      cos_theta_i: (...) cosine between the normal and the incident direction;
        negative when arriving from inside.
      eta: (...) relative IOR (interior / exterior): > 1 when the normal points
        into the less dense medium. Differentiable.

    Returns:
      (F, cos_theta_t, eta_it, eta_ti): reflectance; signed cosine of the
      transmitted direction (opposite sign to cos_theta_i, 0 under total
      internal reflection); relative IOR along the direction of travel and its
      reciprocal (the scale of the refracted direction's x, y). F = 1 at
      grazing incidence and F = 0 when eta == 1, as Mitsuba.
    """
    cos_theta_i = as_float(cos_theta_i)
    eta = as_float(eta)
    outside = cos_theta_i >= 0
    rcp_eta = safe_div(1.0, eta)
    eta_it = jnp.where(outside, eta, rcp_eta)
    eta_ti = jnp.where(outside, rcp_eta, eta)

    # Snell's law: squared cosine of the transmitted direction.
    cos_theta_t_sqr = 1 - (1 - cos_theta_i * cos_theta_i) * (eta_ti * eta_ti)
    cos_i = jnp.abs(cos_theta_i)
    cos_t = safe_sqrt(cos_theta_t_sqr)

    index_matched = eta == 1
    # Total internal reflection is F = 1 exactly: the formula gives it through
    # cos_t = 0 only with correctly rounded division (XLA:GPU's is not, and
    # 0.99999994 would let a path refract into a meaningless direction).
    special = index_matched | (cos_i == 0) | (cos_theta_t_sqr <= 0)
    a_s = safe_div(cos_i - eta_it * cos_t, cos_i + eta_it * cos_t)
    a_p = safe_div(cos_t - eta_it * cos_i, cos_t + eta_it * cos_i)
    r = 0.5 * (a_s * a_s + a_p * a_p)
    r = jnp.where(special, jnp.where(index_matched, 0.0, 1.0), r)

    # The transmitted direction lies on the other side of the interface.
    cos_theta_t = jnp.where(jnp.signbit(cos_theta_i), cos_t, -cos_t)
    return r, cos_theta_t, eta_it, eta_ti


def fresnel_conductor(cos_theta_i, eta, k):
    """Unpolarized Fresnel reflectance of a conductor (`mi.fresnel_conductor`).

    Per colour channel, for the complex relative IOR eta + i k; assumes light
    arrives from outside (cos_theta_i >= 0).

    Args:
      cos_theta_i: (...) incident cosine.
      eta, k: (..., C) (or scalars) real and imaginary IOR. Differentiable.

    Returns:
      (..., C) reflectance (C = broadcast channel count, usually 3).
    """
    cos = as_float(cos_theta_i)[..., None]
    eta_r = spectrum(eta)
    eta_i = spectrum(k)
    cos2 = cos * cos
    sin2 = 1 - cos2
    sin4 = sin2 * sin2
    temp_1 = eta_r * eta_r - eta_i * eta_i - sin2
    four_k2_eta2 = 4 * eta_i * eta_i * eta_r * eta_r
    a_2_pb_2 = safe_sqrt(temp_1 * temp_1 + four_k2_eta2)
    # a^2 = (a_2_pb_2 + temp_1) / 2, as Mitsuba, except that for temp_1 < 0
    # the sum cancels (to exactly 0 for k eta = 0, e.g. Mitsuba's default
    # perfect mirror eta = 0, k = 1); the conjugate form is the same number
    # without the cancellation.
    neg = temp_1 < 0
    a2 = jnp.where(neg, 0.5 * safe_div(four_k2_eta2, a_2_pb_2 - temp_1),
                   0.5 * (a_2_pb_2 + temp_1))
    a = safe_sqrt(a2)
    term_1 = a_2_pb_2 + cos2
    term_2 = 2 * cos * a
    r_s = safe_div(term_1 - term_2, term_1 + term_2)
    term_3 = a_2_pb_2 * cos2 + sin4
    term_4 = term_2 * sin2
    r_p = r_s * safe_div(term_3 - term_4, term_3 + term_4)
    return 0.5 * (r_s + r_p)


def fresnel_diffuse_reflectance(eta):
    """Hemispherically averaged dielectric Fresnel reflectance ("Fdr") for
    relative IOR `eta` (...), Mitsuba's fits (Egan-Hilgeman for eta < 1,
    d'Eon-Irving otherwise). Differentiable."""
    eta = as_float(eta)
    inv_eta = safe_div(1.0, eta)
    approx_1 = 0.0636 * inv_eta + (eta * (eta * -1.4399 + 0.7099) + 0.6681)
    coeffs = (0.919317, -3.4793, 6.75335, -7.80989, 4.98554, -1.36881)
    approx_2 = jnp.zeros_like(inv_eta)
    for c in reversed(coeffs):
        approx_2 = approx_2 * inv_eta + c
    return jnp.where(eta < 1, approx_1, approx_2)


def reflect(wi, m=None):
    """Mirror wi (..., 3) about m (..., 3), or about +z when m is None:
    2 (wi . m) m - wi. Differentiable."""
    wi = as_float(wi)
    if m is None:
        return vec3(-wi[..., 0], -wi[..., 1], wi[..., 2])
    return m * (2 * dot(wi, m))[..., None] - wi


def refract(wi, cos_theta_t, eta_ti, m=None):
    """Refract wi (..., 3) through the interface with normal m (+z if None).

    `cos_theta_t` and `eta_ti` are the second and fourth outputs of
    `fresnel_dielectric` for dot(wi, m). Under total internal reflection the
    result is meaningless (Fresnel gives F = 1 there). Differentiable.
    """
    wi = as_float(wi)
    cos_theta_t = as_float(cos_theta_t)
    eta_ti = as_float(eta_ti)
    if m is None:
        return vec3(-eta_ti * wi[..., 0], -eta_ti * wi[..., 1], cos_theta_t)
    return m * (dot(wi, m) * eta_ti + cos_theta_t)[..., None] - wi * eta_ti[..., None]
