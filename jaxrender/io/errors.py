"""Errors and warnings raised while reading scene, mesh and image files."""

from __future__ import annotations

import os


class SceneError(ValueError):
    """A scene, mesh or image file could not be read.

    The message starts with where the problem is (`path:line: ...` when a
    line is known, `path: ...` otherwise), then says what is wrong.
    """


class SceneWarning(UserWarning):
    """Something in a scene file was ignored or approximated."""


def where(path: str | os.PathLike, line: int | None = None) -> str:
    """Formats a location as `path:line` (or just `path` when `line` is None)."""
    return f"{os.fspath(path)}:{line}" if line is not None else os.fspath(path)
