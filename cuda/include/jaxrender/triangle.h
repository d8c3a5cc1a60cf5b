// Watertight ray/triangle intersection (Woop, Benthin, Wald, JCGT 2013).
//
// Why watertight rather than Moeller-Trumbore: two triangles that share an
// edge compute that edge's function from the same two sheared vertices with
// the operands swapped, which gives exactly the negated value in IEEE
// arithmetic. A ray through a shared edge or vertex therefore hits at least
// one of the triangles, and no ray leaks through a closed mesh.
#pragma once

#include "jaxrender/common.h"

namespace jaxrender {

// Per-ray constants of the shear transform that maps the ray to +z.
struct WatertightRay {
  float org[3];
  float dir[3];
  int kx, ky, kz;
  float sx, sy, sz;
};

JR_HD WatertightRay make_watertight_ray(Vec3 o, Vec3 d) {
  WatertightRay r;
  r.org[0] = o.x;
  r.org[1] = o.y;
  r.org[2] = o.z;
  r.dir[0] = d.x;
  r.dir[1] = d.y;
  r.dir[2] = d.z;
  float ax = fabsf(d.x), ay = fabsf(d.y), az = fabsf(d.z);
  int kz = (ax > ay) ? (ax > az ? 0 : 2) : (ay > az ? 1 : 2);
  int kx = kz == 2 ? 0 : kz + 1;
  int ky = kx == 2 ? 0 : kx + 1;
  float dz = get(d, kz);
  // Keep the winding of the sheared triangle independent of the ray's sign.
  if (dz < 0.0f) {
    int tmp = kx;
    kx = ky;
    ky = tmp;
  }
  r.kx = kx;
  r.ky = ky;
  r.kz = kz;
  r.sx = get(d, kx) / dz;
  r.sy = get(d, ky) / dz;
  r.sz = 1.0f / dz;
  return r;
}

// Intersects one triangle (v0, v1, v2) given as 9 consecutive floats. Both
// faces count. On a hit with 0 < t < t_max, writes t and the barycentric
// weights of v1 (b1) and v2 (b2) and returns true. Degenerate triangles and
// triangles with non-finite vertices never hit: every test below is written
// so that a NaN fails it. Vertex coordinates are read by axis index (no
// per-vertex permutation), which keeps the hot loop free of branches.
JR_HD bool intersect_triangle(const WatertightRay& r, const float* tri, float t_max,
                              float* t_out, float* b1_out, float* b2_out) {
  const int kx = r.kx, ky = r.ky, kz = r.kz;
  const float ox = r.org[kx], oy = r.org[ky], oz = r.org[kz];
  const float Az = tri[kz] - oz, Bz = tri[3 + kz] - oz, Cz = tri[6 + kz] - oz;
  const float Ax = (tri[kx] - ox) - r.sx * Az;
  const float Ay = (tri[ky] - oy) - r.sy * Az;
  const float Bx = (tri[3 + kx] - ox) - r.sx * Bz;
  const float By = (tri[3 + ky] - oy) - r.sy * Bz;
  const float Cx = (tri[6 + kx] - ox) - r.sx * Cz;
  const float Cy = (tri[6 + ky] - oy) - r.sy * Cz;

  float U = Cx * By - Cy * Bx;
  float V = Ax * Cy - Ay * Cx;
  float W = Bx * Ay - By * Ax;
  // An edge function that rounds to exactly zero is decided in double
  // precision so that the ray lands on a consistent side of the edge.
  if (U == 0.0f || V == 0.0f || W == 0.0f) {
    U = (float)((double)Cx * (double)By - (double)Cy * (double)Bx);
    V = (float)((double)Ax * (double)Cy - (double)Ay * (double)Cx);
    W = (float)((double)Bx * (double)Ay - (double)By * (double)Ax);
  }
  bool all_nonneg = U >= 0.0f && V >= 0.0f && W >= 0.0f;
  bool all_nonpos = U <= 0.0f && V <= 0.0f && W <= 0.0f;
  if (!(all_nonneg || all_nonpos)) return false;  // also rejects NaN
  float det = U + V + W;
  if (!(det != 0.0f)) return false;
  float T = (U * Az + V * Bz + W * Cz) * r.sz;
  float inv_det = 1.0f / det;
  float t = T * inv_det;
  if (!(t > 0.0f && t < t_max)) return false;
  // A ray exactly parallel to the face's plane (in-plane rays, and every ray
  // against a zero-area face) cannot cross it, but rounding in the sheared
  // edge functions can make it look as if it did. The check runs only on
  // candidate hits, in double, where float differences and products of the
  // small dyadic values such rays are made of are exact.
  {
    double e1[3], e2[3];
    for (int a = 0; a < 3; ++a) {
      e1[a] = (double)tri[3 + a] - (double)tri[a];
      e2[a] = (double)tri[6 + a] - (double)tri[a];
    }
    double nd = (e1[1] * e2[2] - e1[2] * e2[1]) * (double)r.dir[0] +
                (e1[2] * e2[0] - e1[0] * e2[2]) * (double)r.dir[1] +
                (e1[0] * e2[1] - e1[1] * e2[0]) * (double)r.dir[2];
    if (nd == 0.0) return false;
  }
  *t_out = t;
  *b1_out = V * inv_det;
  *b2_out = W * inv_det;
  return true;
}

}  // namespace jaxrender
