"""Ray-tracing primitives: BVH build, closest hit, any hit (native kernels)."""

from jaxrender.geometry._ffi import HAS_CUDA_KERNELS
from jaxrender.geometry.accel import Accel, Hit, build_bvh, intersect, occluded

__all__ = ["Accel", "Hit", "build_bvh", "intersect", "occluded", "HAS_CUDA_KERNELS"]
