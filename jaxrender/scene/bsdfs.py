"""BSDF types: the parameters of Mitsuba 3's BSDF plugins, as pytrees.

Each type stores what its Mitsuba plugin takes, with Mitsuba's defaults (the
loader fills them in); the integrators implement the scattering. Texture-valued
fields hold a `Texture` (a float or rgb in the scene becomes a
`ConstantTexture`); float fields hold float32 scalars. All float arrays are
differentiable; `distribution` and `nonlinear` are static.

Parameter names (`traverse`) are the field names, as in Mitsuba: e.g.
`"BSDF[0].reflectance.value"`, `"glass.int_ior"`, `"metal.alpha.value"`. A
rough BSDF that was given one isotropic `alpha` holds it in `alpha_u` (with
`alpha_v` None) and names it `alpha`, as Mitsuba does.

The static `id` of a BSDF, emitter or texture is the prefix of its parameter
names, as Mitsuba's `traverse` forms them: the object's id when it is defined
at the root of the scene; "<parent name>.<role>" when it is nested in an
object with a name ("light.bsdf", "panel.bsdf.brdf_0", "red.reflectance"),
whatever id it has of its own (`Scene.ids` still finds it by that id); else
its own id, or None for positional names ("BSDF[2]").
"""

from __future__ import annotations

import jax

from jaxrender.scene._pytree import pytree, static
from jaxrender.scene.textures import Texture


class BSDF:
    """Base class of the BSDF types (abstract; never instantiated)."""

    __slots__ = ()


@pytree
class Diffuse(BSDF):
    """Mitsuba's `diffuse` (Lambertian).

    Attributes:
      reflectance: Texture, albedo (default 0.5).
      id: the prefix of its parameter names (static; see the module
        docstring).
    """

    reflectance: Texture
    id: str | None = static(default=None)


@pytree
class Conductor(BSDF):
    """Mitsuba's `conductor`: a smooth metal (Fresnel with complex IOR).

    Attributes:
      eta, k: Texture, real and imaginary parts of the relative IOR (rgb for a
        named `material`, whose values come from `data.CONDUCTORS`; defaults
        are material "none": eta = 0, k = 1, a perfect mirror).
      specular_reflectance: Texture, scale on the reflectance (default 1).
      id: see `Diffuse.id`.
    """

    eta: Texture
    k: Texture
    specular_reflectance: Texture
    id: str | None = static(default=None)


@pytree
class RoughConductor(BSDF):
    """Mitsuba's `roughconductor`: microfacet metal.

    Attributes:
      alpha_u: Texture, roughness along the tangent (or the isotropic `alpha`
        when alpha_v is None; default 0.1), read as Mitsuba's `eval_1`
        (`eval_texture_1`).
      alpha_v: Texture or None (isotropic).
      eta, k, specular_reflectance: as in `Conductor`.
      distribution: "beckmann" (Mitsuba's default) or "ggx" (static).
      id: see `Diffuse.id`.
    """

    alpha_u: Texture
    alpha_v: Texture | None
    eta: Texture
    k: Texture
    specular_reflectance: Texture
    distribution: str = static(default="beckmann")
    id: str | None = static(default=None)


@pytree
class Plastic(BSDF):
    """Mitsuba's `plastic`: diffuse base under a smooth dielectric coating.

    Attributes:
      diffuse_reflectance: Texture (default 0.5).
      specular_reflectance: Texture (default 1).
      int_ior, ext_ior: float32 scalars (defaults polypropylene 1.49 and air
        1.000277; Mitsuba's traverse shows their ratio as `eta`).
      nonlinear: account for color shifts from internal scattering (static,
        default False).
      id: see `Diffuse.id`.
    """

    diffuse_reflectance: Texture
    specular_reflectance: Texture
    int_ior: jax.Array
    ext_ior: jax.Array
    nonlinear: bool = static(default=False)
    id: str | None = static(default=None)


@pytree
class RoughPlastic(BSDF):
    """Mitsuba's `roughplastic`: diffuse base under a rough dielectric coating.

    Attributes:
      diffuse_reflectance, specular_reflectance, int_ior, ext_ior: as in
        `Plastic`.
      alpha: float32 scalar roughness (default 0.1; a plain float in Mitsuba,
        not a texture, so it is named `alpha`, not `alpha.value`).
      distribution: "beckmann" (default) or "ggx" (static).
      nonlinear: static, default False.
      id: see `Diffuse.id`.
    """

    diffuse_reflectance: Texture
    specular_reflectance: Texture
    int_ior: jax.Array
    ext_ior: jax.Array
    alpha: jax.Array
    distribution: str = static(default="beckmann")
    nonlinear: bool = static(default=False)
    id: str | None = static(default=None)


@pytree
class Dielectric(BSDF):
    """Mitsuba's `dielectric`: a smooth interface between two IORs.

    Attributes:
      int_ior, ext_ior: float32 scalars (defaults bk7 1.5046 and air 1.000277).
      specular_reflectance, specular_transmittance: Texture (default 1).
      id: see `Diffuse.id`.
    """

    int_ior: jax.Array
    ext_ior: jax.Array
    specular_reflectance: Texture
    specular_transmittance: Texture
    id: str | None = static(default=None)


@pytree
class RoughDielectric(BSDF):
    """Mitsuba's `roughdielectric`: a microfacet interface between two IORs.

    Attributes:
      int_ior, ext_ior, specular_reflectance, specular_transmittance: as in
        `Dielectric`.
      alpha_u, alpha_v: as in `RoughConductor` (default isotropic 0.1).
      distribution: "beckmann" (default) or "ggx" (static).
      id: see `Diffuse.id`.
    """

    int_ior: jax.Array
    ext_ior: jax.Array
    specular_reflectance: Texture
    specular_transmittance: Texture
    alpha_u: Texture
    alpha_v: Texture | None
    distribution: str = static(default="beckmann")
    id: str | None = static(default=None)


@pytree
class ThinDielectric(BSDF):
    """Mitsuba's `thindielectric`: a thin slab (two parallel interfaces).

    Attributes: as in `Dielectric` (defaults bk7 / air).
    """

    int_ior: jax.Array
    ext_ior: jax.Array
    specular_reflectance: Texture
    specular_transmittance: Texture
    id: str | None = static(default=None)


@pytree
class Principled(BSDF):
    """Mitsuba's `principled`: Burley's Disney BSDF (diffuse with
    retro-reflection and fake subsurface, sheen, anisotropic GGX specular
    reflection and transmission, clearcoat).

    Attributes (Textures; the scalar ones are read as Mitsuba's `eval_1`:
    the channel mean of a constant rgb, the luminance of an RGB bitmap):
      base_color: colour (default 0.5).
      roughness: default 0.5.
      anisotropic, metallic, spec_trans, spec_tint, sheen, sheen_tint,
        flatness, clearcoat, clearcoat_gloss: default 0. All in [0, 1].
      eta: float32 scalar, relative IOR, when the scene gave `eta`; else None.
      specular: float32 scalar when the scene gave `specular` (or neither:
        default 0.5, eta 1.5); else None. eta = 2 / (1 - sqrt(0.08
        specular)) - 1. Exactly one of eta and specular is set, as in
        Mitsuba's traverse.
      main_specular_sampling_rate, clearcoat_sampling_rate,
        diffuse_reflectance_sampling_rate: lobe sampling rates (static,
        default 1; Mitsuba marks them non-differentiable).
      id: see `Diffuse.id`.
    """

    base_color: Texture
    roughness: Texture
    anisotropic: Texture
    metallic: Texture
    spec_trans: Texture
    spec_tint: Texture
    sheen: Texture
    sheen_tint: Texture
    flatness: Texture
    clearcoat: Texture
    clearcoat_gloss: Texture
    eta: jax.Array | None
    specular: jax.Array | None
    main_specular_sampling_rate: float = static(default=1.0)
    clearcoat_sampling_rate: float = static(default=1.0)
    diffuse_reflectance_sampling_rate: float = static(default=1.0)
    id: str | None = static(default=None)


@pytree
class PrincipledThin(BSDF):
    """Mitsuba's `principledthin`: the principled BSDF of a thin two-sided
    sheet (leaves, paper, curtains): diffuse reflection with retro-reflection,
    flatness and sheen, Lambertian diffuse transmission, and GGX specular
    reflection and (unbent) transmission weighted by spec_trans.

    Attributes (Textures, scalars read as Mitsuba's `eval_1`):
      base_color: colour (default 0.5).
      roughness: default 0.5.
      anisotropic, spec_trans, spec_tint, sheen, sheen_tint, flatness:
        default 0, in [0, 1].
      diff_trans: diffuse transmission, in [0, 2] (default 0; halved, as
        Mitsuba does).
      eta: the sheet's relative IOR (default 1.5); it scales the specular
        transmission's roughness by 0.65 eta - 0.35.
      specular_reflectance_sampling_rate, specular_transmittance_sampling_rate,
        diffuse_reflectance_sampling_rate, diffuse_transmittance_sampling_rate:
        lobe sampling rates (static, default 1).
      id: see `Diffuse.id`.
    """

    base_color: Texture
    roughness: Texture
    anisotropic: Texture
    spec_trans: Texture
    spec_tint: Texture
    sheen: Texture
    sheen_tint: Texture
    flatness: Texture
    diff_trans: Texture
    eta: Texture
    specular_reflectance_sampling_rate: float = static(default=1.0)
    specular_transmittance_sampling_rate: float = static(default=1.0)
    diffuse_reflectance_sampling_rate: float = static(default=1.0)
    diffuse_transmittance_sampling_rate: float = static(default=1.0)
    id: str | None = static(default=None)


@pytree
class TwoSided(BSDF):
    """Mitsuba's `twosided`: a one-sided BSDF made two-sided.

    Attributes:
      brdf: a tuple of one BSDF (used on both sides) or two (front, back),
        none of them TwoSided. Named `brdf_0`, `brdf_1` as in Mitsuba.
      id: see `Diffuse.id`.
    """

    brdf: tuple[BSDF, ...]
    id: str | None = static(default=None)


@pytree
class BlendBSDF(BSDF):
    """Mitsuba's `blendbsdf`: (1 - weight) bsdf_0 + weight bsdf_1.

    Attributes:
      weight: Texture, the blend weight in [0, 1] (Mitsuba's `eval_1`, see
        `eval_texture_1`; values outside are clamped, as Mitsuba does).
      bsdf: the two nested BSDFs (bsdf_0, bsdf_1), either may be any BSDF.
      id: see `Diffuse.id`.
    Sampling picks bsdf_1 with probability weight, and a sample of a
    non-delta lobe is weighed with the blend's eval and pdf at its direction
    (so the pdf it reports is `pdf`'s, which MIS needs).
    """

    weight: Texture
    bsdf: tuple[BSDF, BSDF]
    id: str | None = static(default=None)


@pytree
class Mask(BSDF):
    """Mitsuba's `mask`: a nested BSDF with an opacity; the rest of the
    light passes straight through (Mitsuba's null lobe).

    Attributes:
      opacity: Texture, in [0, 1] (Mitsuba's `eval_1`, see `eval_texture_1`;
        clamped; default 0.5).
      bsdf: a tuple of the one nested BSDF (named `nested_bsdf` in
        parameter names, as in Mitsuba).
      id: see `Diffuse.id`.
    """

    opacity: Texture
    bsdf: tuple[BSDF]
    id: str | None = static(default=None)


@pytree
class NormalMap(BSDF):
    """Mitsuba's `normalmap`: the nested BSDF evaluated in a shading frame
    whose normal is read from a texture.

    Attributes:
      normalmap: Texture whose RGB value c gives the perturbed normal
        normalize(2 c - 1) in the surface's local shading frame (+z the
        shading normal, +x its tangent); use a bitmap with `raw=True`, as
        Mitsuba's docs say. Differentiable (texels included).
      bsdf: a tuple of the one nested BSDF (`nested_bsdf` in parameter
        names, as in Mitsuba).
      id: see `Diffuse.id`.
    """

    normalmap: Texture
    bsdf: tuple[BSDF]
    id: str | None = static(default=None)


@pytree
class BumpMap(BSDF):
    """Mitsuba's `bumpmap`: the nested BSDF evaluated in a shading frame
    tilted by the uv gradient of a height texture.

    Attributes:
      texture: Texture, the height field (its first channel; the luminance
        of an RGB bitmap, as Mitsuba's `eval_1`); its uv gradient is that of
        the bilinear lookup (zero for nearest filtering, as in Mitsuba).
        Differentiable (texels included). `nested_texture` in parameter
        names, as in Mitsuba.
      scale: float, multiplies the gradient (static; Mitsuba marks it
        non-differentiable too).
      bsdf: a tuple of the one nested BSDF (`nested_bsdf`).
      id: see `Diffuse.id`.
    """

    texture: Texture
    bsdf: tuple[BSDF]
    scale: float = static(default=1.0)
    id: str | None = static(default=None)


@pytree
class Null(BSDF):
    """Mitsuba's `null`: light passes through unchanged (an invisible
    surface; it still blocks shadow rays and counts as a bounce, as in
    Mitsuba's path tracer)."""

    id: str | None = static(default=None)
