"""Microfacet distributions: Beckmann and GGX, isotropic and anisotropic.

`Microfacet` reproduces Mitsuba 3's `MicrofacetDistribution(type, alpha_u,
alpha_v, sample_visible=True)`: the same normal distribution `D`, Smith
shadowing-masking `G1`/`G` (separable form; Beckmann through Mitsuba's
rational approximation), the same visible-normal sampling routines (GGX:
Heitz 2018, "A Simpler and Exact Sampling Routine for the GGX Distribution of
Visible Normals", in the slope-space form Mitsuba uses; Beckmann: Jakob's
numerically inverted CDF with three Newton steps) and hence the same sampled
normal for the same uniform sample. Roughness is clamped to >= 1e-4 as
Mitsuba does. Only visible-normal sampling is provided (Mitsuba's default and
what all its BSDFs use unless told `sample_visible=false`).

Directions live in the local shading frame (macro normal +z); all methods
batch over leading axes, and are NaN-free in value and derivative (derivatives
with respect to directions, samples and alpha), also at normal incidence,
grazing angles and for alpha at the clamp.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.scipy.special import erf, erfinv

from jaxrender.integrators._math import (
    EPSILON_F32,
    INV_SQRT_PI,
    as_float,
    dot,
    safe_div,
    safe_normalize,
    safe_rsqrt,
    safe_sqrt,
    vec2,
    vec3,
)
from jaxrender.integrators.warp import square_to_uniform_disk_concentric

__all__ = ["Microfacet", "DISTRIBUTIONS", "ALPHA_MIN"]

DISTRIBUTIONS = ("beckmann", "ggx")
ALPHA_MIN = 1e-4


def _sincos_phi(v):
    """(sin phi, cos phi) of v as Mitsuba's Frame3f::sincos_phi: (0, 1) when v
    is within 4 eps of the pole, otherwise clipped to [-1, 1]."""
    sin2 = v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1]
    pole = jnp.abs(sin2) <= 4 * EPSILON_F32
    inv = safe_rsqrt(jnp.where(pole, 1, sin2))
    cos_phi = jnp.where(pole, 1, jnp.clip(v[..., 0] * inv, -1, 1))
    sin_phi = jnp.where(pole, 0, jnp.clip(v[..., 1] * inv, -1, 1))
    return sin_phi, cos_phi


@dataclasses.dataclass(frozen=True)
class Microfacet:
    """A microfacet normal distribution.

    Attributes:
      distribution: "beckmann" or "ggx" (static).
      alpha_u: (...) roughness along the tangent s (x). Differentiable.
      alpha_v: (...) roughness along the bitangent t (y). Differentiable.

    A pytree (alphas are leaves). `Microfacet.create(distribution, alpha_u,
    alpha_v=None)` builds one (isotropic when alpha_v is None).
    """

    distribution: str
    alpha_u: jax.Array
    alpha_v: jax.Array

    @staticmethod
    def create(distribution: str, alpha_u, alpha_v=None) -> "Microfacet":
        if distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}"
            )
        alpha_u = as_float(alpha_u)
        alpha_v = alpha_u if alpha_v is None else as_float(alpha_v)
        return Microfacet(distribution, alpha_u, alpha_v)

    # Mitsuba's configure(): roughness below 1e-4 is clamped.
    @property
    def _au(self):
        return jnp.maximum(self.alpha_u, ALPHA_MIN)

    @property
    def _av(self):
        return jnp.maximum(self.alpha_v, ALPHA_MIN)

    def D(self, m):
        """Normal distribution function at microfacet normals m (..., 3),
        per unit projected solid angle of the macro surface; 0 for m.z <= 0
        and where D cos(theta_m) <= 1e-20 (Mitsuba's guard)."""
        au, av = self._au, self._av
        mx, my, mz = m[..., 0], m[..., 1], m[..., 2]
        cos2 = mz * mz
        if self.distribution == "beckmann":
            # exp(-tan^2 / alpha^2) underflows to 0 (float32) long before the
            # exponent reaches 150; beyond that D is exactly 0 as in Mitsuba,
            # and the lanes are cut off before the division so that neither
            # 1 / cos^4 nor the exponent's derivative can overflow.
            num = (mx / au) ** 2 + (my / av) ** 2
            ok = (cos2 > 0) & (num < 150 * cos2)
            c2 = jnp.where(ok, cos2, 1)
            result = jnp.exp(-num / c2) / (jnp.pi * au * av * c2 * c2)
            result = jnp.where(ok, result, 0)
        else:
            den = (mx / au) ** 2 + (my / av) ** 2 + cos2
            ok = den > 0
            d = jnp.where(ok, den, 1)
            result = jnp.where(ok, 1 / (jnp.pi * au * av * d * d), 0)
        return jnp.where(result * mz > 1e-20, result, 0)

    def G1(self, v, m):
        """Smith's shadowing-masking function for direction v (..., 3) and
        microfacet normal m (..., 3). 1 at normal incidence; 0 when v sees the
        back of the microfacet (dot(v, m) v.z <= 0)."""
        au, av = self._au, self._av
        xy_alpha_2 = (au * v[..., 0]) ** 2 + (av * v[..., 1]) ** 2
        vz = jnp.abs(v[..., 2])
        # Mitsuba works with tan^2(theta) alpha^2 = xy_alpha_2 / v.z^2; the
        # forms below multiply through by |v.z| instead, which is the same
        # number but never divides by v.z^2 (whose square underflows near
        # grazing, making derivatives infinite).
        if self.distribution == "beckmann":
            # a = 1 / (tan(theta) alpha); a >= 1.6 <=> 2.56 xy_alpha_2 <= v.z^2.
            flat = 2.56 * xy_alpha_2 <= vz * vz
            a = vz * safe_rsqrt(jnp.where(flat, 1, xy_alpha_2))
            a2 = a * a
            # Mitsuba's rational approximation (< 0.35 % rel. error).
            rational = (3.535 * a + 2.181 * a2) / (1 + 2.276 * a + 2.577 * a2)
            result = jnp.where(flat, 1.0, rational)
        else:
            # 2 / (1 + sqrt(1 + tan^2 alpha^2)).
            result = safe_div(2 * vz, vz + safe_sqrt(vz * vz + xy_alpha_2))
        # Normal incidence: no shadowing; and the back of a microfacet is
        # never seen (Mitsuba's two masks).
        result = jnp.where(xy_alpha_2 == 0, 1.0, result)
        return jnp.where(dot(v, m) * v[..., 2] <= 0, 0.0, result)

    def G(self, wi, wo, m):
        """Separable Smith shadowing-masking G1(wi, m) G1(wo, m)."""
        return self.G1(wi, m) * self.G1(wo, m)

    def _sample_visible_11(self, cos_theta_i, u):
        """Slope (..., 2) of a visible normal of the alpha = 1 distribution for
        an incident direction with cosine cos_theta_i in the xz-plane."""
        if self.distribution == "beckmann":
            # Jakob's improved routine: invert the visible-slope CDF in the
            # erf domain with three Newton steps (continuous in u, unlike the
            # original, which matters for QMC).
            # cos_theta_i is clamped away from 0 (grazing, where Mitsuba
            # returns NaN and its BSDFs discard the sample) so that tan and
            # the normalization below stay finite.
            cos_i = jnp.maximum(cos_theta_i, 1e-7)
            tan_i = safe_sqrt(1 - cos_i * cos_i) / cos_i
            tan_pos = tan_i > 0
            # cot = +inf at normal incidence in Mitsuba; any huge value gives
            # the same erf() = 1 and exp(-cot^2) = 0.
            cot_i = jnp.where(tan_pos, 1 / jnp.where(tan_pos, tan_i, 1), 1e30)
            maxval = erf(cot_i)
            u = jnp.clip(u, 1e-6, 1 - 1e-6)
            ux, uy = u[..., 0], u[..., 1]
            # Initial guess: the analytic solution for theta_i = pi / 2.
            x = maxval - (maxval + 1) * erf(jnp.sqrt(-jnp.log(ux)))
            exp_cot = jnp.exp(-jnp.minimum(cot_i, 1e15) ** 2)
            ux = ux * (1 + maxval + INV_SQRT_PI * tan_i * exp_cot)
            for _ in range(3):
                slope = erfinv(jnp.clip(x, -1 + 1e-7, 1 - 1e-7))
                value = 1 + x + INV_SQRT_PI * tan_i * jnp.exp(-slope * slope) - ux
                derivative = 1 - slope * tan_i
                x = x - safe_div(value, derivative)
            x = jnp.clip(x, -1 + 1e-7, 1 - 1e-7)
            return vec2(erfinv(x), erfinv(2 * uy - 1))

        # GGX: choose a projection direction, rescale the sample onto the
        # visible half of the disk, project onto the hemisphere, to slopes.
        p = square_to_uniform_disk_concentric(u)
        px, py = p[..., 0], p[..., 1]
        s = 0.5 * (1 + cos_theta_i)
        py = safe_sqrt(1 - px * px) * (1 - s) + py * s
        z = safe_sqrt(1 - px * px - py * py)
        sin_i = safe_sqrt(1 - cos_theta_i * cos_theta_i)
        den = sin_i * py + cos_theta_i * z
        # den = 0 only at exactly grazing incidence on the disk's rim (Mitsuba
        # divides by zero there); a tiny floor keeps the slope finite.
        den = jnp.where(jnp.abs(den) < 1e-12, 1e-12, den)
        norm = 1 / den
        return vec2((cos_theta_i * py - sin_i * z) * norm, px * norm)

    def sample_visible(self, wi, u):
        """Samples a microfacet normal from the distribution of normals
        visible from wi (..., 3, wi.z > 0 for a meaningful result).

        Args:
          wi: (..., 3) unit incident direction. Differentiable.
          u: (..., 2) uniform samples. Differentiable.
        Returns:
          m (..., 3), a unit normal with m.z > 0. Its density is
          `pdf_visible(wi, m)`.
        """
        au, av = self._au, self._av
        # Stretch wi to the alpha = 1 configuration.
        wi_p = safe_normalize(vec3(au * wi[..., 0], av * wi[..., 1], wi[..., 2]))
        sin_phi, cos_phi = _sincos_phi(wi_p)
        slope = self._sample_visible_11(wi_p[..., 2], u)
        sx, sy = slope[..., 0], slope[..., 1]
        # Rotate and unstretch.
        sx, sy = (cos_phi * sx - sin_phi * sy) * au, (sin_phi * sx + cos_phi * sy) * av
        return safe_normalize(vec3(-sx, -sy, jnp.ones_like(sx)))

    def pdf_visible(self, wi, m):
        """Density (per unit solid angle of m) of `sample_visible`:
        D(m) G1(wi, m) |wi . m| / wi.z (0 where wi.z == 0)."""
        return safe_div(self.D(m) * self.G1(wi, m) * jnp.abs(dot(wi, m)), wi[..., 2])

    def sample(self, wi, u):
        """(m, pdf_visible(wi, m)) for m = sample_visible(wi, u), as Mitsuba's
        `MicrofacetDistribution.sample`."""
        m = self.sample_visible(wi, u)
        return m, self.pdf_visible(wi, m)


jax.tree_util.register_dataclass(
    Microfacet, data_fields=["alpha_u", "alpha_v"], meta_fields=["distribution"]
)
