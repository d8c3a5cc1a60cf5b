// Argument checks shared by the CPU and CUDA FFI handlers (host code only).
// The Python wrappers check first and name the parameter; these keep a
// handler safe when it is called with buffers that bypassed them.
#pragma once

#include "jaxrender/bvh.h"
#include "xla/ffi/api/ffi.h"

// The operands of both ray queries (closest hit, any hit), appended to an
// ffi::Ffi::Bind() chain after its context: the Accel's arrays, then the rays.
#define JAXRENDER_QUERY_OPERANDS                                   \
  .Arg<xla::ffi::Buffer<xla::ffi::S32>>()   /* nodes (M, 32) */     \
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>() /* tris (F, 9) */     \
      .Arg<xla::ffi::Buffer<xla::ffi::S32>>() /* prim_ids (F,) */   \
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>() /* origins (N, 3) */  \
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>() /* directions (N, 3) */ \
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>() /* t_max (N,) */

namespace jaxrender {

inline xla::ffi::Error check_accel(const xla::ffi::Buffer<xla::ffi::S32>& nodes,
                                   const xla::ffi::Buffer<xla::ffi::F32>& tris,
                                   const xla::ffi::Buffer<xla::ffi::S32>& prim_ids) {
  if (nodes.element_count() % kNodeWords != 0 || nodes.element_count() == 0)
    return xla::ffi::Error::InvalidArgument("accel.nodes must have shape (M, 32) with M >= 1");
  if (tris.element_count() % 9 != 0 || prim_ids.element_count() != tris.element_count() / 9)
    return xla::ffi::Error::InvalidArgument("accel.tris must be (F, 9) and accel.prim_ids (F,)");
  return xla::ffi::Error::Success();
}

inline xla::ffi::Error check_rays(const xla::ffi::Buffer<xla::ffi::F32>& origins,
                                  const xla::ffi::Buffer<xla::ffi::F32>& directions,
                                  const xla::ffi::Buffer<xla::ffi::F32>& t_max) {
  if (origins.element_count() % 3 != 0 || directions.element_count() != origins.element_count() ||
      t_max.element_count() * 3 != origins.element_count())
    return xla::ffi::Error::InvalidArgument("origins, directions must be (N, 3) and t_max (N,)");
  return xla::ffi::Error::Success();
}

// Checks the inputs of build_bvh and the shapes of its outputs.
inline xla::ffi::Error check_build(const xla::ffi::Buffer<xla::ffi::F32>& vertices,
                                   const xla::ffi::Buffer<xla::ffi::S32>& faces,
                                   int64_t nodes_count, int64_t tris_count, int64_t prim_count) {
  const int64_t F = faces.element_count() / 3;
  if (vertices.element_count() % 3 != 0 || faces.element_count() % 3 != 0)
    return xla::ffi::Error::InvalidArgument("vertices must be (V, 3) and faces (F, 3)");
  if (nodes_count != kNodeWords * max_bvh_nodes(F) || tris_count != 9 * F || prim_count != F)
    return xla::ffi::Error::InvalidArgument("build_bvh: output shapes do not match the face count");
  if (F > (int64_t)1 << 30)
    return xla::ffi::Error::InvalidArgument("build_bvh: more than 2^30 faces are not supported");
  return xla::ffi::Error::Success();
}

}  // namespace jaxrender
