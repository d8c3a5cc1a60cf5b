"""File reading and writing: Mitsuba XML scenes, OBJ/PLY meshes, EXR/PNG images.

Host-side numpy only; nothing here is traced by JAX.
"""

from jaxrender.io.errors import SceneError, SceneWarning
from jaxrender.io.image import read_image, write_image
from jaxrender.io.mesh import (
    MeshData,
    read_obj,
    read_ply,
    read_serialized,
    write_obj,
    write_ply,
    write_serialized,
)
from jaxrender.io.xml import parse_xml

__all__ = [
    "MeshData",
    "SceneError",
    "SceneWarning",
    "parse_xml",
    "read_image",
    "read_obj",
    "read_ply",
    "read_serialized",
    "write_image",
    "write_obj",
    "write_ply",
    "write_serialized",
]
