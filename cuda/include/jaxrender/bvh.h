// Bounding volume hierarchy layout and traversal, shared by CPU and GPU.
//
// Layout: a binary BVH whose nodes store the boxes of their two children, so
// one 64-byte node visit tests both children (one cache line on the CPU, one
// 64-byte load on the GPU). Node 0 is the root. For child c of a node:
//   count[c] == 0: interior, child[c] is the index of its node;
//   count[c] >  0: leaf, triangles [child[c], child[c] + count[c]) of the
//                  reordered triangle array;
//   count[c] <  0: empty (nothing to visit).
// The Python side holds nodes as an int32 (M, 16) array; the floats are bit
// patterns, so XLA never treats them as numbers.
#pragma once

#include "jaxrender/common.h"
#include "jaxrender/triangle.h"

namespace jaxrender {

constexpr int kNodeWords = 16;
// Deepest tree the builders may produce plus margin: both builders bound the
// depth (CPU: median splits below depth 64; GPU: 63-bit keys + index bits).
constexpr int kStackSize = 128;

struct Node {
  float lo[2][3];  // child boxes: lo[c][axis]
  float hi[2][3];
  int32_t child[2];
  int32_t count[2];
};
static_assert(sizeof(Node) == 64, "Node must be 64 bytes");

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
// tiny) becomes +-1e30, so (bound - origin) * inv is 0 rather than 0 * inf =
// NaN when the origin lies on a slab plane; the ray then counts as inside
// that slab, which is conservative.
JR_HD float safe_rcp(float x) {
  const float tiny = 1e-30f;
  return 1.0f / (fabsf(x) > tiny ? x : copysignf(tiny, x));
}

JR_HD RayBoxData make_ray_box_data(Vec3 o, Vec3 d) {
  return RayBoxData{o, Vec3{safe_rcp(d.x), safe_rcp(d.y), safe_rcp(d.z)}};
}

// Slab test of child c. Returns the entry distance, or NaN if the box is
// missed within [0, t_max] (NaN, not +inf: t_max itself may be +inf, and NaN
// fails every comparison the caller makes). The exit distance is scaled by
// 1 + 2 gamma(3) (Ize 2013) so rounding never culls a box the ray enters.
JR_HD float box_entry(const Node& n, int c, const RayBoxData& r, float t_max) {
  float tx0 = (n.lo[c][0] - r.org.x) * r.inv_dir.x;
  float tx1 = (n.hi[c][0] - r.org.x) * r.inv_dir.x;
  float ty0 = (n.lo[c][1] - r.org.y) * r.inv_dir.y;
  float ty1 = (n.hi[c][1] - r.org.y) * r.inv_dir.y;
  float tz0 = (n.lo[c][2] - r.org.z) * r.inv_dir.z;
  float tz1 = (n.hi[c][2] - r.org.z) * r.inv_dir.z;
  float tnear = max2(max2(min2(tx0, tx1), min2(ty0, ty1)), max2(min2(tz0, tz1), 0.0f));
  float tfar = min2(min2(max2(tx0, tx1), max2(ty0, ty1)), min2(max2(tz0, tz1), t_max));
  tfar *= 1.00000024f;
  return tnear <= tfar ? tnear : NAN;
}

JR_HD bool valid_ray(Vec3 o, Vec3 d, float t_max) {
  return finite3(o) && finite3(d) && (d.x != 0.0f || d.y != 0.0f || d.z != 0.0f) &&
         t_max > 0.0f;  // NaN t_max fails too
}

JR_HD Node load_node(const int32_t* nodes, int32_t index) {
  Node n;
  memcpy(&n, nodes + (int64_t)index * kNodeWords, sizeof(Node));
  return n;
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
  int64_t visits_left = n_nodes;
  WatertightRay wr = make_watertight_ray(o, d);
  RayBoxData br = make_ray_box_data(o, d);
  float best = t_max;
  int32_t best_slot = -1;
  int32_t stack[kStackSize];
  float stack_t[kStackSize];
  int sp = 0;
  int32_t node_index = 0;
  for (;;) {
    if (--visits_left < 0) break;
    Node n = load_node(nodes, node_index);
    int32_t next[2];
    float next_t[2];
    int n_next = 0;
    for (int c = 0; c < 2; ++c) {
      if (n.count[c] < 0) continue;
      float te = box_entry(n, c, br, best);
      if (!(te <= best)) continue;
      if (n.count[c] > 0) {
        if (n.child[c] < 0 || (int64_t)n.child[c] + n.count[c] > n_tris) continue;
        int32_t end = n.child[c] + n.count[c];
        for (int32_t k = n.child[c]; k < end; ++k) {
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
      } else {
        if (n.child[c] < 0 || n.child[c] >= n_nodes) continue;
        next[n_next] = n.child[c];
        next_t[n_next] = te;
        ++n_next;
      }
    }
    if (n_next == 2) {
      int nearer = next_t[1] < next_t[0] ? 1 : 0;
      if (sp < kStackSize) {
        stack[sp] = next[1 - nearer];
        stack_t[sp] = next_t[1 - nearer];
        ++sp;
      }
      node_index = next[nearer];
      continue;
    }
    if (n_next == 1) {
      node_index = next[0];
      continue;
    }
    // Pop the next subtree that may still hold a closer hit.
    bool found = false;
    while (sp > 0) {
      --sp;
      if (stack_t[sp] <= best) {
        node_index = stack[sp];
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
