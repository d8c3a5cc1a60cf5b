"""Integrators: `render` (path, direct) and the shading math they use."""

from jaxrender.integrators.render import render

__all__ = ["render"]
