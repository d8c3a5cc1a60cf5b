"""The scene model: pytree types, `load_dict`, `traverse` / `replace`, transforms.

A `Scene` is a pytree: float arrays (vertex positions, transforms, BSDF and
emitter parameters, texels, camera pose and fov) are differentiable leaves;
topology and configuration are static. Conventions and defaults are
Mitsuba 3's throughout.
"""

from jaxrender.scene._pytree import StaticArray
from jaxrender.scene.bsdfs import (
    BSDF,
    BlendBSDF,
    BumpMap,
    Conductor,
    Dielectric,
    Diffuse,
    Mask,
    NormalMap,
    Null,
    Plastic,
    RoughConductor,
    RoughDielectric,
    RoughPlastic,
    Principled,
    PrincipledThin,
    ThinDielectric,
    TwoSided,
)
from jaxrender.scene.emitters import (
    AreaLight,
    ConstantEmitter,
    DirectionalLight,
    Emitter,
    EnvironmentMap,
    PointLight,
    SpotLight,
)
from jaxrender.scene.load import load_dict
from jaxrender.scene.params import replace, traverse
from jaxrender.scene.scene import Ids, IntegratorConfig, Scene
from jaxrender.scene.sensors import (
    CAMERAS,
    METERS,
    SENSORS,
    BatchSensor,
    Camera,
    DistantSensor,
    Film,
    IrradianceMeter,
    OrthographicCamera,
    PerspectiveCamera,
    Radiancemeter,
    ReconstructionFilter,
    ThinLensCamera,
    camera_rays,
    sample_ray,
    with_film,
    x_fov,
)
from jaxrender.scene.shapes import Mesh, vertex_normals
from jaxrender.scene.textures import (
    BitmapTexture,
    CheckerboardTexture,
    ConstantTexture,
    MeshAttributeTexture,
    Texture,
    attribute_layout,
    bind_mesh_attributes,
)
from jaxrender.scene.transform import (
    look_at,
    rotate,
    scale,
    transform_normals,
    transform_points,
    transform_vectors,
    translate,
)

__all__ = [
    "AreaLight", "BSDF", "BatchSensor", "BitmapTexture", "CAMERAS", "METERS", "SENSORS", "Radiancemeter", "IrradianceMeter", "DistantSensor", "with_film", "Camera", "OrthographicCamera", "ThinLensCamera", "CheckerboardTexture", "Conductor", "ConstantEmitter",
    "ConstantTexture", "MeshAttributeTexture", "attribute_layout", "bind_mesh_attributes", "Dielectric", "Diffuse", "DirectionalLight", "Emitter", "EnvironmentMap",
    "Film", "Ids", "IntegratorConfig", "Mesh", "PerspectiveCamera", "Plastic", "PointLight",
    "ReconstructionFilter", "RoughConductor", "RoughDielectric", "RoughPlastic", "Principled", "PrincipledThin", "Scene",
    "SpotLight", "StaticArray", "Texture", "ThinDielectric", "TwoSided", "BlendBSDF", "Mask", "NormalMap", "BumpMap", "Null",
    "camera_rays", "load_dict", "look_at", "replace", "rotate", "sample_ray", "scale",
    "transform_normals", "transform_points", "transform_vectors", "translate", "traverse",
    "vertex_normals", "x_fov",
]
