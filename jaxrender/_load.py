"""`load_file` / `load_string`: Mitsuba XML -> scene dict -> `Scene` pytree."""

from __future__ import annotations

import os
from pathlib import Path

from jaxrender.io import parse_xml
from jaxrender.scene import Scene, load_dict

_DATA = Path(__file__).resolve().parent / "data"

# Scenes that ship with the package, loadable by name.
BUILTIN_SCENES = {"cbox": _DATA / "cbox" / "cbox.xml"}


def resolve_scene_path(path: str | os.PathLike) -> Path:
    """The file a scene argument names: an existing path, else a built-in name.

    Raises FileNotFoundError naming the path tried and the built-in names.
    """
    p = Path(path)
    if p.exists():
        return p
    if str(path) in BUILTIN_SCENES:
        return BUILTIN_SCENES[str(path)]
    raise FileNotFoundError(
        f"scene file {str(path)!r} not found (tried {p.resolve()}); "
        f"built-in scenes: {', '.join(sorted(BUILTIN_SCENES))}"
    )


def load_file(path: str | os.PathLike, **params) -> Scene:
    """Loads a Mitsuba scene file (3.x XML or the 0.5/0.6 dialect PSDR-CUDA uses).

    Args:
      path: the XML file, or the name of a built-in scene ("cbox").
      **params: values for `$name` parameters, overriding the file's
        `<default>`s (e.g. `spp=16, res=64`).

    Returns:
      A `Scene` pytree; its float leaves (see `traverse`) are differentiable.

    Raises:
      SceneError (a ValueError) naming the file and line for malformed XML,
      unknown plugins, bad values, missing mesh/texture files (with the path
      tried) and invalid meshes; FileNotFoundError if the scene file is missing.
    """
    return load_dict(parse_xml(str(resolve_scene_path(path)), params))


def load_string(xml: str, **params) -> Scene:
    """Like `load_file` for XML text; relative paths resolve against the cwd."""
    return load_dict(parse_xml(xml, params, is_string=True))
