// Binned-SAH BVH builder for the CPU (see bvh.h for the layout it writes).
#pragma once

#include <cstdint>
#include <string>

#include "xla/ffi/api/ffi.h"

namespace jaxrender {

enum class BvhMethod : int32_t { kSah = 0, kLbvh = 1 };

// Builds the BVH of the triangles faces[i] = (a, b, c) of `vertices`, by
// binned SAH (best trees) or LBVH (the GPU's algorithm, faster to build).
// Writes nodes (max_bvh_nodes(F) x kNodeWords int32), tris (F x 9 floats in BVH
// order) and prim_ids (F, BVH order -> face index). Triangles with
// non-finite vertices are left out of the tree (they can never be hit).
// Returns an empty string, or a message naming the first bad face index.
std::string build_bvh_cpu(xla::ffi::ThreadPool& pool, BvhMethod method, const float* vertices,
                          int64_t num_vertices, const int32_t* faces, int64_t num_faces,
                          int32_t* nodes, float* tris, int32_t* prim_ids);

}  // namespace jaxrender
