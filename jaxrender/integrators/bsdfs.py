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

from jaxrender.integrators import bsdf_math as bm
from jaxrender.scene import (
    Conductor,
    ConstantTexture,
    Dielectric,
    Diffuse,
    Plastic,
    RoughConductor,
    RoughDielectric,
    RoughPlastic,
    Scene,
    ThinDielectric,
    TwoSided,
)


def texture_at(tex, uv):
    """A texture's value at uv (..., 2) -> (..., C) (C = 1 or 3)."""
    if tex is None:
        return None
    if isinstance(tex, ConstantTexture):
        v = jnp.asarray(tex.value, jnp.float32)
        v = v[None] if v.ndim == 0 else v
        return jnp.broadcast_to(v, uv.shape[:-1] + v.shape)
    from jaxrender.scene.textures import eval_texture  # texture lookups (bitmap, checkerboard)

    return eval_texture(tex, uv)


def texture_mean(tex):
    """Mean over the texture's values (Mitsuba's `Texture::mean`), a scalar."""
    if isinstance(tex, ConstantTexture):
        return jnp.mean(jnp.asarray(tex.value, jnp.float32))
    data = getattr(tex, "data", None)
    if data is not None:
        return jnp.mean(data)
    return jnp.float32(0.5)


def _scalar(x):
    """A texture value (..., C) reduced to (...) (alpha, eta given as textures)."""
    return x[..., 0]


class Triple(NamedTuple):
    eval: Callable
    pdf: Callable
    sample: Callable


def _eta(bsdf):
    return jnp.asarray(bsdf.int_ior, jnp.float32) / jnp.asarray(bsdf.ext_ior, jnp.float32)


def bsdf_triple(bsdf, uv) -> Triple:
    """(eval(wi, wo), pdf(wi, wo), sample(wi, u1, u2)) of one scene BSDF at uv."""
    if isinstance(bsdf, Diffuse):
        r = texture_at(bsdf.reflectance, uv)
        return Triple(lambda wi, wo: bm.eval_diffuse(r, wi, wo),
                      lambda wi, wo: bm.pdf_diffuse(r, wi, wo),
                      lambda wi, u1, u2: bm.sample_diffuse(r, wi, u1, u2))
    if isinstance(bsdf, Conductor):
        args = (texture_at(bsdf.eta, uv), texture_at(bsdf.k, uv), texture_at(bsdf.specular_reflectance, uv))
        return Triple(lambda wi, wo: bm.eval_conductor(*args, wi, wo),
                      lambda wi, wo: bm.pdf_conductor(*args, wi, wo),
                      lambda wi, u1, u2: bm.sample_conductor(*args, wi, u1, u2))
    if isinstance(bsdf, RoughConductor):
        au = _scalar(texture_at(bsdf.alpha_u, uv))
        av = au if bsdf.alpha_v is None else _scalar(texture_at(bsdf.alpha_v, uv))
        args = (au, av, texture_at(bsdf.eta, uv), texture_at(bsdf.k, uv),
                texture_at(bsdf.specular_reflectance, uv))
        kw = {"distribution": bsdf.distribution}
        return Triple(lambda wi, wo: bm.eval_roughconductor(*args, wi, wo, **kw),
                      lambda wi, wo: bm.pdf_roughconductor(*args, wi, wo, **kw),
                      lambda wi, u1, u2: bm.sample_roughconductor(*args, wi, u1, u2, **kw))
    if isinstance(bsdf, Plastic):
        weight = bm.plastic_specular_sampling_weight(texture_mean(bsdf.diffuse_reflectance),
                                                     texture_mean(bsdf.specular_reflectance))
        args = (texture_at(bsdf.diffuse_reflectance, uv), texture_at(bsdf.specular_reflectance, uv),
                _eta(bsdf), weight)
        kw = {"nonlinear": bsdf.nonlinear}
        return Triple(lambda wi, wo: bm.eval_plastic(*args, wi, wo, **kw),
                      lambda wi, wo: bm.pdf_plastic(*args, wi, wo, **kw),
                      lambda wi, u1, u2: bm.sample_plastic(*args, wi, u1, u2, **kw))
    if isinstance(bsdf, RoughPlastic):
        eta = _eta(bsdf)
        weight = bm.plastic_specular_sampling_weight(texture_mean(bsdf.diffuse_reflectance),
                                                     texture_mean(bsdf.specular_reflectance))
        tables = bm.roughplastic_tables(bsdf.alpha, eta, distribution=bsdf.distribution)
        args = (texture_at(bsdf.diffuse_reflectance, uv), texture_at(bsdf.specular_reflectance, uv),
                jnp.asarray(bsdf.alpha, jnp.float32), eta, weight, tables)
        kw = {"distribution": bsdf.distribution, "nonlinear": bsdf.nonlinear}
        return Triple(lambda wi, wo: bm.eval_roughplastic(*args, wi, wo, **kw),
                      lambda wi, wo: bm.pdf_roughplastic(*args, wi, wo, **kw),
                      lambda wi, u1, u2: bm.sample_roughplastic(*args, wi, u1, u2, **kw))
    if isinstance(bsdf, Dielectric):
        args = (_eta(bsdf), texture_at(bsdf.specular_reflectance, uv),
                texture_at(bsdf.specular_transmittance, uv))
        return Triple(lambda wi, wo: bm.eval_dielectric(*args, wi, wo),
                      lambda wi, wo: bm.pdf_dielectric(*args, wi, wo),
                      lambda wi, u1, u2: bm.sample_dielectric(*args, wi, u1, u2))
    if isinstance(bsdf, RoughDielectric):
        au = _scalar(texture_at(bsdf.alpha_u, uv))
        av = au if bsdf.alpha_v is None else _scalar(texture_at(bsdf.alpha_v, uv))
        args = (au, av, _eta(bsdf), texture_at(bsdf.specular_reflectance, uv),
                texture_at(bsdf.specular_transmittance, uv))
        kw = {"distribution": bsdf.distribution}
        return Triple(lambda wi, wo: bm.eval_roughdielectric(*args, wi, wo, **kw),
                      lambda wi, wo: bm.pdf_roughdielectric(*args, wi, wo, **kw),
                      lambda wi, u1, u2: bm.sample_roughdielectric(*args, wi, u1, u2, **kw))
    if isinstance(bsdf, ThinDielectric):
        args = (_eta(bsdf), texture_at(bsdf.specular_reflectance, uv),
                texture_at(bsdf.specular_transmittance, uv))
        return Triple(lambda wi, wo: bm.eval_thindielectric(*args, wi, wo),
                      lambda wi, wo: bm.pdf_thindielectric(*args, wi, wo),
                      lambda wi, u1, u2: bm.sample_thindielectric(*args, wi, u1, u2))
    if isinstance(bsdf, TwoSided):
        return _twosided(bsdf, uv)
    raise TypeError(f"no shading model for BSDF {type(bsdf).__name__}")


def _flip_z(v, back):
    return jnp.where(back[..., None], v * jnp.array([1.0, 1.0, -1.0], jnp.float32), v)


def _twosided(bsdf: TwoSided, uv) -> Triple:
    """Mitsuba's twosided: the back side sees the (second or only) BRDF mirrored."""
    front = bsdf_triple(bsdf.brdf[0], uv)
    back = bsdf_triple(bsdf.brdf[-1], uv)

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
        return jax.tree.map(lambda x, y: jnp.where(is_back.reshape(is_back.shape + (1,) * (x.ndim - is_back.ndim)), y, x), f, b)

    return Triple(ev, pd, sa)


def _select(index, values):
    """values[i] where index == i (values: list of same-shaped arrays)."""
    out = jnp.zeros_like(values[0])
    for i, v in enumerate(values):
        mask = (index == i).reshape(index.shape + (1,) * (v.ndim - index.ndim))
        out = jnp.where(mask, v, out)
    return out


class SceneBSDFs:
    """All of a scene's BSDFs at a batch of shading points (uv (N, 2), index (N,))."""

    def __init__(self, scene: Scene, uv, index):
        self.index = index
        self.triples = [bsdf_triple(b, uv) for b in scene.bsdfs]

    def eval(self, wi, wo):
        return _select(self.index, [t.eval(wi, wo) for t in self.triples])

    def pdf(self, wi, wo):
        return _select(self.index, [t.pdf(wi, wo) for t in self.triples])

    def sample(self, wi, u1, u2) -> bm.BSDFSample:
        samples = [t.sample(wi, u1, u2) for t in self.triples]
        return jax.tree.map(lambda *xs: _select(self.index, list(xs)), *samples)
