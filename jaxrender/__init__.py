"""jaxrender: a physically based differentiable renderer native to JAX."""

from jaxrender.geometry import Accel, Hit, build_bvh, intersect, occluded

__version__ = "0.1.0"

__all__ = ["Accel", "Hit", "build_bvh", "intersect", "occluded", "__version__"]
