// Bounding volume hierarchy layouts and traversal, shared by CPU and GPU.
//
// Builders (binned SAH on the CPU, LBVH on both) produce a binary tree of
// Node2, whose nodes store the boxes of their two children. Traversal runs on
// a 4-wide tree of Node, made from the binary one by collapse_node(): the
// 4-wide node i holds the grandchildren of binary node i (a leaf child stays
// one slot). Every binary node gets a 4-wide node, so the collapse is one
// independent step per node (one GPU thread each); the traversal only
// reaches every other level. Four boxes per visit halve the visits and let
// the compiler test the boxes with SIMD instructions.
//
// For slot c of a node:
//   count[c] == 0: interior, child[c] is the index of its node;
//   count[c] >  0: leaf, triangles [child[c], child[c] + count[c]) of the
//                  reordered triangle array;
//   count[c] <  0: empty (nothing to visit).
// Node 0 is the root. The Python side holds nodes as an int32 (M, 32) array;
// the floats are bit patterns, so XLA never treats them as numbers.
#pragma once

#include "jaxrender/common.h"
#include "jaxrender/triangle.h"

// On x86 hosts the four box tests of a node are one SSE operation each.
#if !defined(__CUDA_ARCH__) && (defined(__SSE2__) || defined(_M_X64))
#include <emmintrin.h>
#define JAXRENDER_SSE_BOXES 1
#endif

namespace jaxrender {

constexpr int kNode2Words = 16;
constexpr int kNodeWords = 32;
constexpr int kWidth = 4;
// Deepest binary tree the builders may produce is < 96 levels (CPU: median
// splits below depth 64; GPU: 63-bit keys + 32 index bits); the 4-wide tree
// then has < 48 levels with at most 3 deferred slots each.
constexpr int kStackSize = 160;
static_assert(kStackSize >= 3 * 48 + kWidth, "traversal stack too small");

// Node slots a tree over `num_faces` triangles uses: one per binary interior
// node, at least one (the root). The Python wrapper allocates exactly this.
JR_HD int64_t max_bvh_nodes(int64_t num_faces) { return num_faces > 2 ? num_faces - 1 : 1; }

struct Node2 {
  float lo[2][3];  // child boxes: lo[c][axis]
  float hi[2][3];
  int32_t child[2];
  int32_t count[2];
};
static_assert(sizeof(Node2) == kNode2Words * 4, "Node2 must be 64 bytes");

struct Node {
  float lo[3][kWidth];  // structure of arrays: lo[axis][slot]
  float hi[3][kWidth];
  int32_t child[kWidth];
  int32_t count[kWidth];
};
static_assert(sizeof(Node) == kNodeWords * 4, "Node must be 128 bytes");
// Word offsets of Node's fields, for reading nodes in place during traversal.
constexpr int kLoWord = 0;
constexpr int kHiWord = 3 * kWidth;
constexpr int kChildWord = 6 * kWidth;
constexpr int kCountWord = 7 * kWidth;

// Writes the 4-wide node made from binary node i and its interior children
// to `out` (kNodeWords words). Its interior slots keep binary node indices,
// which stay valid when every binary node i is collapsed to output node i.
// Boxes are padded outwards by a few ulps: a ray with a zero direction
// component whose origin lies on a box plane (the plane of a triangle edge,
// say) is then strictly inside the slab, whatever the sign of its zero,
// while a ray exactly on a padded plane touches no geometry of that box.
JR_HD void pad_box(float* lo, float* hi) {
  if (!(*lo <= *hi)) return;  // empty or NaN: leave as is
  float pad = (fabsf(*lo) + fabsf(*hi)) * 9.5367431640625e-7f + 1e-30f;  // 2^-20
  *lo -= pad;
  *hi += pad;
}

JR_HD void collapse_node(const int32_t* nodes2, int32_t i, int32_t* out_words) {
  Node2 b;
  memcpy(&b, nodes2 + (int64_t)i * kNode2Words, sizeof(Node2));
  Node out;
  int slot = 0;
  for (int c = 0; c < 2; ++c) {
    if (b.count[c] == 0) {
      Node2 g;
      memcpy(&g, nodes2 + (int64_t)b.child[c] * kNode2Words, sizeof(Node2));
      for (int k = 0; k < 2; ++k, ++slot) {
        for (int a = 0; a < 3; ++a) {
          out.lo[a][slot] = g.lo[k][a];
          out.hi[a][slot] = g.hi[k][a];
          pad_box(&out.lo[a][slot], &out.hi[a][slot]);
        }
        out.child[slot] = g.child[k];
        out.count[slot] = g.count[k];
      }
    } else {
      for (int a = 0; a < 3; ++a) {
        out.lo[a][slot] = b.lo[c][a];
        out.hi[a][slot] = b.hi[c][a];
        pad_box(&out.lo[a][slot], &out.hi[a][slot]);
      }
      out.child[slot] = b.child[c];
      out.count[slot] = b.count[c];
      ++slot;
    }
  }
  // Empty slots get NaN boxes, which fail the slab test in both the SSE and
  // the scalar version, so traversal never looks at their links.
  for (; slot < kWidth; ++slot) {
    for (int a = 0; a < 3; ++a) out.lo[a][slot] = out.hi[a][slot] = NAN;
    out.child[slot] = 0;
    out.count[slot] = -1;
  }
  memcpy(out_words, &out, sizeof(Node));
}

struct RayBoxData {
  Vec3 org;
  Vec3 inv_dir;
};

// Compare-and-select min/max: one instruction each (fminf/fmaxf become libm
// calls on x86 without -ffast-math, which made traversal ~10x slower). The
// slab math below never produces NaN, so their NaN behaviour does not matter.
JR_HD float min2(float a, float b) { return a < b ? a : b; }
JR_HD float max2(float a, float b) { return a > b ? a : b; }

// Reciprocal that never yields +-inf: a direction component that is zero (or
// tiny) becomes +-1e30, so (bound - origin) * inv is never 0 * inf = NaN.
// Boxes are padded (collapse_node), so an origin on a triangle's plane is
// strictly inside the slab rather than on its boundary.
JR_HD float safe_rcp(float x) {
  const float tiny = 1e-30f;
  return 1.0f / (fabsf(x) > tiny ? x : copysignf(tiny, x));
}

JR_HD RayBoxData make_ray_box_data(Vec3 o, Vec3 d) {
  return RayBoxData{o, Vec3{safe_rcp(d.x), safe_rcp(d.y), safe_rcp(d.z)}};
}

JR_HD int lowest_bit(unsigned mask) {
#if defined(__CUDA_ARCH__)
  return __ffs(mask) - 1;
#else
  return __builtin_ctz(mask);
#endif
}

// Slab tests of the four slots: returns a mask with bit k set when slot k's
// box is entered within [0, t_max], and writes the entry distances. Exit
// distances are scaled by 1 + 2 gamma(3) (Ize 2013) so rounding never culls
// a box the ray enters. The slab values are never NaN (see safe_rcp), so the
// SSE min/max and the scalar compare-selects agree exactly.
#if defined(JAXRENDER_SSE_BOXES)
inline unsigned box_entries(const int32_t* node, const RayBoxData& r, float t_max, float* entry) {
  const float o[3] = {r.org.x, r.org.y, r.org.z};
  const float inv[3] = {r.inv_dir.x, r.inv_dir.y, r.inv_dir.z};
  // SSE loads may alias the int32 node words.
  const float* lo = reinterpret_cast<const float*>(node + kLoWord);
  const float* hi = reinterpret_cast<const float*>(node + kHiWord);
  __m128 tnear = _mm_setzero_ps();
  __m128 tfar = _mm_set1_ps(t_max);
  for (int a = 0; a < 3; ++a) {
    const __m128 oa = _mm_set1_ps(o[a]);
    const __m128 ia = _mm_set1_ps(inv[a]);
    const __m128 t0 = _mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(lo + kWidth * a), oa), ia);
    const __m128 t1 = _mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(hi + kWidth * a), oa), ia);
    tnear = _mm_max_ps(tnear, _mm_min_ps(t0, t1));
    tfar = _mm_min_ps(tfar, _mm_max_ps(t0, t1));
  }
  tfar = _mm_mul_ps(tfar, _mm_set1_ps(1.00000024f));
  _mm_storeu_ps(entry, tnear);
  return (unsigned)_mm_movemask_ps(_mm_cmple_ps(tnear, tfar));
}
#else
JR_HD unsigned box_entries(const int32_t* node, const RayBoxData& r, float t_max, float* entry) {
  const float o[3] = {r.org.x, r.org.y, r.org.z};
  const float inv[3] = {r.inv_dir.x, r.inv_dir.y, r.inv_dir.z};
  unsigned mask = 0;
  for (int k = 0; k < kWidth; ++k) {
    float tnear = 0.0f, tfar = t_max;
    for (int a = 0; a < 3; ++a) {
      float t0 = (bits_to_float(node[kLoWord + kWidth * a + k]) - o[a]) * inv[a];
      float t1 = (bits_to_float(node[kHiWord + kWidth * a + k]) - o[a]) * inv[a];
      tnear = max2(tnear, min2(t0, t1));
      tfar = min2(tfar, max2(t0, t1));
    }
    entry[k] = tnear;
    mask |= (tnear <= tfar * 1.00000024f ? 1u : 0u) << k;
  }
  return mask;
}
#endif

JR_HD bool valid_ray(Vec3 o, Vec3 d, float t_max) {
  return finite3(o) && finite3(d) && (d.x != 0.0f || d.y != 0.0f || d.z != 0.0f) &&
         t_max > 0.0f;  // NaN t_max fails too
}

// Closest hit along o + t d, 0 < t < t_max. `tris` holds 9 floats per
// triangle in BVH order, `prim_ids` maps BVH order to the caller's face index.
// With kAnyHit the first hit found is returned (for occlusion queries).
// Child indices are checked against n_nodes / n_tris and the number of node
// visits is capped at n_nodes, so even a corrupted node array can neither
// read out of bounds nor loop forever.
template <bool kAnyHit>
JR_HD HitRecord traverse(const int32_t* nodes, int64_t n_nodes, const float* tris,
                         const int32_t* prim_ids, int64_t n_tris, Vec3 o, Vec3 d, float t_max) {
  HitRecord hit{INFINITY, -1, 0.0f, 0.0f};
  if (n_tris == 0 || !valid_ray(o, d, t_max)) return hit;
  // -0.0 + 0.0 == +0.0: a zero direction component then gives the same
  // shear and slab signs whichever zero the caller passed.
  d = Vec3{d.x + 0.0f, d.y + 0.0f, d.z + 0.0f};
  int64_t visits_left = n_nodes;
  WatertightRay wr = make_watertight_ray(o, d);
  RayBoxData br = make_ray_box_data(o, d);
  float best = t_max;
  int32_t best_slot = -1;
  // Deferred slots, nearest on top: interior nodes and leaves alike, so
  // triangles are tested in order of distance and `best` tightens early.
  int32_t stack_child[kStackSize];
  int32_t stack_count[kStackSize];
  float stack_t[kStackSize];
  int sp = 0;
  int32_t cur_child = 0;  // the slot being expanded: the root node
  int32_t cur_count = 0;
  for (;;) {
    if (cur_count != 0) {
      // A leaf (bounds checked; count < 0 of a corrupted node wraps and fails).
      if ((uint64_t)(uint32_t)cur_child + (uint32_t)cur_count <= (uint64_t)n_tris) {
        const int32_t end = cur_child + cur_count;
        for (int32_t k = cur_child; k < end; ++k) {
          float t, b1, b2;
          if (intersect_triangle(wr, tris + (int64_t)k * 9, best, &t, &b1, &b2)) {
            best = t;
            best_slot = k;
            hit.b1 = b1;
            hit.b2 = b2;
            if (kAnyHit) {
              hit.t = t;
              hit.prim = prim_ids[k];
              return hit;
            }
          }
        }
      }
    } else if ((uint64_t)(uint32_t)cur_child < (uint64_t)n_nodes && --visits_left >= 0) {
      const int32_t* node = nodes + (int64_t)cur_child * kNodeWords;
      const int32_t* child = node + kChildWord;
      const int32_t* count = node + kCountWord;
      float entry[kWidth];
      unsigned mask = box_entries(node, br, best, entry);
      // Hit slots sorted by entry distance, farthest first.
      int slot[kWidth];
      int n_hit = 0;
      for (; mask != 0; mask &= mask - 1) {
        const int c = lowest_bit(mask);
        int j = n_hit++;
        while (j > 0 && entry[slot[j - 1]] < entry[c]) {
          slot[j] = slot[j - 1];
          --j;
        }
        slot[j] = c;
      }
      if (n_hit > 0 && sp + n_hit <= kStackSize) {
        for (int j = 0; j < n_hit - 1; ++j) {
          stack_child[sp] = child[slot[j]];
          stack_count[sp] = count[slot[j]];
          stack_t[sp] = entry[slot[j]];
          ++sp;
        }
        cur_child = child[slot[n_hit - 1]];
        cur_count = count[slot[n_hit - 1]];
        continue;
      }
    }
    // Pop the next slot that may still hold a closer hit.
    bool found = false;
    while (sp > 0) {
      --sp;
      if (stack_t[sp] <= best) {
        cur_child = stack_child[sp];
        cur_count = stack_count[sp];
        found = true;
        break;
      }
    }
    if (!found) break;
  }
  if (best_slot >= 0) {
    hit.t = best;
    hit.prim = prim_ids[best_slot];
  }
  return hit;
}

}  // namespace jaxrender
