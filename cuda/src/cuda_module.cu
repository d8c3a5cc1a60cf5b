// XLA FFI handlers for CUDA: LBVH build, closest hit and any hit.
// Every kernel runs on the stream XLA passes in; temporaries come from XLA's
// stream-ordered allocator (cudaMallocAsync). Traversal and LBVH math are the
// shared headers' code.
#include <cub/device/device_radix_sort.cuh>
#include <cuda_runtime.h>
#include <nanobind/nanobind.h>

#include <cstdint>
#include <string>

#include "jaxrender/bvh.h"
#include "jaxrender/lbvh.h"
#include "ffi_checks.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
namespace nb = nanobind;

namespace jaxrender {
namespace {

constexpr int kBlock = 256;

unsigned grid_for(int64_t n) { return (unsigned)((n + kBlock - 1) / kBlock); }

ffi::Error last_cuda_error(const char* what) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    return ffi::Error::Internal(std::string(what) + ": " + cudaGetErrorString(err));
  return ffi::Error::Success();
}

// ---------------------------------------------------------------- queries

template <bool kAnyHit>
__global__ void query_kernel(const int32_t* __restrict__ nodes, int64_t n_nodes,
                             const float* __restrict__ tris, const int32_t* __restrict__ prim_ids,
                             int64_t n_tris, const float* __restrict__ o,
                             const float* __restrict__ d, const float* __restrict__ t_max,
                             int64_t n, float* t_out, int32_t* prim_out, float* b1_out,
                             float* b2_out, bool* hit_out) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  HitRecord h = traverse<kAnyHit>(nodes, n_nodes, tris, prim_ids, n_tris, load_vec3(o + 3 * i),
                                  load_vec3(d + 3 * i), t_max[i]);
  if (kAnyHit) {
    hit_out[i] = h.prim >= 0;
  } else {
    t_out[i] = h.t;
    prim_out[i] = h.prim;
    b1_out[i] = h.b1;
    b2_out[i] = h.b2;
  }
}

ffi::Error IntersectImpl(cudaStream_t stream, ffi::Buffer<ffi::S32> nodes,
                         ffi::Buffer<ffi::F32> tris, ffi::Buffer<ffi::S32> prim_ids,
                         ffi::Buffer<ffi::F32> origins, ffi::Buffer<ffi::F32> directions,
                         ffi::Buffer<ffi::F32> t_max, ffi::ResultBuffer<ffi::F32> t_out,
                         ffi::ResultBuffer<ffi::S32> prim_out, ffi::ResultBuffer<ffi::F32> b1_out,
                         ffi::ResultBuffer<ffi::F32> b2_out) {
  if (auto e = check_accel(nodes, tris, prim_ids); e.failure()) return e;
  if (auto e = check_rays(origins, directions, t_max); e.failure()) return e;
  const int64_t n = t_max.element_count();
  if (n == 0) return ffi::Error::Success();
  query_kernel<false><<<grid_for(n), kBlock, 0, stream>>>(
      nodes.typed_data(), nodes.element_count() / kNodeWords, tris.typed_data(),
      prim_ids.typed_data(), tris.element_count() / 9, origins.typed_data(),
      directions.typed_data(), t_max.typed_data(), n, t_out->typed_data(),
      prim_out->typed_data(), b1_out->typed_data(), b2_out->typed_data(), nullptr);
  return last_cuda_error("intersect");
}

ffi::Error OccludedImpl(cudaStream_t stream, ffi::Buffer<ffi::S32> nodes,
                        ffi::Buffer<ffi::F32> tris, ffi::Buffer<ffi::S32> prim_ids,
                        ffi::Buffer<ffi::F32> origins, ffi::Buffer<ffi::F32> directions,
                        ffi::Buffer<ffi::F32> t_max, ffi::ResultBuffer<ffi::PRED> hit_out) {
  if (auto e = check_accel(nodes, tris, prim_ids); e.failure()) return e;
  if (auto e = check_rays(origins, directions, t_max); e.failure()) return e;
  const int64_t n = t_max.element_count();
  if (n == 0) return ffi::Error::Success();
  query_kernel<true><<<grid_for(n), kBlock, 0, stream>>>(
      nodes.typed_data(), nodes.element_count() / kNodeWords, tris.typed_data(),
      prim_ids.typed_data(), tris.element_count() / 9, origins.typed_data(),
      directions.typed_data(), t_max.typed_data(), n, nullptr, nullptr, nullptr, nullptr,
      hit_out->typed_data());
  return last_cuda_error("occluded");
}

// ---------------------------------------------------------------- LBVH build

struct BuildScratch {
  float* cbox;           // 6 floats: centroid bounds (lo, hi) of valid triangles
  int32_t* bad_face;     // first face with an out-of-range index, or INT32_MAX
  uint64_t* keys[2];     // Morton keys, sort double buffer
  int32_t* order[2];     // face indices, sort double buffer
  int32_t* node_parent;  // n - 1
  int32_t* leaf_parent;  // n
  int32_t* visits;       // n - 1 arrival counters for the bottom-up box pass
};

// Float min/max through integer atomics: non-negative floats order like
// signed ints, negative ones reversed like unsigned ints. signbit (not v >= 0)
// sends -0.0 down the negative path, where it orders correctly.
__device__ float atomic_min_float(float* addr, float v) {
  return !signbit(v) ? __int_as_float(atomicMin((int*)addr, __float_as_int(v)))
                   : __uint_as_float(atomicMax((unsigned*)addr, __float_as_uint(v)));
}

__device__ float atomic_max_float(float* addr, float v) {
  return !signbit(v) ? __int_as_float(atomicMax((int*)addr, __float_as_int(v)))
                   : __uint_as_float(atomicMin((unsigned*)addr, __float_as_uint(v)));
}

__global__ void init_scratch_kernel(float* cbox, int32_t* bad_face) {
  for (int a = 0; a < 3; ++a) {
    cbox[a] = INFINITY;
    cbox[3 + a] = -INFINITY;
  }
  *bad_face = INT32_MAX;
}

// Checks indices and accumulates centroid bounds of triangles that can be hit.
__global__ void centroid_bounds_kernel(const float* __restrict__ vertices, int64_t n_vertices,
                                       const int32_t* __restrict__ faces, int32_t n, float* cbox,
                                       int32_t* bad_face) {
  int32_t f = blockIdx.x * blockDim.x + threadIdx.x;
  if (f >= n) return;
  float c[3] = {0, 0, 0};
  bool ok = true;
  for (int k = 0; k < 3; ++k) {
    int32_t v = faces[3 * (int64_t)f + k];
    if (v < 0 || v >= n_vertices) {
      atomicMin(bad_face, f);
      return;
    }
    for (int a = 0; a < 3; ++a) {
      float x = vertices[3 * (int64_t)v + a];
      ok = ok && isfinite(x);
      c[a] += x * (1.0f / 3.0f);
    }
  }
  if (!ok) return;
  for (int a = 0; a < 3; ++a) {
    atomic_min_float(&cbox[a], c[a]);
    atomic_max_float(&cbox[3 + a], c[a]);
  }
}

__global__ void morton_kernel(const float* __restrict__ vertices, int64_t n_vertices,
                              const int32_t* __restrict__ faces, int32_t n,
                              const float* __restrict__ cbox, uint64_t* keys, int32_t* order) {
  int32_t f = blockIdx.x * blockDim.x + threadIdx.x;
  if (f >= n) return;
  float c[3] = {0, 0, 0};
  bool ok = true;
  for (int k = 0; k < 3; ++k) {
    int32_t v = faces[3 * (int64_t)f + k];
    ok = ok && v >= 0 && v < n_vertices;
    if (!ok) break;
    for (int a = 0; a < 3; ++a) {
      float x = vertices[3 * (int64_t)v + a];
      ok = ok && isfinite(x);
      c[a] += x * (1.0f / 3.0f);
    }
  }
  float u[3];
  for (int a = 0; a < 3; ++a) {
    float ext = cbox[3 + a] - cbox[a];
    u[a] = ext > 0.0f ? (c[a] - cbox[a]) / ext : 0.0f;
  }
  keys[f] = ok ? morton63(u[0], u[1], u[2]) : kInvalidKey;
  order[f] = f;
}

__global__ void gather_tris_kernel(const float* __restrict__ vertices,
                                   const int32_t* __restrict__ faces,
                                   const int32_t* __restrict__ order, int32_t n, float* tris,
                                   int32_t* prim_ids) {
  int32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int32_t f = order[i];
  prim_ids[i] = f;
  for (int k = 0; k < 3; ++k) {
    int32_t v = faces[3 * (int64_t)f + k];
    for (int a = 0; a < 3; ++a) tris[9 * (int64_t)i + 3 * k + a] = vertices[3 * (int64_t)v + a];
  }
}

__global__ void link_kernel(const uint64_t* __restrict__ keys, int32_t n, int32_t* nodes,
                            int32_t* node_parent, int32_t* leaf_parent, int32_t* visits) {
  int32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n - 1) return;
  lbvh_link_node(keys, n, i, nodes, node_parent, leaf_parent);
  visits[i] = 0;
  if (i == 0) node_parent[0] = -1;
}

// Bottom-up: each leaf walks towards the root; the second thread to reach a
// node fills its boxes (both children are then complete).
__global__ void boxes_kernel(int32_t* nodes, const float* __restrict__ tris, int32_t n,
                             const int32_t* __restrict__ node_parent,
                             const int32_t* __restrict__ leaf_parent, int32_t* visits) {
  int32_t k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= n) return;
  int32_t p = leaf_parent[k];
  volatile int32_t* vnodes = nodes;
  while (p >= 0) {
    __threadfence();
    if (atomicAdd(&visits[p], 1) == 0) return;
    __threadfence();
    lbvh_fill_boxes(vnodes, tris, p);
    p = node_parent[p];
  }
}

// Trees of fewer than two triangles: a root with at most one leaf child.
__global__ void small_root_kernel(int32_t* nodes, const float* __restrict__ tris, int32_t n,
                                  const uint64_t* __restrict__ keys) {
  Node2 root;
  for (int c = 0; c < 2; ++c) {
    root.child[c] = 0;
    root.count[c] = -1;
    for (int a = 0; a < 3; ++a) root.lo[c][a] = root.hi[c][a] = 0.0f;
  }
  if (n == 1 && keys[0] != kInvalidKey) {
    root.count[0] = 1;
    triangle_box(tris, 0, root.lo[0], root.hi[0]);
  }
  memcpy(nodes, &root, sizeof(Node2));
}

__global__ void collapse_kernel(const int32_t* __restrict__ nodes2, int32_t m, int32_t* nodes) {
  int32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < m) collapse_node(nodes2, i, nodes + (int64_t)i * kNodeWords);
}

// Temporaries of one build, from CUDA's stream-ordered pool and freed on the
// same stream when the handler returns. (XLA FFI's ScratchAllocator refused
// every request on jax 0.11's CUDA plugin, H100, 2026-11-22.)
struct Temps {
  cudaStream_t stream;
  void* ptrs[16];
  int n = 0;
  cudaError_t err = cudaSuccess;
  explicit Temps(cudaStream_t s) : stream(s) {}
  ~Temps() {
    for (int i = 0; i < n; ++i) cudaFreeAsync(ptrs[i], stream);
  }
  template <typename T>
  T* take(int64_t count) {
    void* p = nullptr;
    if (err != cudaSuccess || n == 16) return nullptr;
    err = cudaMallocAsync(&p, sizeof(T) * (size_t)(count > 0 ? count : 1), stream);
    if (err != cudaSuccess) return nullptr;
    ptrs[n++] = p;
    return static_cast<T*>(p);
  }
  ffi::Error error() const {
    return ffi::Error::Internal(std::string("build_bvh: GPU temporaries: ") +
                                cudaGetErrorString(err == cudaSuccess ? cudaErrorMemoryAllocation
                                                                      : err));
  }
};

ffi::Error BuildBvhImpl(cudaStream_t stream,
                        ffi::Buffer<ffi::F32> vertices, ffi::Buffer<ffi::S32> faces,
                        ffi::ResultBuffer<ffi::S32> nodes, ffi::ResultBuffer<ffi::F32> tris,
                        ffi::ResultBuffer<ffi::S32> prim_ids, int32_t method) {
  (void)method;  // the GPU always builds an LBVH
  if (auto e = check_build(vertices, faces, nodes->element_count(), tris->element_count(),
                           prim_ids->element_count());
      e.failure())
    return e;
  const int64_t V = vertices.element_count() / 3;
  const int64_t F = faces.element_count() / 3;
  const int32_t n = (int32_t)F;
  Temps temps(stream);
  BuildScratch s;
  s.cbox = temps.take<float>(6);
  s.bad_face = temps.take<int32_t>(1);
  for (int b = 0; b < 2; ++b) {
    s.keys[b] = temps.take<uint64_t>(n);
    s.order[b] = temps.take<int32_t>(n);
  }
  s.node_parent = temps.take<int32_t>(n);
  s.leaf_parent = temps.take<int32_t>(n);
  s.visits = temps.take<int32_t>(n);
  const int64_t m = max_bvh_nodes(F);
  int32_t* nodes2 = temps.take<int32_t>(kNode2Words * m);
  if (nodes2 == nullptr) return temps.error();

  cudaMemsetAsync(nodes2, 0, sizeof(int32_t) * kNode2Words * m, stream);
  init_scratch_kernel<<<1, 1, 0, stream>>>(s.cbox, s.bad_face);
  if (n > 0) {
    centroid_bounds_kernel<<<grid_for(n), kBlock, 0, stream>>>(
        vertices.typed_data(), V, faces.typed_data(), n, s.cbox, s.bad_face);
  }
  // Out-of-range indices must raise, so the check is read back before any
  // vertex is gathered through them.
  int32_t bad_face = INT32_MAX;
  cudaMemcpyAsync(&bad_face, s.bad_face, sizeof(int32_t), cudaMemcpyDeviceToHost, stream);
  if (cudaStreamSynchronize(stream) != cudaSuccess) return last_cuda_error("build_bvh");
  if (bad_face != INT32_MAX)
    return ffi::Error::InvalidArgument("build_bvh: faces[" + std::to_string(bad_face) +
                                       "] indexes a vertex outside [0, " + std::to_string(V) +
                                       ")");
  if (n > 0) {
    morton_kernel<<<grid_for(n), kBlock, 0, stream>>>(vertices.typed_data(), V,
                                                      faces.typed_data(), n, s.cbox, s.keys[0],
                                                      s.order[0]);
    cub::DoubleBuffer<uint64_t> keys(s.keys[0], s.keys[1]);
    cub::DoubleBuffer<int32_t> order(s.order[0], s.order[1]);
    size_t temp_bytes = 0;
    cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys, order, n, 0, 64, stream);
    void* temp = temps.take<uint8_t>((int64_t)temp_bytes);
    if (temp == nullptr) return temps.error();
    cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys, order, n, 0, 64, stream);
    gather_tris_kernel<<<grid_for(n), kBlock, 0, stream>>>(
        vertices.typed_data(), faces.typed_data(), order.Current(), n, tris->typed_data(),
        prim_ids->typed_data());
    if (n >= 2) {
      link_kernel<<<grid_for(n - 1), kBlock, 0, stream>>>(keys.Current(), n, nodes2,
                                                          s.node_parent, s.leaf_parent, s.visits);
      boxes_kernel<<<grid_for(n), kBlock, 0, stream>>>(nodes2, tris->typed_data(), n,
                                                       s.node_parent, s.leaf_parent, s.visits);
    } else {
      small_root_kernel<<<1, 1, 0, stream>>>(nodes2, tris->typed_data(), n, keys.Current());
    }
  } else {
    small_root_kernel<<<1, 1, 0, stream>>>(nodes2, tris->typed_data(), 0, nullptr);
  }
  // The binary tree becomes the 4-wide tree that traversal reads.
  collapse_kernel<<<grid_for(m), kBlock, 0, stream>>>(nodes2, (int32_t)m, nodes->typed_data());
  if (auto e = last_cuda_error("build_bvh"); e.failure()) return e;
  // Synchronous, so the nodes are complete when XLA reads them (the
  // temporaries' frees are stream-ordered after the kernels anyway).
  if (cudaStreamSynchronize(stream) != cudaSuccess) return last_cuda_error("build_bvh");
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jaxrender

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrenderBuildBvhCuda, jaxrender::BuildBvhImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // vertices (V, 3)
                                  .Arg<ffi::Buffer<ffi::S32>>()   // faces (F, 3)
                                  .Ret<ffi::Buffer<ffi::S32>>()   // nodes (M, 32)
                                  .Ret<ffi::Buffer<ffi::F32>>()   // tris (F, 9), BVH order
                                  .Ret<ffi::Buffer<ffi::S32>>()   // prim_ids (F,)
                                  .Attr<int32_t>("method"));      // ignored: always LBVH

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrenderIntersectCuda, jaxrender::IntersectImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>() JAXRENDER_QUERY_OPERANDS
                                  .Ret<ffi::Buffer<ffi::F32>>()   // t (N,)
                                  .Ret<ffi::Buffer<ffi::S32>>()   // prim (N,)
                                  .Ret<ffi::Buffer<ffi::F32>>()   // b1 (N,)
                                  .Ret<ffi::Buffer<ffi::F32>>());  // b2 (N,)

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrenderOccludedCuda, jaxrender::OccludedImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>() JAXRENDER_QUERY_OPERANDS
                                  .Ret<ffi::Buffer<ffi::PRED>>());  // occluded (N,)

NB_MODULE(_cuda, m) {
  m.doc() = "jaxrender CUDA ray-tracing kernels (XLA FFI handlers)";
  m.def("registrations", []() {
    nb::dict d;
    d["jaxrender_build_bvh"] = nb::capsule(reinterpret_cast<void*>(JaxrenderBuildBvhCuda));
    d["jaxrender_intersect"] = nb::capsule(reinterpret_cast<void*>(JaxrenderIntersectCuda));
    d["jaxrender_occluded"] = nb::capsule(reinterpret_cast<void*>(JaxrenderOccludedCuda));
    return d;
  });
}
