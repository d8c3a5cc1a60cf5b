"""Scene BSDFs as (eval, pdf, sample) at shading points.

Each BSDF of a scene becomes a triple of closures with its textures looked up
at the points' uvs; `evaluate`, `pdf` and `sample` run every BSDF the scene
holds over the batch and keep each point's own with masks (the set of BSDFs
is static, so this is trace-time Python, never a branch on traced values).
Directions are in the local shading frame (normal = +z).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from jaxrender.integrators import bsdf_math as bm
from jaxrender.integrators import principled as pr
from jaxrender.integrators._math import dot, jvp_nonzero, safe_div, safe_rsqrt, squared_norm, vec3
from jaxrender.integrators.warp import shading_frame, to_local, to_world
from jaxrender.scene import (
    Conductor,
    ConstantTexture,
    Dielectric,
    Diffuse,
    Plastic,
    RoughConductor,
    RoughDielectric,
    RoughPlastic,
    Principled,
    PrincipledThin,
    Scene,
    ThinDielectric,
    TwoSided,
    BlendBSDF,
    Mask,
    NormalMap,
    BumpMap,
    Null,
)
from jaxrender.scene.textures import MeshAttributeTexture, eval_texture, eval_texture_1, eval_texture_mean


def texture_at(tex, uv):
    """A texture's value at uv (..., 2) -> (..., C) (C = 1 or 3)."""
    if tex is None:
        return None
    if isinstance(tex, ConstantTexture):
        v = jnp.asarray(tex.value, jnp.float32)
        v = v[None] if v.ndim == 0 else v
        return jnp.broadcast_to(v, uv.shape[:-1] + v.shape)
    return eval_texture(tex, uv)


def texture_mean(tex):
    """Mitsuba's `Texture::mean` as the plastics use it: a scalar, the channel
    average of the texture's mean over [0, 1]^2 (see `eval_texture_mean`)."""
    return jnp.mean(eval_texture_mean(tex))


class Triple(NamedTuple):
    eval: Callable
    pdf: Callable
    sample: Callable


def _eta(bsdf):
    return jnp.asarray(bsdf.int_ior, jnp.float32) / jnp.asarray(bsdf.ext_ior, jnp.float32)


_KINDS = {
    Diffuse: (bm.eval_diffuse, bm.pdf_diffuse, bm.sample_diffuse),
    Conductor: (bm.eval_conductor, bm.pdf_conductor, bm.sample_conductor),
    RoughConductor: (bm.eval_roughconductor, bm.pdf_roughconductor, bm.sample_roughconductor),
    Plastic: (bm.eval_plastic, bm.pdf_plastic, bm.sample_plastic),
    RoughPlastic: (bm.eval_roughplastic, bm.pdf_roughplastic, bm.sample_roughplastic),
    Dielectric: (bm.eval_dielectric, bm.pdf_dielectric, bm.sample_dielectric),
    RoughDielectric: (bm.eval_roughdielectric, bm.pdf_roughdielectric, bm.sample_roughdielectric),
    ThinDielectric: (bm.eval_thindielectric, bm.pdf_thindielectric, bm.sample_thindielectric),
    Principled: (pr.eval_principled, pr.pdf_principled, pr.sample_principled),
    PrincipledThin: (pr.eval_principledthin, pr.pdf_principledthin, pr.sample_principledthin),
}

_PRINCIPLED_SCALARS = ("roughness", "anisotropic", "metallic", "spec_trans", "spec_tint", "sheen",
                       "sheen_tint", "flatness", "clearcoat", "clearcoat_gloss")
_THIN_SCALARS = ("roughness", "anisotropic", "spec_trans", "spec_tint", "sheen", "sheen_tint", "flatness",
                 "diff_trans", "eta")


def bsdf_params(bsdf, uv):
    """(kind, args, kwargs) of a non-twosided BSDF at uv: kind = (type, static
    options); args are arrays with the batch shape in front (or broadcastable
    scalars); the shading math of the kind takes (*args, wi, wo, **kwargs)."""
    if isinstance(bsdf, Diffuse):
        return (Diffuse,), (texture_at(bsdf.reflectance, uv),), {}
    if isinstance(bsdf, Conductor):
        return (Conductor,), (texture_at(bsdf.eta, uv), texture_at(bsdf.k, uv),
                              texture_at(bsdf.specular_reflectance, uv)), {}
    if isinstance(bsdf, RoughConductor):
        au = eval_texture_1(bsdf.alpha_u, uv)
        av = au if bsdf.alpha_v is None else eval_texture_1(bsdf.alpha_v, uv)
        kw = {"distribution": bsdf.distribution}
        return (RoughConductor, bsdf.distribution), (au, av, texture_at(bsdf.eta, uv), texture_at(bsdf.k, uv),
                                                     texture_at(bsdf.specular_reflectance, uv)), kw
    if isinstance(bsdf, Plastic):
        weight = bm.plastic_specular_sampling_weight(texture_mean(bsdf.diffuse_reflectance),
                                                     texture_mean(bsdf.specular_reflectance))
        kw = {"nonlinear": bsdf.nonlinear}
        return (Plastic, bsdf.nonlinear), (texture_at(bsdf.diffuse_reflectance, uv),
                                           texture_at(bsdf.specular_reflectance, uv), _eta(bsdf), weight), kw
    if isinstance(bsdf, RoughPlastic):
        # Its albedo tables depend on (alpha, eta): such BSDFs are not grouped.
        eta = _eta(bsdf)
        weight = bm.plastic_specular_sampling_weight(texture_mean(bsdf.diffuse_reflectance),
                                                     texture_mean(bsdf.specular_reflectance))
        tables = bm.roughplastic_tables(bsdf.alpha, eta, distribution=bsdf.distribution)
        kw = {"distribution": bsdf.distribution, "nonlinear": bsdf.nonlinear}
        return (RoughPlastic, id(bsdf)), (texture_at(bsdf.diffuse_reflectance, uv),
                                          texture_at(bsdf.specular_reflectance, uv),
                                          jnp.asarray(bsdf.alpha, jnp.float32), eta, weight, tables), kw
    if isinstance(bsdf, (Dielectric, ThinDielectric)):
        return (type(bsdf),), (_eta(bsdf), texture_at(bsdf.specular_reflectance, uv),
                               texture_at(bsdf.specular_transmittance, uv)), {}
    if isinstance(bsdf, RoughDielectric):
        au = eval_texture_1(bsdf.alpha_u, uv)
        av = au if bsdf.alpha_v is None else eval_texture_1(bsdf.alpha_v, uv)
        kw = {"distribution": bsdf.distribution}
        return (RoughDielectric, bsdf.distribution), (au, av, _eta(bsdf), texture_at(bsdf.specular_reflectance, uv),
                                                      texture_at(bsdf.specular_transmittance, uv)), kw
    if isinstance(bsdf, Principled):
        rates = (bsdf.main_specular_sampling_rate, bsdf.clearcoat_sampling_rate,
                 bsdf.diffuse_reflectance_sampling_rate)
        eta = pr.specular_to_eta(bsdf.specular) if bsdf.eta is None else jnp.asarray(bsdf.eta, jnp.float32)
        args = (texture_at(bsdf.base_color, uv),) + tuple(
            eval_texture_1(getattr(bsdf, name), uv) for name in _PRINCIPLED_SCALARS) + (eta,)
        return (Principled, rates), args, {"rates": rates}
    if isinstance(bsdf, PrincipledThin):
        rates = (bsdf.specular_reflectance_sampling_rate, bsdf.specular_transmittance_sampling_rate,
                 bsdf.diffuse_reflectance_sampling_rate, bsdf.diffuse_transmittance_sampling_rate)
        args = (texture_at(bsdf.base_color, uv),) + tuple(
            eval_texture_1(getattr(bsdf, name), uv) for name in _THIN_SCALARS)
        return (PrincipledThin, rates), args, {"rates": rates}
    raise TypeError(f"no shading model for BSDF {type(bsdf).__name__}")


def _triple(kind, args, kw) -> Triple:
    ev, pd, sa = _KINDS[kind[0]]
    return Triple(lambda wi, wo: ev(*args, wi, wo, **kw),
                  lambda wi, wo: pd(*args, wi, wo, **kw),
                  lambda wi, u1, u2: sa(*args, wi, u1, u2, **kw))


def nested_bsdfs(bsdf) -> tuple:
    """The BSDFs a BSDF wraps (twosided's `brdf`, the others' `bsdf`), or ()."""
    return bsdf.brdf if isinstance(bsdf, TwoSided) else getattr(bsdf, "bsdf", ())


def _zero_constant(tex) -> bool:
    """Whether a texture is known (not traced) to be the constant 0."""
    if not isinstance(tex, ConstantTexture):
        return False
    try:
        return not np.any(np.asarray(tex.value))
    except jax.errors.TracerArrayConversionError:
        return False


def needs_tangents(scene) -> bool:
    """Whether any BSDF of the scene depends on the orientation of the
    shading frame's tangent (anisotropic roughness, normal maps), so that
    surface interactions must carry dp_du. Isotropic BSDFs give the same
    distribution in any tangent frame, and then `make_frame(n)` is used."""
    def visit(b):
        if isinstance(b, (NormalMap, BumpMap)) or getattr(b, "alpha_v", None) is not None:
            return True
        if isinstance(b, (Principled, PrincipledThin)) and not _zero_constant(b.anisotropic):
            return True
        return any(visit(x) for x in nested_bsdfs(b))
    return any(visit(b) for b in scene.bsdfs)


# BSDFs made of other BSDFs: evaluated one by one (not grouped by kind).
WRAPPERS = (TwoSided, BlendBSDF, Mask, NormalMap, BumpMap, Null)


class LocalGeometry(NamedTuple):
    """The surface's differential geometry in the local shading frame, what
    `bumpmap` tilts: dp_du, dp_dv (..., 3) and the geometric normal n."""

    dp_du: jax.Array
    dp_dv: jax.Array
    n: jax.Array


def local_geometry(frame, geometry):
    """World (dp_du, dp_dv, n) (or None) in the local `frame`."""
    return None if geometry is None else LocalGeometry(*(to_local(frame, v) for v in geometry))


def bsdf_triple(bsdf, uv, local: LocalGeometry | None = None) -> Triple:
    """(eval(wi, wo), pdf(wi, wo), sample(wi, u1, u2)) of one scene BSDF at uv.
    `local`: the surface's geometry in the shading frame (for `bumpmap`;
    None: a flat surface whose uv axes are the frame's s and t)."""
    if isinstance(bsdf, TwoSided):
        return _twosided(bsdf, uv, local)
    if isinstance(bsdf, BlendBSDF):
        return _blend(bsdf, uv, local)
    if isinstance(bsdf, Mask):
        return _mask(bsdf, uv, local)
    if isinstance(bsdf, Null):
        return _null(uv)
    if isinstance(bsdf, NormalMap):
        return _normalmap(bsdf, uv, local)
    if isinstance(bsdf, BumpMap):
        return _bumpmap(bsdf, uv, local)
    return _triple(*bsdf_params(bsdf, uv))


def _where(mask, a, b):
    """Per point: a where mask (batch shape), else b, over BSDFSample trees."""
    return jax.tree.map(lambda x, y: jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim)), x, y), a, b)


def unit_weight(texture, uv):
    """A blend weight or opacity texture at uv: its `eval_1` in [0, 1]."""
    return jnp.clip(eval_texture_1(texture, uv), 0.0, 1.0)


def _score(p):
    """1 in value; derivative dp / p (p > 0): a discrete choice's
    probability differentiated as a weight on what was chosen."""
    held = jax.lax.stop_gradient(jnp.where(p > 0, p, 1.0))
    return jnp.where(p > 0, p / held, 1.0)


def _pass_through(wi, pdf):
    """Mitsuba's null lobe: wo = -wi, weight 1, chosen with probability pdf."""
    batch = wi.shape[:-1]
    return bm.BSDFSample(wo=-wi, weight=jnp.where((pdf > 0)[..., None], jnp.ones(batch + (3,), jnp.float32), 0.0),
                         pdf=pdf, eta=jnp.ones(batch, jnp.float32),
                         flags=jnp.full(batch, bm.NULL, jnp.int32))


def _blend(bsdf: BlendBSDF, uv, local=None) -> Triple:
    """Mitsuba's blendbsdf: (1 - w) bsdf_0 + w bsdf_1. Sampling picks bsdf_1
    with probability w (the sample reused, as Mitsuba does); a sample of a
    non-delta lobe then gets the blend's pdf and eval / pdf at its direction,
    so its pdf is the `pdf` next-event estimation's MIS weight uses (Mitsuba
    reports the picked BSDF's own pdf there). Delta lobes keep their weight
    (times pick / detach(pick), so that w's derivative reaches them); their
    lobe probability is scaled by the pick's."""
    a, b = bsdf_triple(bsdf.bsdf[0], uv, local), bsdf_triple(bsdf.bsdf[1], uv, local)
    w = unit_weight(bsdf.weight, uv)

    def ev(wi, wo):
        return a.eval(wi, wo) * (1.0 - w)[..., None] + b.eval(wi, wo) * w[..., None]

    def pd(wi, wo):
        return a.pdf(wi, wo) * (1.0 - w) + b.pdf(wi, wo) * w

    def sa(wi, u1, u2):
        # u1 < w (Mitsuba: <=), so a BSDF of weight 0 is never picked.
        second = u1 < w
        u_a = jnp.clip(safe_div(u1 - w, 1.0 - w), 0.0, 1.0 - 2**-24)
        u_b = jnp.clip(safe_div(u1, w), 0.0, 1.0 - 2**-24)
        s = _where(second, b.sample(wi, u_b, u2), a.sample(wi, u_a, u2))
        delta = bm.is_delta(s.flags)
        pdf = pd(wi, s.wo)
        ok = (s.pdf > 0) & (pdf > 0)
        pick = jnp.where(second, w, 1.0 - w)
        weight = jnp.where(delta[..., None], s.weight * _score(pick)[..., None],
                           ev(wi, s.wo) * safe_div(1.0, pdf)[..., None])
        return s._replace(weight=jnp.where(ok[..., None] | delta[..., None], weight, 0.0),
                          pdf=jnp.where(delta, s.pdf * pick, jnp.where(ok, pdf, 0.0)))

    return Triple(ev, pd, sa)


def _mask(bsdf: Mask, uv, local=None) -> Triple:
    """Mitsuba's mask: opacity o times the nested BSDF, and a null lobe
    (straight through) of probability 1 - o. The nested BSDF is sampled
    with probability o, so its samples keep their weight; their pdf is
    scaled by o, as `pdf` is (Mitsuba reports the nested pdf unscaled).
    Delta lobes (the null lobe, a nested mirror) carry p / detach(p) for
    their pick probability p, so o's derivative reaches what passes through
    as well as what the nested BSDF reflects."""
    inner = bsdf_triple(bsdf.bsdf[0], uv, local)
    o = unit_weight(bsdf.opacity, uv)

    def sa(wi, u1, u2):
        nested = u1 < o
        s = inner.sample(wi, jnp.clip(safe_div(u1, o), 0.0, 1.0 - 2**-24), u2)
        delta = bm.is_delta(s.flags)
        s = s._replace(pdf=s.pdf * o, weight=jnp.where(delta[..., None], s.weight * _score(o)[..., None], s.weight))
        through = _pass_through(wi, 1.0 - o)
        through = through._replace(weight=through.weight * _score(1.0 - o)[..., None])
        return _where(nested, s, through)

    return Triple(lambda wi, wo: inner.eval(wi, wo) * o[..., None], lambda wi, wo: inner.pdf(wi, wo) * o, sa)


def _null(uv) -> Triple:
    """Mitsuba's null BSDF: only the null lobe, always taken."""
    batch = uv.shape[:-1]
    return Triple(lambda wi, wo: jnp.zeros(batch + (3,), jnp.float32),
                  lambda wi, wo: jnp.zeros(batch, jnp.float32),
                  lambda wi, u1, u2: _pass_through(wi, jnp.ones(batch, jnp.float32)))


def perturbed_frame(n, wi):
    """The frame (s, t, n) that Mitsuba 3 (3.7.1 on) builds for `normalmap`
    and `bumpmap` in the local shading frame, from the perturbed normal n
    (..., 3), not necessarily of unit length: n is first mirrored about the
    shading normal where the incident direction wi sees it from behind
    (`flip_invalid_normals`, Schuessler et al. 2017), then normalized (+z
    where it has no length); s is the local +x made orthogonal to n (+y
    where that has no length), t = n x s."""
    flip = wi[..., 2] * dot(wi, n) <= 0
    n = jnp.where(flip[..., None], n * jnp.array([-1.0, -1.0, 1.0], jnp.float32), n)
    n2 = squared_norm(n)
    ok = n2 > 1e-30
    n = jnp.where(ok[..., None], n * safe_rsqrt(n2)[..., None], jnp.array([0.0, 0.0, 1.0], jnp.float32))
    s = vec3(1.0 - n[..., 0] * n[..., 0], -n[..., 0] * n[..., 1], -n[..., 0] * n[..., 2])
    s2 = squared_norm(s)
    s = jnp.where((s2 > 1e-30)[..., None], s * safe_rsqrt(s2)[..., None], jnp.array([0.0, 1.0, 0.0], jnp.float32))
    return s, jnp.cross(n, s), n


def _tan_theta_2(v):
    z2 = v[..., 2] * v[..., 2]
    return safe_div(jnp.maximum(1.0 - z2, 0.0), z2, fallback=jnp.inf)


def shadow_terminator(n, wo):
    """Mitsuba's `eval_shadow_terminator` (Conty Estevez et al., "A
    Microfacet-Based Shadowing Function to Solve the Bump Terminator
    Problem", 2019): the factor by which a perturbed frame's response is
    attenuated towards wo (local, unperturbed frame); n the perturbed
    normal, unit length. 1 for n = +z, 0 at the horizon."""
    alpha2 = jnp.minimum(0.125 * _tan_theta_2(n), 1.0)
    t2 = _tan_theta_2(wo)
    return jnp.where(jnp.isfinite(t2), 2.0 / (1.0 + jnp.sqrt(1.0 + alpha2 * jnp.where(jnp.isfinite(t2), t2, 0.0))), 0.0)


def _perturbed(inner: Triple, normal) -> Triple:
    """Mitsuba's `normalmap`/`bumpmap` around the nested triple: the nested
    BSDF evaluated in `perturbed_frame(normal, wi)`, its value (and sample
    weight) times `shadow_terminator`. A direction counts only where it
    lies on the same side of both frames' horizons, as in Mitsuba, so no
    light leaks through the surface. `normal` is (..., 3) in the local
    shading frame."""

    def perturb(wi, wo):
        # (frame, wi and wo in it, whether wo is on the same side of both horizons)
        frame = perturbed_frame(normal, wi)
        wo_p = to_local(frame, wo)
        return frame, to_local(frame, wi), wo_p, wo[..., 2] * wo_p[..., 2] > 0

    def ev(wi, wo):
        frame, wi_p, wo_p, ok = perturb(wi, wo)
        value = inner.eval(wi_p, wo_p) * shadow_terminator(frame[2], wo)[..., None]
        return jnp.where(ok[..., None], value, 0.0)

    def pd(wi, wo):
        _, wi_p, wo_p, ok = perturb(wi, wo)
        return jnp.where(ok, inner.pdf(wi_p, wo_p), 0.0)

    def sa(wi, u1, u2):
        frame = perturbed_frame(normal, wi)
        bs = inner.sample(to_local(frame, wi), u1, u2)
        wo = to_world(frame, bs.wo)
        ok = (bs.wo[..., 2] * wo[..., 2] > 0) & jnp.any(bs.weight != 0, axis=-1)
        weight = bs.weight * shadow_terminator(frame[2], wo)[..., None]
        return bs._replace(wo=wo, weight=jnp.where(ok[..., None], weight, 0.0), pdf=jnp.where(ok, bs.pdf, 0.0))

    return Triple(ev, pd, sa)


def _normalmap(bsdf: NormalMap, uv, local=None) -> Triple:
    """Mitsuba's normalmap: the perturbed normal is 2 rgb - 1 of the texture."""
    if isinstance(bsdf.normalmap, MeshAttributeTexture) and bsdf.normalmap.slot and bsdf.normalmap.slot[1] != 3:
        # Mitsuba's eval_3 refuses a one-channel attribute (its image is black).
        raise ValueError(f'a normalmap\'s mesh_attribute "{bsdf.normalmap.name}" must have 3 channels, '
                         f"has {bsdf.normalmap.slot[1]}")
    rgb = texture_at(bsdf.normalmap, uv)
    return _perturbed(bsdf_triple(bsdf.bsdf[0], uv, local), 2.0 * jnp.broadcast_to(rgb, rgb.shape[:-1] + (3,)) - 1.0)


def height_gradient(texture, uv):
    """(d/du, d/dv) (..., 2) of a height texture at uv: of its scalar value
    `eval_texture_1` (the luminance of an RGB bitmap; Mitsuba's
    `eval_1_grad`). The
    derivative of the lookup itself (bilinear: the interpolant's slope;
    nearest and checkerboard: zero), differentiable in the texels."""
    if isinstance(texture, MeshAttributeTexture):
        # Its value does not vary with uv: the bump map would be silently
        # flat (Mitsuba's bumpmap fails on it too).
        raise ValueError(f'a bumpmap\'s height cannot be a mesh_attribute texture ("{texture.name}"): its value '
                         f"has no uv gradient")

    def height(uv):
        return eval_texture_1(texture, uv)

    # Unit tangents along u and v (columns 0 and 1; mesh attributes after
    # them do not move with uv).
    zeros = jnp.zeros_like(uv)
    _, du = jax.jvp(height, (uv,), (zeros.at[..., 0].set(1.0),))
    _, dv = jax.jvp(height, (uv,), (zeros.at[..., 1].set(1.0),))
    return jnp.stack([du, dv], -1)


def _bumpmap(bsdf: BumpMap, uv, local=None) -> Triple:
    """Mitsuba's bumpmap: dp/du and dp/dv lifted along the shading normal by
    scale times the height's uv gradient; the perturbed normal is their
    cross product, turned to the geometric normal's side."""
    if local is None:
        batch = uv.shape[:-1]
        unit = lambda i: jnp.broadcast_to(jnp.eye(3, dtype=jnp.float32)[i], batch + (3,))  # noqa: E731
        local = LocalGeometry(unit(0), unit(1), unit(2))
    g = bsdf.scale * height_gradient(bsdf.texture, uv)
    dp_du = vec3(local.dp_du[..., 0], local.dp_du[..., 1], g[..., 0])
    dp_dv = vec3(local.dp_dv[..., 0], local.dp_dv[..., 1], g[..., 1])
    n = jnp.cross(dp_du, dp_dv)
    n = jnp.where((dot(local.n, n) < 0)[..., None], -n, n)
    return _perturbed(bsdf_triple(bsdf.bsdf[0], uv, local), n)


def _flip_z(v, back):
    return jnp.where(back[..., None], v * jnp.array([1.0, 1.0, -1.0], jnp.float32), v)


def _twosided(bsdf: TwoSided, uv, local=None) -> Triple:
    """Mitsuba's twosided: the back side sees the (second or only) BRDF
    mirrored (only the directions: a nested bump map sees the surface's
    geometry unmirrored, as in Mitsuba)."""
    front = bsdf_triple(bsdf.brdf[0], uv, local)
    back = bsdf_triple(bsdf.brdf[-1], uv, local)

    def ev(wi, wo):
        is_back = wi[..., 2] < 0
        f = front.eval(wi, wo)
        b = back.eval(_flip_z(wi, is_back), _flip_z(wo, is_back))
        return jnp.where(is_back[..., None], b, f)

    def pd(wi, wo):
        is_back = wi[..., 2] < 0
        return jnp.where(is_back, back.pdf(_flip_z(wi, is_back), _flip_z(wo, is_back)), front.pdf(wi, wo))

    def sa(wi, u1, u2):
        is_back = wi[..., 2] < 0
        f = front.sample(wi, u1, u2)
        b = back.sample(_flip_z(wi, is_back), u1, u2)
        b = b._replace(wo=_flip_z(b.wo, is_back))
        return _where(is_back, b, f)

    return Triple(ev, pd, sa)


class SceneBSDFs:
    """All of a scene's BSDFs at a batch of shading points (uv (N, 2), index (N,)).

    BSDFs of the same kind (type and static options) are evaluated once, with
    each point's parameters gathered from its own BSDF, so the cost grows with
    the number of kinds, not of BSDFs. Two-sided, blend, mask and null BSDFs
    are evaluated per BSDF.
    """

    def __init__(self, scene: Scene, uv, index, local: LocalGeometry | None = None):
        self.index = index
        groups: dict = {}
        self.triples = []  # (mask over points, Triple)
        for i, b in enumerate(scene.bsdfs):
            if isinstance(b, WRAPPERS):
                self.triples.append(((index == i), bsdf_triple(b, uv, local)))
                continue
            kind, args, kw = bsdf_params(b, uv)
            groups.setdefault(kind, []).append((i, args, kw))
        for kind, members in groups.items():
            mask = jnp.zeros(index.shape, bool)
            for i, _, _ in members:
                mask = mask | (index == i)
            if len(members) == 1:
                args = members[0][1]
            else:
                # Each point takes its own BSDF's parameters.
                def pick(*leaves):
                    leaves = [jnp.asarray(x) for x in leaves]
                    shape = jnp.broadcast_shapes(*(x.shape for x in leaves))
                    out = jnp.broadcast_to(leaves[0], shape)
                    for (i, _, _), x in zip(members[1:], leaves[1:]):
                        sel = (index == i).reshape(index.shape + (1,) * (len(shape) - index.ndim)) \
                            if len(shape) >= index.ndim and shape[:index.ndim] == index.shape else (index == i)
                        out = jnp.where(sel, jnp.broadcast_to(x, shape), out)
                    return out

                args = jax.tree.map(pick, *[m[1] for m in members])
            self.triples.append((mask, _triple(kind, args, members[0][2])))
        if not self.triples:
            # No BSDFs (a scene of emitters only): a stand-in that no point
            # selects, so eval, pdf and sample give zeros.
            black = jnp.zeros(index.shape + (3,), jnp.float32)
            self.triples.append((jnp.zeros(index.shape, bool), _triple((Diffuse,), (black,), {})))

    def _combine(self, values):
        out = jnp.zeros_like(values[0])
        for (mask, _), v in zip(self.triples, values):
            m = mask.reshape(mask.shape + (1,) * (v.ndim - mask.ndim))
            out = jnp.where(m, v, out)
        return out

    def eval(self, wi, wo):
        return self._combine([t.eval(wi, wo) for _, t in self.triples])

    def pdf(self, wi, wo):
        return self._combine([t.pdf(wi, wo) for _, t in self.triples])

    def sample(self, wi, u1, u2) -> bm.BSDFSample:
        samples = [t.sample(wi, u1, u2) for _, t in self.triples]
        return jax.tree.map(lambda *xs: self._combine(list(xs)), *samples)


def sampled_direction(scene: Scene, uv, index, sh_n, wi, bs: bm.BSDFSample, geometry=None):
    """World direction, weight and pdf of the BSDF sample `bs` drawn at
    shading points (uv, BSDF index, shading normal sh_n (N, 3)) seen from the
    world direction wi (N, 3) (towards the previous vertex), differentiated
    the way Mitsuba's `prb` does.

    geometry: (dp_du, dp_dv, n) (N, 3) each, or None (`geometry_of`):
    dp_du orients the frame's tangent (`shading_frame`).

    Returns (d (N, 3), weight (N, 3), pdf (N,)) with the values of `bs`.
    Derivatives: a sample of a non-delta lobe is a *fixed* world direction
    (no derivative), and its weight differentiates as eval(wi, d) / pdf with
    the pdf held at its value, its pdf (for MIS) as pdf(wi, d); both move
    with the BSDF's parameters and the shading frame. This is the derivative
    of the scattering integral over a fixed domain, so it is unbiased even
    where the integrand is discontinuous in direction (an environment map's
    texels, the emitter pdf inside MIS weights). Differentiating the sample
    itself instead (the direction moving with roughness and normal, the
    "reparameterized" derivative) misses the boundary terms of those
    discontinuities: roughconductor's alpha under an envmap was ~50% off.
    Delta lobes keep the reparameterized derivative (their direction moves
    with the normal and the IOR; eval and pdf are zero there).

    The re-evaluation happens in the derivative rule only, so a render that
    is not differentiated does not pay for it."""
    delta = bm.is_delta(bs.flags)
    d = to_world(shading_frame(sh_n, _dp_du(geometry)), bs.wo)
    d_fixed = jax.lax.stop_gradient(d)
    d = jnp.where(delta[..., None], d, d_fixed)
    weight, pdf = _at_fixed_direction(bs.weight, bs.pdf, delta, scene.bsdfs, uv, index, sh_n, wi, d_fixed, geometry)
    return d, weight, pdf


def _dp_du(geometry):
    return None if geometry is None else geometry[0]


@jax.custom_jvp
def _at_fixed_direction(weight, pdf, delta, bsdfs, uv, index, sh_n, wi, d, geometry):
    return weight, pdf


def _at_fixed_direction_jvp(primals, tangents):
    weight, pdf, delta, bsdfs, uv, index, sh_n, wi, d, geometry = primals
    t_weight, t_pdf = (jnp.zeros_like(x) if isinstance(t, SymbolicZero) else t
                       for x, t in zip((weight, pdf), tangents[:2]))

    def at_d(bsdfs, uv, sh_n, wi, geometry):
        frame = shading_frame(sh_n, _dp_du(geometry))
        wi_local, wo_local = to_local(frame, wi), to_local(frame, d)
        points = SceneBSDFs(_Bsdfs(bsdfs), uv, index, local_geometry(frame, geometry))
        return points.eval(wi_local, wo_local), points.pdf(wi_local, wo_local)

    _, moved = jvp_nonzero(at_d, (bsdfs, uv, sh_n, wi, geometry), tuple(tangents[i] for i in (3, 4, 6, 7, 9)))
    if moved is not None:
        d_eval, d_pdf = moved
        inv_pdf = jnp.where(pdf > 0, 1.0 / jnp.where(pdf > 0, pdf, 1.0), 0.0)
        t_weight = jnp.where(delta[..., None], t_weight, d_eval * inv_pdf[..., None])
        t_pdf = jnp.where(delta, t_pdf, d_pdf)
    else:
        t_weight = jnp.where(delta[..., None], t_weight, 0.0)
        t_pdf = jnp.where(delta, t_pdf, 0.0)
    return (weight, pdf), (t_weight, t_pdf)


_at_fixed_direction.defjvp(_at_fixed_direction_jvp, symbolic_zeros=True)


class _Bsdfs(NamedTuple):
    """What SceneBSDFs reads of a scene: its BSDFs."""

    bsdfs: tuple
