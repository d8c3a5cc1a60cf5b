"""Mitsuba 3's `principled` BSDF (Burley's Disney BSDF, 2012 and 2015) as
pure functions, in the conventions of `bsdf_math` (local shading frame,
`eval` includes |cos(theta_o)|, `sample` returns a `BSDFSample`).

The lobes, their masks and the lobe-selection probabilities follow Mitsuba's
`principled.cpp` and `principledhelpers.h` line by line:

- main specular reflection: anisotropic GGX (visible-normal sampled) with a
  Fresnel term that blends the dielectric Fresnel, a Schlick metal tinted by
  base_color and a Schlick dielectric tinted by spec_tint;
- specular transmission (weight (1 - metallic) spec_trans): rough dielectric
  transmission times sqrt(base_color);
- clearcoat: GTR1 distribution of roughness lerp(0.1, 0.001, gloss),
  Schlick Fresnel of R0 0.04, separable GGX shadowing of roughness 0.25;
- diffuse with retro-reflection and Hanrahan-Krueger "flatness" (weight
  (1 - metallic)(1 - spec_trans)), and a sheen lobe tinted by sheen_tint.

Differences from Mitsuba, all where its own variants disagree or where it
keeps a number that nothing uses:
- every lobe is always evaluated (Mitsuba skips lobes whose parameter was
  not given or given as 0.0; with the value 0 they contribute nothing, so
  the result is the same, and a parameter that starts at 0 still gets its
  derivative);
- sheen is added wherever its own mask holds, as Mitsuba's vectorized
  variants (llvm, cuda) do; its scalar variant skips it in a lane where the
  diffuse lobe is inactive (spec_trans = 1);
- the pdf is 0 where `sample` never goes (a back-side wi without
  transmission), where Mitsuba reports a pdf for a zero value.

Everything is differentiable in all parameters, wi and wo (NaN-free at
normal and grazing incidence).
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrender.integrators._math import (
    INV_PI,
    as_float,
    dot,
    mulsign,
    safe_div,
    safe_normalize,
    safe_sqrt,
    sincos,
    vec3,
)
from jaxrender.integrators.bsdf_math import (
    DIFFUSE_REFLECTION,
    DIFFUSE_TRANSMISSION,
    GLOSSY_REFLECTION,
    GLOSSY_TRANSMISSION,
    BSDFSample,
    _batch,
    _cos,
    _finish,
    _rgb,
)
from jaxrender.integrators.fresnel import fresnel_dielectric, reflect, refract
from jaxrender.integrators.microfacet import Microfacet
from jaxrender.integrators.warp import (
    luminance,
    square_to_cosine_hemisphere,
    square_to_cosine_hemisphere_pdf,
)

__all__ = ["eval_principled", "pdf_principled", "sample_principled", "specular_to_eta", "RATES",
           "eval_principledthin", "pdf_principledthin", "sample_principledthin", "THIN_RATES"]

RATES = (1.0, 1.0, 1.0)
"""Default sampling rates (main specular, clearcoat, diffuse reflection)."""


def specular_to_eta(specular):
    """Mitsuba's map from `specular` to the relative IOR:
    2 / (1 - sqrt(0.08 specular)) - 1 (0 -> 1, 0.5 -> 1.5). Differentiable."""
    return 2.0 / (1.0 - jnp.sqrt(0.08 * specular)) - 1.0


def _dist_params(anisotropic, roughness):
    """GGX (alpha_x, alpha_y) from Disney's roughness and anisotropy."""
    r2 = roughness * roughness
    aspect = jnp.sqrt(jnp.clip(1.0 - 0.9 * anisotropic, 0.1, None))
    return jnp.maximum(0.001, r2 / aspect), jnp.maximum(0.001, r2 * aspect)


def _schlick_weight(c):
    m = jnp.clip(1.0 - c, 0.0, 1.0)
    m2 = m * m
    return m2 * m2 * m


def _lerp(a, b, t):
    return a + t * (b - a)


def _schlick(r0, cos_i, eta):
    """Schlick's Fresnel with reflectance r0 at normal incidence; from inside
    a denser medium it uses the transmitted angle (Mitsuba's calc_schlick)."""
    outside = cos_i >= 0
    eta_it = jnp.where(outside, eta, safe_div(1.0, eta))
    eta_ti = jnp.where(outside, safe_div(1.0, eta), eta)
    cos_t = safe_sqrt(1.0 - (1.0 - cos_i * cos_i) * eta_ti * eta_ti)
    w = jnp.where(eta_it > 1.0, _schlick_weight(jnp.abs(cos_i)), _schlick_weight(cos_t))
    if jnp.ndim(r0) > jnp.ndim(w):
        w = w[..., None]
    return _lerp(w, 1.0, r0)


def _tint(base_color):
    """base_color / luminance (1 where the luminance is 0)."""
    lum = luminance(base_color)[..., None]
    return jnp.where(lum > 0, safe_div(base_color, lum), 1.0)


def _mac_mic(m, wi, wo, cos_i, reflection):
    """Macro and micro surface agree: wi on m's side (m turned to wi's
    side of the surface), wo on it for a reflection, beyond it for a
    refraction."""
    m = mulsign(m, cos_i[..., None])
    wo_m = dot(wo, m)
    return (dot(wi, m) > 0) & ((wo_m > 0) if reflection else (wo_m < 0))


def _disney_diffuse(abs_o, abs_i, cos_d, roughness, flatness):
    """Burley's diffuse shape (Lambert times pi): the Schlick-weighted
    diffuse, the retro-reflection of rough surfaces, blended by flatness
    into the Hanrahan-Krueger fake subsurface (cos_d: of the half-vector
    and wo)."""
    fo, fi = _schlick_weight(abs_o), _schlick_weight(abs_i)
    f_diff = (1.0 - 0.5 * fi) * (1.0 - 0.5 * fo)
    rr = 2.0 * roughness * cos_d * cos_d
    f_retro = rr * (fo + fi + fo * fi * (rr - 1.0))
    fss = _lerp(1.0, 0.5 * rr, fo) * _lerp(1.0, 0.5 * rr, fi)
    f_ss = 1.25 * (fss * (safe_div(1.0, abs_o + abs_i) - 0.5) + 0.5)
    return _lerp(f_diff + f_retro, f_ss, flatness)


def _gtr1_eval(alpha, m):
    a2 = alpha * alpha
    c2 = m[..., 2] * m[..., 2]
    result = (a2 - 1.0) / (jnp.pi * jnp.log(a2) * (1.0 + (a2 - 1.0) * c2))
    return jnp.where(result * m[..., 2] > 1e-20, result, 0.0)


def _gtr1_pdf(alpha, m):
    return jnp.where(m[..., 2] < 0, 0.0, m[..., 2] * _gtr1_eval(alpha, m))


def _gtr1_sample(alpha, u):
    sin_phi, cos_phi = sincos(2.0 * jnp.pi * u[..., 0])
    a2 = alpha * alpha
    cos2 = (1.0 - jnp.power(a2, 1.0 - u[..., 1])) / (1.0 - a2)
    sin_t, cos_t = safe_sqrt(1.0 - cos2), safe_sqrt(cos2)
    return vec3(cos_phi * sin_t, sin_phi * sin_t, cos_t)


def _smith_ggx1(v, m, alpha):
    # 2 / (1 + sqrt(1 + alpha^2 tan^2)), times |cos| above and below so that
    # nothing divides by cos^2 (1 at normal incidence, 0 at grazing).
    c = jnp.abs(v[..., 2])
    result = safe_div(2.0 * c, c + safe_sqrt(c * c + alpha * alpha * (1.0 - c * c)))
    result = jnp.where(v[..., 2] == 1.0, 1.0, result)
    return jnp.where(dot(v, m) * v[..., 2] <= 0, 0.0, result)


class _Setup:
    """What eval, pdf and sample share at one (wi, half-vector) pair."""

    def __init__(self, params, wi, rates):
        (self.base_color, self.roughness, anisotropic, self.metallic, spec_trans, self.spec_tint,
         self.sheen, self.sheen_tint, self.flatness, self.clearcoat, self.clearcoat_gloss, eta) = params
        self.eta = as_float(eta)
        self.cos_i = _cos(wi)
        self.front = self.cos_i > 0
        self.brdf = (1.0 - self.metallic) * (1.0 - spec_trans)
        self.bsdf = (1.0 - self.metallic) * spec_trans
        self.distr = Microfacet.create("ggx", *_dist_params(anisotropic, self.roughness))
        self.cc_alpha = _lerp(0.1, 0.001, self.clearcoat_gloss)
        self.rates = rates
        self.wi_side = mulsign(wi, self.cos_i[..., None])

    def probs(self, f):
        """Lobe probabilities (diffuse, clearcoat, transmission, reflection)
        given the dielectric Fresnel f at the microfacet."""
        spec_rate, cc_rate, diff_rate = self.rates
        front = self.front
        p_r = jnp.where(front, spec_rate * (1.0 - self.bsdf * (1.0 - f)), f)
        p_t = jnp.where(front, spec_rate * self.bsdf * (1.0 - f), 1.0 - f)
        p_c = jnp.where(front, 0.25 * self.clearcoat * cc_rate, 0.0)
        p_d = jnp.where(front, self.brdf * diff_rate, 0.0)
        inv = safe_div(1.0, p_r + p_t + p_c + p_d)
        return p_d * inv, p_c * inv, p_t * inv, p_r * inv


def _half_vector(s: _Setup, wi, wo):
    reflect_ = s.cos_i * _cos(wo) > 0
    eta_path = jnp.where(s.front, s.eta, safe_div(1.0, s.eta))
    wh = safe_normalize(wi + wo * jnp.where(reflect_, 1.0, eta_path)[..., None])
    wh = mulsign(wh, wh[..., 2:3])
    return wh, reflect_, eta_path


def eval_principled(base_color, roughness, anisotropic, metallic, spec_trans, spec_tint, sheen,
                    sheen_tint, flatness, clearcoat, clearcoat_gloss, eta, wi, wo, *, rates=RATES):
    """The principled BSDF's value times |cos(theta_o)| (radiance mode).

    Args:
      base_color: (..., 3). Differentiable, as are all the others.
      roughness, anisotropic, metallic, spec_trans, spec_tint, sheen,
        sheen_tint, flatness, clearcoat, clearcoat_gloss: (...) scalars
        (Mitsuba's `eval_1` of each texture).
      eta: (...) relative IOR (from `eta`, or `specular_to_eta(specular)`).
      wi, wo: (..., 3) local directions.
      rates: static (main specular, clearcoat, diffuse) sampling rates
        (unused here; the same signature as pdf and sample).
    Returns:
      (..., 3).
    """
    del rates
    wi, wo = as_float(wi), as_float(wo)
    batch = _batch(wi, wo)
    s = _Setup((base_color, roughness, anisotropic, metallic, spec_trans, spec_tint, sheen, sheen_tint,
                flatness, clearcoat, clearcoat_gloss, eta), wi, RATES)
    base = _rgb(base_color, batch)
    cos_i, cos_o = s.cos_i, _cos(wo)
    active = cos_i != 0
    wh, reflect_, eta_path = _half_vector(s, wi, wo)
    refract_ = cos_i * cos_o < 0
    wi_h, wo_h = dot(wi, wh), dot(wo, wh)
    f = fresnel_dielectric(wi_h, s.eta)[0]
    refl_ok = _mac_mic(wh, wi, wo, cos_i, True)
    spec_r = active & reflect_ & refl_ok & (f > 0)
    cc_on = active & (s.clearcoat > 0) & reflect_ & refl_ok & s.front
    spec_t = active & (s.bsdf > 0) & refract_ & _mac_mic(wh, wi, wo, cos_i, False) & (f < 1)
    diff_on = active & (s.brdf > 0) & reflect_ & s.front
    sheen_on = active & (s.sheen > 0) & reflect_ & (1.0 - s.metallic > 0) & s.front
    d = s.distr.D(wh)
    g = s.distr.G(wi, wo, wh)
    value = jnp.zeros(batch + (3,), jnp.float32)

    # Main specular reflection: principled_fresnel of Mitsuba.
    c_tint = _tint(base)
    eta_it = jnp.where(wi_h >= 0, s.eta, safe_div(1.0, s.eta))
    r0_tint = c_tint * ((eta_it - 1.0) / (eta_it + 1.0))[..., None] ** 2
    m, st = s.metallic[..., None], s.spec_tint[..., None]
    f_schlick = m * _schlick(base, wi_h, s.eta) + (1.0 - m) * st * _schlick(r0_tint, wi_h, s.eta)
    f_front = (1.0 - m) * (1.0 - st) * f[..., None] + f_schlick
    f_p = jnp.where(s.front[..., None], f_front, (s.bsdf * f)[..., None])
    value += jnp.where(spec_r[..., None], f_p * safe_div(d * g, 4.0 * jnp.abs(cos_i))[..., None], 0.0)

    # Specular transmission (radiance mode: times 1 / eta_path^2).
    den = wi_h + eta_path * wo_h
    t = jnp.abs(safe_div((1.0 - f) * d * g * wi_h * wo_h, cos_i * den * den))
    value += jnp.where(spec_t[..., None], safe_sqrt(base) * (s.bsdf * t)[..., None], 0.0)

    # Clearcoat.
    f_cc = _schlick(0.04, wi_h, s.eta)
    g_cc = _smith_ggx1(wi, wh, 0.25) * _smith_ggx1(wo, wh, 0.25)
    cc = 0.25 * s.clearcoat * f_cc * _gtr1_eval(s.cc_alpha, wh) * g_cc * jnp.abs(cos_o)
    value += jnp.where(cc_on, cc, 0.0)[..., None]

    # Diffuse, retro-reflection and fake subsurface.
    abs_o = jnp.abs(cos_o)
    cos_d = dot(wh, wo)
    diffuse = s.brdf * abs_o * INV_PI * _disney_diffuse(abs_o, jnp.abs(cos_i), cos_d, s.roughness, s.flatness)
    value += jnp.where(diff_on[..., None], base * diffuse[..., None], 0.0)

    # Sheen.
    c_sheen = _lerp(1.0, c_tint, s.sheen_tint[..., None])
    sh = s.sheen * (1.0 - s.metallic) * _schlick_weight(jnp.abs(cos_d)) * abs_o
    value += jnp.where(sheen_on[..., None], c_sheen * sh[..., None], 0.0)
    return value


def _pdf(s: _Setup, wi, wo):
    cos_i, cos_o = s.cos_i, _cos(wo)
    wh, reflect_, eta_path = _half_vector(s, wi, wo)
    refract_ = cos_i * cos_o < 0
    wi_h, wo_h = dot(wi, wh), dot(wo, wh)
    f = fresnel_dielectric(wi_h, s.eta)[0]
    p_d, p_c, p_t, p_r = s.probs(f)
    den = wi_h + eta_path * wo_h
    dwh_dwo = jnp.abs(jnp.where(reflect_, safe_div(1.0, 4.0 * wo_h), safe_div(eta_path * eta_path * wo_h, den * den)))
    refl = _mac_mic(wh, wi, wo, cos_i, True) & reflect_
    trans = _mac_mic(wh, wi, wo, cos_i, False) & refract_
    spec = s.distr.pdf_visible(s.wi_side, wh) * dwh_dwo
    pdf = jnp.where(refl, p_r * spec + p_c * _gtr1_pdf(s.cc_alpha, wh) * dwh_dwo, 0.0)
    pdf += jnp.where(reflect_, p_d * square_to_cosine_hemisphere_pdf(wo), 0.0)
    pdf += jnp.where(trans, p_t * spec, 0.0)
    return jnp.where((cos_i != 0) & (s.front | (s.bsdf > 0)), pdf, 0.0)


def pdf_principled(base_color, roughness, anisotropic, metallic, spec_trans, spec_tint, sheen,
                   sheen_tint, flatness, clearcoat, clearcoat_gloss, eta, wi, wo, *, rates=RATES):
    """Solid-angle density of `sample_principled` (arguments as
    `eval_principled`): the lobe mixture with Mitsuba's probabilities."""
    wi, wo = as_float(wi), as_float(wo)
    s = _Setup((base_color, roughness, anisotropic, metallic, spec_trans, spec_tint, sheen, sheen_tint,
                flatness, clearcoat, clearcoat_gloss, eta), wi, rates)
    return _pdf(s, wi, wo)


def sample_principled(base_color, roughness, anisotropic, metallic, spec_trans, spec_tint, sheen,
                      sheen_tint, flatness, clearcoat, clearcoat_gloss, eta, wi, u1, u2, *,
                      rates=RATES) -> BSDFSample:
    """Picks a lobe with u1 (diffuse, clearcoat, transmission, reflection, in
    Mitsuba's order and probabilities, the Fresnel term taken at the GGX
    normal sampled with u2), then samples it with u2. Weight = eval / pdf of
    the whole mixture; eta = eta_it for a refraction."""
    params = (base_color, roughness, anisotropic, metallic, spec_trans, spec_tint, sheen, sheen_tint,
              flatness, clearcoat, clearcoat_gloss, eta)
    wi = as_float(wi)
    u1, u2 = as_float(u1), as_float(u2)
    s = _Setup(params, wi, rates)
    cos_i = s.cos_i
    m_spec = s.distr.sample_visible(s.wi_side, u2)
    f, cos_t, eta_it, eta_ti = fresnel_dielectric(dot(wi, m_spec), s.eta)
    p_d, p_c, p_t, _ = s.probs(f)
    pick_d = u1 < p_d
    pick_c = ~pick_d & (u1 < p_d + p_c)
    pick_t = ~pick_d & ~pick_c & (u1 < p_d + p_c + p_t)
    pick_r = ~(pick_d | pick_c | pick_t)

    wo_r = reflect(wi, m_spec)
    wo_t = refract(wi, cos_t, eta_ti, m_spec)
    m_cc = _gtr1_sample(s.cc_alpha, u2)
    wo_c = reflect(wi, m_cc)
    wo_d = jnp.broadcast_to(square_to_cosine_hemisphere(u2), wo_r.shape)
    sel = lambda a, b, c, d: jnp.where(pick_d[..., None], a, jnp.where(  # noqa: E731
        pick_c[..., None], b, jnp.where(pick_t[..., None], c, d)))
    wo = sel(wo_d, wo_c, wo_t, wo_r)
    cos_o = _cos(wo)
    valid = (cos_i != 0) & (s.front | (s.bsdf > 0))
    valid &= ~pick_r | (_mac_mic(m_spec, wi, wo_r, cos_i, True) & (cos_i * cos_o > 0))
    valid &= ~pick_t | (_mac_mic(m_spec, wi, wo_t, cos_i, False) & (cos_i * cos_o < 0))
    valid &= ~pick_c | (_mac_mic(m_cc, wi, wo_c, cos_i, True) & (cos_i * cos_o > 0))
    valid &= ~pick_d | (cos_i * cos_o > 0)
    pdf = _pdf(s, wi, wo)
    value = eval_principled(*params, wi, wo)
    weight = value * safe_div(1.0, pdf)[..., None]
    flags = jnp.where(pick_d, DIFFUSE_REFLECTION, jnp.where(pick_t, GLOSSY_TRANSMISSION, GLOSSY_REFLECTION))
    return _finish(wo, weight, pdf, jnp.where(pick_t, eta_it, 1.0), flags, valid)


# --------------------------------------------------------------------------
# principledthin: the thin-surface variant (Mitsuba's principledthin.cpp).
# Symmetric: both sides see the same BSDF (wi is turned to the front and
# wo with it). Lobes: diffuse reflection with retro-reflection, flatness and
# sheen, Lambertian diffuse transmission (diff_trans, in [0, 2] as Mitsuba
# takes it, halved), and spec_trans-weighted GGX reflection and a
# "transmission" that reflects about a normal of a roughness scaled by
# (0.65 eta - 0.35) and mirrors the result through the surface (no
# refraction in a thin sheet).

THIN_RATES = (1.0, 1.0, 1.0, 1.0)
"""Default sampling rates (specular reflection, specular transmission,
diffuse reflection, diffuse transmission)."""


class _ThinSetup:
    def __init__(self, params, wi, rates):
        (self.base_color, self.roughness, anisotropic, self.spec_trans, self.spec_tint, self.sheen,
         self.sheen_tint, self.flatness, diff_trans, eta) = params
        self.eta = as_float(eta)
        self.diff_trans = 0.5 * as_float(diff_trans)
        self.cos_i = _cos(wi)
        self.wi = mulsign(wi, self.cos_i[..., None])
        self.refl = Microfacet.create("ggx", *_dist_params(anisotropic, self.roughness))
        scaled = (0.65 * self.eta - 0.35) * self.roughness
        self.trans = Microfacet.create("ggx", *_dist_params(anisotropic, scaled))
        r_rate, t_rate, dr_rate, dt_rate = rates
        st, dt = self.spec_trans, self.diff_trans
        p = (st * r_rate / 2, st * t_rate / 2, dr_rate * (1 - st) * (1 - dt), dt_rate * (1 - st) * dt)
        inv = safe_div(1.0, p[0] + p[1] + p[2] + p[3])
        self.p_r, self.p_t, self.p_dr, self.p_dt = (x * inv for x in p)

    def turn(self, wo):
        """wo in the frame where wi is in front; (wo_t, the half-vector of
        wi and wo_t mirrored up)."""
        wo_t = mulsign(wo, self.cos_i[..., None])
        wo_r = vec3(wo_t[..., 0], wo_t[..., 1], jnp.abs(wo_t[..., 2]))
        return wo_t, safe_normalize(self.wi + wo_r), wo_r


def eval_principledthin(base_color, roughness, anisotropic, spec_trans, spec_tint, sheen, sheen_tint,
                        flatness, diff_trans, eta, wi, wo, *, rates=THIN_RATES):
    """The thin principled BSDF's value times |cos(theta_o)| (radiance mode).

    Args:
      base_color: (..., 3). All parameters are differentiable.
      roughness, anisotropic, spec_trans, spec_tint, sheen, sheen_tint,
        flatness: (...) in [0, 1]; diff_trans: (...) in [0, 2]; eta:
        (...) the sheet's relative IOR (Mitsuba's `eval_1` of each texture).
      wi, wo: (..., 3) local directions (either side).
      rates: static sampling rates (unused here).
    Returns:
      (..., 3).
    """
    del rates
    wi, wo = as_float(wi), as_float(wo)
    batch = _batch(wi, wo)
    s = _ThinSetup((base_color, roughness, anisotropic, spec_trans, spec_tint, sheen, sheen_tint, flatness,
                    diff_trans, eta), wi, THIN_RATES)
    base = _rgb(base_color, batch)
    active = s.cos_i != 0
    cos_i = jnp.abs(s.cos_i)
    wo_t, wh, _ = s.turn(wo)
    cos_o = _cos(wo_t)
    reflect_, refract_ = cos_o > 0, cos_o < 0
    st, dt = s.spec_trans, s.diff_trans
    spec_r = active & (st > 0) & reflect_ & _mac_mic(wh, s.wi, wo_t, cos_i, True)
    spec_t = active & refract_ & (st > 0) & _mac_mic(wh, s.wi, wo_t, cos_i, False)
    diff_r = active & reflect_ & (st < 1) & (dt < 1)
    diff_t = active & refract_ & (st < 1) & (dt > 0)
    wi_h = dot(s.wi, wh)
    f = fresnel_dielectric(wi_h, s.eta)[0]
    c_tint = _tint(base)
    r0 = c_tint * ((s.eta - 1.0) / (s.eta + 1.0))[..., None] ** 2
    f_thin = _lerp(f[..., None], _schlick(r0, wi_h, s.eta), s.spec_tint[..., None])
    value = jnp.zeros(batch + (3,), jnp.float32)
    r = st * safe_div(s.refl.D(wh) * s.refl.G(s.wi, wo_t, wh), 4.0 * cos_i)
    value += jnp.where(spec_r[..., None], f_thin * r[..., None], 0.0)
    t = st * (1.0 - f) * safe_div(s.trans.D(wh) * s.trans.G(s.wi, wo_t, wh), 4.0 * cos_i)
    value += jnp.where(spec_t[..., None], base * t[..., None], 0.0)

    abs_o = jnp.abs(cos_o)
    cos_d = dot(wh, wo_t)
    w = (1.0 - st) * (1.0 - dt)
    diffuse = w * cos_o * INV_PI * _disney_diffuse(abs_o, cos_i, cos_d, s.roughness, s.flatness)
    c_sheen = _lerp(1.0, c_tint, s.sheen_tint[..., None])
    sh = s.sheen * w * _schlick_weight(jnp.abs(cos_d)) * abs_o
    value += jnp.where(diff_r[..., None], base * diffuse[..., None] + c_sheen * sh[..., None], 0.0)
    value += jnp.where(diff_t[..., None], base * ((1.0 - st) * dt * INV_PI * abs_o)[..., None], 0.0)
    return value


def _thin_pdf(s: _ThinSetup, wo):
    wo_t, wh, wo_r = s.turn(wo)
    cos_o = _cos(wo_t)
    reflect_, refract_ = cos_o > 0, cos_o < 0
    dwh_dwo = jnp.abs(safe_div(1.0, 4.0 * dot(wo_r, wh)))
    front = _cos(s.wi)  # wi turned to the front: Mitsuba passes wi.z
    pdf = jnp.where(_mac_mic(wh, s.wi, wo_t, front, True) & reflect_,
                    s.p_r * s.refl.pdf_visible(s.wi, wh) * dwh_dwo, 0.0)
    pdf += jnp.where(_mac_mic(wh, s.wi, wo_t, front, False) & refract_,
                     s.p_t * s.trans.pdf_visible(s.wi, wh) * dwh_dwo, 0.0)
    pdf += jnp.where(reflect_, s.p_dr * square_to_cosine_hemisphere_pdf(wo_t), 0.0)
    pdf += jnp.where(refract_, s.p_dt * square_to_cosine_hemisphere_pdf(-wo_t), 0.0)
    return jnp.where(s.cos_i != 0, pdf, 0.0)


def pdf_principledthin(base_color, roughness, anisotropic, spec_trans, spec_tint, sheen, sheen_tint,
                       flatness, diff_trans, eta, wi, wo, *, rates=THIN_RATES):
    """Solid-angle density of `sample_principledthin` (arguments as
    `eval_principledthin`)."""
    wi, wo = as_float(wi), as_float(wo)
    s = _ThinSetup((base_color, roughness, anisotropic, spec_trans, spec_tint, sheen, sheen_tint, flatness,
                    diff_trans, eta), wi, rates)
    return _thin_pdf(s, wo)


def sample_principledthin(base_color, roughness, anisotropic, spec_trans, spec_tint, sheen, sheen_tint,
                          flatness, diff_trans, eta, wi, u1, u2, *, rates=THIN_RATES) -> BSDFSample:
    """Picks a lobe with u1 (specular reflection, specular transmission,
    diffuse reflection, diffuse transmission, in Mitsuba's order and
    probabilities) and samples it with u2; weight = eval / pdf of the
    mixture; eta = 1 (a thin sheet bends nothing)."""
    params = (base_color, roughness, anisotropic, spec_trans, spec_tint, sheen, sheen_tint, flatness,
              diff_trans, eta)
    wi = as_float(wi)
    u1, u2 = as_float(u1), as_float(u2)
    s = _ThinSetup(params, wi, rates)
    pick_r = u1 < s.p_r
    pick_t = ~pick_r & (u1 < s.p_r + s.p_t)
    pick_dr = ~pick_r & ~pick_t & (u1 < s.p_r + s.p_t + s.p_dr)
    m_r = s.refl.sample_visible(s.wi, u2)
    wo_r = reflect(s.wi, m_r)
    m_t = s.trans.sample_visible(s.wi, u2)
    wo_t = reflect(s.wi, m_t) * jnp.array([1.0, 1.0, -1.0], jnp.float32)
    hemi = jnp.broadcast_to(square_to_cosine_hemisphere(u2), wo_r.shape)
    wo = jnp.where(pick_r[..., None], wo_r, jnp.where(pick_t[..., None], wo_t,
                                                      jnp.where(pick_dr[..., None], hemi, -hemi)))
    front = _cos(s.wi)  # wi turned to the front: Mitsuba passes wi.z
    valid = s.cos_i != 0
    valid &= ~pick_r | (_mac_mic(m_r, s.wi, wo_r, front, True) & (_cos(wo_r) > 0))
    valid &= ~pick_t | (_mac_mic(m_t, s.wi, wo_t, front, False) & (_cos(wo_t) < 0))
    wo = mulsign(wo, s.cos_i[..., None])  # back to wi's side
    pdf = _thin_pdf(s, wo)
    weight = eval_principledthin(*params, wi, wo) * safe_div(1.0, pdf)[..., None]
    flags = jnp.where(pick_r, GLOSSY_REFLECTION, jnp.where(pick_t, GLOSSY_TRANSMISSION, jnp.where(
        pick_dr, DIFFUSE_REFLECTION, DIFFUSE_TRANSMISSION)))
    return _finish(wo, weight, pdf, 1.0, flags, valid)
