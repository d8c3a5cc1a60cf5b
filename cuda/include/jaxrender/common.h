// Shared host/device basics: one macro makes a function callable from CPU and
// GPU code. Plain structs and raw pointers only (no STL, virtuals, exceptions),
// because everything here is compiled by both gcc and nvcc.
#pragma once

#include <stdint.h>
#include <string.h>
#include <math.h>

#if defined(__CUDACC__)
#define JR_HD __host__ __device__ __forceinline__
#else
#define JR_HD inline
#endif

namespace jaxrender {

struct Vec3 {
  float x, y, z;
};

JR_HD Vec3 make_vec3(float x, float y, float z) { return Vec3{x, y, z}; }
JR_HD Vec3 load_vec3(const float* p) { return Vec3{p[0], p[1], p[2]}; }
JR_HD Vec3 operator-(Vec3 a, Vec3 b) { return Vec3{a.x - b.x, a.y - b.y, a.z - b.z}; }
JR_HD Vec3 operator+(Vec3 a, Vec3 b) { return Vec3{a.x + b.x, a.y + b.y, a.z + b.z}; }
JR_HD Vec3 operator*(Vec3 a, float s) { return Vec3{a.x * s, a.y * s, a.z * s}; }
JR_HD float get(Vec3 v, int axis) { return axis == 0 ? v.x : (axis == 1 ? v.y : v.z); }
JR_HD Vec3 vmin(Vec3 a, Vec3 b) { return Vec3{fminf(a.x, b.x), fminf(a.y, b.y), fminf(a.z, b.z)}; }
JR_HD Vec3 vmax(Vec3 a, Vec3 b) { return Vec3{fmaxf(a.x, b.x), fmaxf(a.y, b.y), fmaxf(a.z, b.z)}; }

JR_HD bool finite3(Vec3 v) { return isfinite(v.x) && isfinite(v.y) && isfinite(v.z); }

JR_HD float bits_to_float(int32_t i) {
  float f;
  memcpy(&f, &i, sizeof(f));
  return f;
}

JR_HD int32_t float_to_bits(float f) {
  int32_t i;
  memcpy(&i, &f, sizeof(i));
  return i;
}

// Hit record of a closest-hit query. prim is the index of the face in the
// caller's original face array; -1 means no hit (then t = +inf, b1 = b2 = 0).
struct HitRecord {
  float t;
  int32_t prim;
  float b1, b2;
};

}  // namespace jaxrender
