// XLA FFI handlers for the CPU: BVH build, closest hit and any hit.
// Rays are spread over XLA's intra-op thread pool in chunks.
#include <nanobind/nanobind.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "bvh_build_cpu.h"
#include "ffi_checks.h"
#include "jaxrender/bvh.h"
#include "jaxrender/lbvh.h"
#include "parallel_cpu.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
namespace nb = nanobind;

namespace jaxrender {
namespace {

// Rays per chunk: small enough to balance incoherent work across threads,
// large enough that claiming a chunk costs nothing.
constexpr int64_t kRayGrain = 1024;
// Batches at least this large are traced in Morton order of their origins.
constexpr int64_t kSortMinRays = 1 << 14;
// ... unless the whole BVH (nodes and triangles) is this small: it then
// stays in the core's L2 cache in any ray order, and the sort, gather and
// scatter are pure overhead (2^16 random rays in a Cornell box's 38
// triangles: 53 -> 30 ns per closest-hit ray, 46 -> 25 per any-hit ray).
constexpr int64_t kSortMinBvhBytes = 256 << 10;

// Order in which to trace rays: by the 30-bit Morton code of their origins
// within the root box, so consecutive rays start near each other and share
// BVH nodes in cache. Returns an empty vector
// (trace in the given order) for small batches and when every origin maps to
// one key, as for camera rays, which are coherent already.
std::vector<uint32_t> ray_order(ffi::ThreadPool& pool, const int32_t* nodes, int64_t n_nodes,
                                int64_t n_tris, const float* o, int64_t n) {
  std::vector<uint32_t> order;
  if (n < kSortMinRays || n > (int64_t)UINT32_MAX) return order;
  if (n_nodes * kNodeWords * 4 + n_tris * 9 * 4 < kSortMinBvhBytes) return order;
  float lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
  for (int k = 0; k < kWidth; ++k) {
    for (int a = 0; a < 3; ++a) {
      float l = bits_to_float(nodes[kLoWord + kWidth * a + k]);
      float h = bits_to_float(nodes[kHiWord + kWidth * a + k]);
      if (l <= h) {  // skips empty (NaN) slots
        lo[a] = std::min(lo[a], l);
        hi[a] = std::max(hi[a], h);
      }
    }
  }
  float scale[3];
  for (int a = 0; a < 3; ++a) {
    if (!(lo[a] <= hi[a])) return order;
    scale[a] = hi[a] > lo[a] ? 1023.0f / (hi[a] - lo[a]) : 0.0f;
  }
  std::vector<uint32_t> keys(n);
  parallel_for(pool, n, 1 << 15, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      uint32_t q[3];
      for (int a = 0; a < 3; ++a) {
        float x = (o[3 * i + a] - lo[a]) * scale[a];
        x = x > 0.0f ? x : 0.0f;  // also maps NaN to 0
        q[a] = (uint32_t)(x < 1023.0f ? x : 1023.0f);
      }
      keys[i] = (uint32_t)((spread_bits_21(q[0]) << 2) | (spread_bits_21(q[1]) << 1) |
                           spread_bits_21(q[2]));
    }
  });
  auto [kmin, kmax] = std::minmax_element(keys.begin(), keys.end());
  if (*kmin == *kmax) return order;
  // LSD radix sort of (key, index): three passes of 10 bits, whose 1024
  // buckets keep the scatter cache-friendly.
  order.resize(n);
  std::vector<uint32_t> tmp(n), tmp_keys(n);
  for (int64_t i = 0; i < n; ++i) order[i] = (uint32_t)i;
  for (int pass = 0; pass < 3; ++pass) {
    const int shift = 10 * pass;
    std::vector<uint32_t> offset((1 << 10) + 1, 0);
    for (int64_t i = 0; i < n; ++i) ++offset[((keys[i] >> shift) & 0x3ff) + 1];
    for (int b = 0; b < (1 << 10); ++b) offset[b + 1] += offset[b];
    for (int64_t i = 0; i < n; ++i) {
      uint32_t dst = offset[(keys[i] >> shift) & 0x3ff]++;
      tmp[dst] = order[i];
      tmp_keys[dst] = keys[i];
    }
    order.swap(tmp);
    keys.swap(tmp_keys);
  }
  return order;
}

// Traces every ray i (trace(origin, direction, t_max) -> Result) and hands
// the result to store(i, result). When ray_order() gives an order, the rays
// are first gathered into contiguous sorted copies and the results scattered
// back afterwards: tracing through the permutation directly would turn every
// ray's loads and stores into cache misses and cancel the gain.
template <typename Result, typename Trace, typename Store>
void trace_rays(ffi::ThreadPool& pool, const int32_t* nodes, int64_t n_nodes, int64_t n_tris,
                const float* o, const float* d, const float* t_max, int64_t n, const Trace& trace,
                const Store& store) {
  std::vector<uint32_t> order = ray_order(pool, nodes, n_nodes, n_tris, o, n);
  if (order.empty()) {
    parallel_for(pool, n, kRayGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) store(i, trace(o + 3 * i, d + 3 * i, t_max[i]));
    });
    return;
  }
  std::vector<float> so(3 * n), sd(3 * n), st(n);
  std::vector<Result> result(n);
  parallel_for(pool, n, kRayGrain, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t i = order[k];
      for (int a = 0; a < 3; ++a) {
        so[3 * k + a] = o[3 * i + a];
        sd[3 * k + a] = d[3 * i + a];
      }
      st[k] = t_max[i];
    }
  });
  parallel_for(pool, n, kRayGrain, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) result[k] = trace(&so[3 * k], &sd[3 * k], st[k]);
  });
  parallel_for(pool, n, kRayGrain, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) store((int64_t)order[k], result[k]);
  });
}

ffi::Error BuildBvhImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> vertices,
                        ffi::Buffer<ffi::S32> faces, ffi::ResultBuffer<ffi::S32> nodes,
                        ffi::ResultBuffer<ffi::F32> tris, ffi::ResultBuffer<ffi::S32> prim_ids,
                        int32_t method) {
  if (method != 0 && method != 1)
    return ffi::Error::InvalidArgument("build_bvh: method must be 0 (sah) or 1 (lbvh)");
  if (auto e = check_build(vertices, faces, nodes->element_count(), tris->element_count(),
                           prim_ids->element_count());
      e.failure())
    return e;
  const int64_t V = vertices.element_count() / 3;
  const int64_t F = faces.element_count() / 3;
  std::string err = build_bvh_cpu(pool, static_cast<BvhMethod>(method), vertices.typed_data(), V, faces.typed_data(), F,
                                  nodes->typed_data(), tris->typed_data(),
                                  prim_ids->typed_data());
  if (!err.empty()) return ffi::Error::InvalidArgument("build_bvh: " + err);
  return ffi::Error::Success();
}

ffi::Error IntersectImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::S32> nodes,
                         ffi::Buffer<ffi::F32> tris, ffi::Buffer<ffi::S32> prim_ids,
                         ffi::Buffer<ffi::F32> origins, ffi::Buffer<ffi::F32> directions,
                         ffi::Buffer<ffi::F32> t_max, ffi::ResultBuffer<ffi::F32> t_out,
                         ffi::ResultBuffer<ffi::S32> prim_out, ffi::ResultBuffer<ffi::F32> b1_out,
                         ffi::ResultBuffer<ffi::F32> b2_out) {
  if (auto e = check_accel(nodes, tris, prim_ids); e.failure()) return e;
  if (auto e = check_rays(origins, directions, t_max); e.failure()) return e;
  const int64_t N = t_max.element_count();
  const int32_t* nd = nodes.typed_data();
  const float* tr = tris.typed_data();
  const int32_t* pid = prim_ids.typed_data();
  const float* o = origins.typed_data();
  const float* d = directions.typed_data();
  const float* tm = t_max.typed_data();
  float* t = t_out->typed_data();
  int32_t* prim = prim_out->typed_data();
  float* b1 = b1_out->typed_data();
  float* b2 = b2_out->typed_data();
  const int64_t n_nodes = nodes.element_count() / kNodeWords;
  const int64_t n_tris = tris.element_count() / 9;
  trace_rays<HitRecord>(
      pool, nd, n_nodes, n_tris, o, d, tm, N,
      [&](const float* ro, const float* rd, float rt) {
        return traverse<false>(nd, n_nodes, tr, pid, n_tris, load_vec3(ro), load_vec3(rd), rt);
      },
      [&](int64_t i, const HitRecord& h) {
        t[i] = h.t;
        prim[i] = h.prim;
        b1[i] = h.b1;
        b2[i] = h.b2;
      });
  return ffi::Error::Success();
}

ffi::Error OccludedImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::S32> nodes,
                        ffi::Buffer<ffi::F32> tris, ffi::Buffer<ffi::S32> prim_ids,
                        ffi::Buffer<ffi::F32> origins, ffi::Buffer<ffi::F32> directions,
                        ffi::Buffer<ffi::F32> t_max, ffi::ResultBuffer<ffi::PRED> hit_out) {
  if (auto e = check_accel(nodes, tris, prim_ids); e.failure()) return e;
  if (auto e = check_rays(origins, directions, t_max); e.failure()) return e;
  const int64_t N = t_max.element_count();
  const int32_t* nd = nodes.typed_data();
  const float* tr = tris.typed_data();
  const int32_t* pid = prim_ids.typed_data();
  const float* o = origins.typed_data();
  const float* d = directions.typed_data();
  const float* tm = t_max.typed_data();
  bool* hit = hit_out->typed_data();
  const int64_t n_nodes = nodes.element_count() / kNodeWords;
  const int64_t n_tris = tris.element_count() / 9;
  trace_rays<uint8_t>(
      pool, nd, n_nodes, n_tris, o, d, tm, N,
      [&](const float* ro, const float* rd, float rt) {
        return (uint8_t)(traverse<true>(nd, n_nodes, tr, pid, n_tris, load_vec3(ro),
                                        load_vec3(rd), rt).prim >= 0);
      },
      [&](int64_t i, uint8_t h) { hit[i] = h != 0; });
  return ffi::Error::Success();
}

// Copies x to the result. An opaque op XLA cannot fuse through: see
// jaxrender/integrators/_math.py, materialize().
ffi::Error MaterializeImpl(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> out) {
  if (x.size_bytes() != out->size_bytes())
    return ffi::Error::InvalidArgument("materialize: input and output sizes differ");
  if (x.untyped_data() != out->untyped_data() && x.size_bytes() > 0)
    std::memcpy(out->untyped_data(), x.untyped_data(), x.size_bytes());
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jaxrender

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrenderBuildBvh, jaxrender::BuildBvhImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // vertices (V, 3)
                                  .Arg<ffi::Buffer<ffi::S32>>()   // faces (F, 3)
                                  .Ret<ffi::Buffer<ffi::S32>>()   // nodes (M, 32)
                                  .Ret<ffi::Buffer<ffi::F32>>()   // tris (F, 9), BVH order
                                  .Ret<ffi::Buffer<ffi::S32>>()   // prim_ids (F,)
                                  .Attr<int32_t>("method"));      // 0 = SAH, 1 = LBVH

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrenderIntersect, jaxrender::IntersectImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>() JAXRENDER_QUERY_OPERANDS
                                  .Ret<ffi::Buffer<ffi::F32>>()   // t (N,)
                                  .Ret<ffi::Buffer<ffi::S32>>()   // prim (N,)
                                  .Ret<ffi::Buffer<ffi::F32>>()   // b1 (N,)
                                  .Ret<ffi::Buffer<ffi::F32>>());  // b2 (N,)

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrenderOccluded, jaxrender::OccludedImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>() JAXRENDER_QUERY_OPERANDS
                                  .Ret<ffi::Buffer<ffi::PRED>>());  // occluded (N,)

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrenderMaterialize, jaxrender::MaterializeImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());

NB_MODULE(_cpu, m) {
  m.doc() = "jaxrender CPU ray-tracing kernels (XLA FFI handlers)";
  m.def("registrations", []() {
    nb::dict d;
    d["jaxrender_build_bvh"] = nb::capsule(reinterpret_cast<void*>(JaxrenderBuildBvh));
    d["jaxrender_intersect"] = nb::capsule(reinterpret_cast<void*>(JaxrenderIntersect));
    d["jaxrender_occluded"] = nb::capsule(reinterpret_cast<void*>(JaxrenderOccluded));
    d["jaxrender_materialize"] = nb::capsule(reinterpret_cast<void*>(JaxrenderMaterialize));
    return d;
  });
}
