// XLA FFI handlers for the CPU: BVH build, closest hit and any hit.
// Rays are spread over XLA's intra-op thread pool in chunks.
#include <nanobind/nanobind.h>

#include <cstdint>
#include <string>

#include "bvh_build_cpu.h"
#include "jaxrender/bvh.h"
#include "parallel_cpu.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
namespace nb = nanobind;

namespace jaxrender {
namespace {

// Rays per chunk: small enough to balance incoherent work across threads,
// large enough that claiming a chunk costs nothing.
constexpr int64_t kRayGrain = 1024;

ffi::Error check_accel(const ffi::Buffer<ffi::S32>& nodes, const ffi::Buffer<ffi::F32>& tris,
                       const ffi::Buffer<ffi::S32>& prim_ids) {
  if (nodes.element_count() % kNodeWords != 0 || nodes.element_count() == 0)
    return ffi::Error::InvalidArgument("accel.nodes must have shape (M, 32) with M >= 1");
  if (tris.element_count() % 9 != 0)
    return ffi::Error::InvalidArgument("accel.tris must have shape (F, 9)");
  if (prim_ids.element_count() != tris.element_count() / 9)
    return ffi::Error::InvalidArgument("accel.prim_ids must have shape (F,)");
  return ffi::Error::Success();
}

ffi::Error check_rays(const ffi::Buffer<ffi::F32>& origins, const ffi::Buffer<ffi::F32>& directions,
                      const ffi::Buffer<ffi::F32>& t_max) {
  if (origins.element_count() % 3 != 0 || directions.element_count() != origins.element_count() ||
      t_max.element_count() * 3 != origins.element_count())
    return ffi::Error::InvalidArgument("origins, directions must be (N, 3) and t_max (N,)");
  return ffi::Error::Success();
}

ffi::Error BuildBvhImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> vertices,
                        ffi::Buffer<ffi::S32> faces, ffi::ResultBuffer<ffi::S32> nodes,
                        ffi::ResultBuffer<ffi::F32> tris, ffi::ResultBuffer<ffi::S32> prim_ids,
                        int32_t method) {
  if (method != 0 && method != 1)
    return ffi::Error::InvalidArgument("build_bvh: method must be 0 (sah) or 1 (lbvh)");
  const int64_t V = vertices.element_count() / 3;
  const int64_t F = faces.element_count() / 3;
  if (vertices.element_count() % 3 != 0 || faces.element_count() % 3 != 0)
    return ffi::Error::InvalidArgument("vertices must be (V, 3) and faces (F, 3)");
  if ((int64_t)nodes->element_count() != kNodeWords * max_bvh_nodes(F) ||
      (int64_t)tris->element_count() != 9 * F || (int64_t)prim_ids->element_count() != F)
    return ffi::Error::InvalidArgument("build_bvh: output shapes do not match the face count");
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
  parallel_for(pool, N, kRayGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      HitRecord h = traverse<false>(nd, n_nodes, tr, pid, n_tris, load_vec3(o + 3 * i),
                                    load_vec3(d + 3 * i), tm[i]);
      t[i] = h.t;
      prim[i] = h.prim;
      b1[i] = h.b1;
      b2[i] = h.b2;
    }
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
  parallel_for(pool, N, kRayGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      hit[i] = traverse<true>(nd, n_nodes, tr, pid, n_tris, load_vec3(o + 3 * i),
                              load_vec3(d + 3 * i), tm[i]).prim >= 0;
    }
  });
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
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::S32>>()   // nodes (M, 32)
                                  .Arg<ffi::Buffer<ffi::F32>>()   // tris (F, 9)
                                  .Arg<ffi::Buffer<ffi::S32>>()   // prim_ids (F,)
                                  .Arg<ffi::Buffer<ffi::F32>>()   // origins (N, 3)
                                  .Arg<ffi::Buffer<ffi::F32>>()   // directions (N, 3)
                                  .Arg<ffi::Buffer<ffi::F32>>()   // t_max (N,)
                                  .Ret<ffi::Buffer<ffi::F32>>()   // t (N,)
                                  .Ret<ffi::Buffer<ffi::S32>>()   // prim (N,)
                                  .Ret<ffi::Buffer<ffi::F32>>()   // b1 (N,)
                                  .Ret<ffi::Buffer<ffi::F32>>());  // b2 (N,)

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrenderOccluded, jaxrender::OccludedImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::S32>>()   // nodes (M, 32)
                                  .Arg<ffi::Buffer<ffi::F32>>()   // tris (F, 9)
                                  .Arg<ffi::Buffer<ffi::S32>>()   // prim_ids (F,)
                                  .Arg<ffi::Buffer<ffi::F32>>()   // origins (N, 3)
                                  .Arg<ffi::Buffer<ffi::F32>>()   // directions (N, 3)
                                  .Arg<ffi::Buffer<ffi::F32>>()   // t_max (N,)
                                  .Ret<ffi::Buffer<ffi::PRED>>());  // occluded (N,)

NB_MODULE(_cpu, m) {
  m.doc() = "jaxrender CPU ray-tracing kernels (XLA FFI handlers)";
  m.def("registrations", []() {
    nb::dict d;
    d["jaxrender_build_bvh"] = nb::capsule(reinterpret_cast<void*>(JaxrenderBuildBvh));
    d["jaxrender_intersect"] = nb::capsule(reinterpret_cast<void*>(JaxrenderIntersect));
    d["jaxrender_occluded"] = nb::capsule(reinterpret_cast<void*>(JaxrenderOccluded));
    return d;
  });
}
