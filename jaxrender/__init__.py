"""jaxrender: a physically based differentiable renderer native to JAX.

The public API, flat. Scenes (`load_file`, `load_dict`, `traverse`,
`replace`) are pytrees whose float leaves are differentiable; the ray-tracing
primitives (`build_bvh`, `intersect`, `occluded`) are native kernels with JAX
derivative and batching rules.
"""

from jaxrender import _xla_flags

# Before anything starts a JAX backend (see jaxrender/_xla_flags.py).
_xla_flags.apply()

from jaxrender._load import BUILTIN_SCENES, load_file, load_string
from jaxrender.geometry import Accel, Hit, build_bvh, intersect, occluded
from jaxrender.geometry.world import WorldGeometry, flatten_scene
from jaxrender.integrators.render import compiler_options, render
from jaxrender.io import SceneError, SceneWarning, read_image, write_image
from jaxrender.scene import (
    BSDF,
    AreaLight,
    BitmapTexture,
    CheckerboardTexture,
    Conductor,
    ConstantEmitter,
    ConstantTexture,
    Dielectric,
    Diffuse,
    DirectionalLight,
    Emitter,
    EnvironmentMap,
    Film,
    IntegratorConfig,
    Mesh,
    MeshAttributeTexture,
    BatchSensor,
    DistantSensor,
    IrradianceMeter,
    Radiancemeter,
    OrthographicCamera,
    PerspectiveCamera,
    Plastic,
    PointLight,
    ReconstructionFilter,
    RoughConductor,
    RoughDielectric,
    RoughPlastic,
    Principled,
    PrincipledThin,
    Scene,
    SpotLight,
    Texture,
    ThinDielectric,
    ThinLensCamera,
    TwoSided,
    BlendBSDF,
    BumpMap,
    Mask,
    NormalMap,
    Null,
    camera_rays,
    load_dict,
    look_at,
    replace,
    rotate,
    sample_ray,
    scale,
    translate,
    traverse,
    with_film,
)

__version__ = "0.1.0"

__all__ = [
    # rendering
    "render", "compiler_options",
    # scenes
    "BUILTIN_SCENES", "load_file", "load_string", "load_dict", "traverse", "replace",
    "Scene", "Mesh", "PerspectiveCamera", "ThinLensCamera", "OrthographicCamera", "Radiancemeter", "IrradianceMeter", "DistantSensor", "BatchSensor", "Film", "ReconstructionFilter", "IntegratorConfig",
    "BSDF", "Diffuse", "Conductor", "RoughConductor", "Plastic", "RoughPlastic", "Principled", "PrincipledThin", "Dielectric",
    "RoughDielectric", "ThinDielectric", "TwoSided", "BlendBSDF", "Mask", "NormalMap", "BumpMap", "Null",
    "Texture", "ConstantTexture", "BitmapTexture", "CheckerboardTexture", "MeshAttributeTexture",
    "Emitter", "AreaLight", "PointLight", "SpotLight", "DirectionalLight", "ConstantEmitter",
    "EnvironmentMap",
    "camera_rays", "sample_ray", "with_film", "translate", "rotate", "scale", "look_at",
    # images
    "read_image", "write_image", "SceneError", "SceneWarning",
    # ray tracing
    "Accel", "Hit", "build_bvh", "intersect", "occluded", "flatten_scene", "WorldGeometry",
    "__version__",
]
