"""Loads the native kernels and registers them as XLA FFI targets.

The CPU module is always built. The CUDA module exists when nvcc was found at
build time; it links the CUDA runtime statically, so importing it needs no
driver, and registering a "CUDA" target on a CPU-only jaxlib is harmless.
"""

from __future__ import annotations

import jax

from jaxrender import _cpu

for _name, _capsule in _cpu.registrations().items():
    jax.ffi.register_ffi_target(_name, _capsule, platform="cpu")

try:
    from jaxrender import _cuda  # noqa: F401
except ImportError:  # built without nvcc
    HAS_CUDA_KERNELS = False
else:
    HAS_CUDA_KERNELS = True
    for _name, _capsule in _cuda.registrations().items():
        jax.ffi.register_ffi_target(_name, _capsule, platform="CUDA")

BUILD_BVH = "jaxrender_build_bvh"
INTERSECT = "jaxrender_intersect"
OCCLUDED = "jaxrender_occluded"
# int32 words per 4-wide BVH node (kNodeWords in cuda/include/jaxrender/bvh.h).
NODE_WORDS = 32


def max_bvh_nodes(num_faces: int) -> int:
    """Node slots a BVH over `num_faces` triangles may use (matches the C++)."""
    return num_faces - 1 if num_faces > 2 else 1
