// Linear BVH (Karras, HPG 2012) over Morton-sorted triangles, shared by the
// CUDA builder and the CPU "lbvh" builder (which exists so the same code is
// tested on machines without a GPU).
//
// With n sorted keys there are n - 1 interior nodes (node 0 is the root) and
// every leaf holds one triangle: leaf k is triangle k of the sorted order.
// Keys are 63-bit Morton codes of the centroids; triangles that cannot be hit
// (non-finite vertices) get kInvalidKey and become empty children.
#pragma once

#include "jaxrender/bvh.h"
#include "jaxrender/common.h"

namespace jaxrender {

constexpr uint64_t kInvalidKey = ~uint64_t(0);

JR_HD int clz64(uint64_t x) {
#if defined(__CUDA_ARCH__)
  return __clzll((long long)x);
#else
  return x == 0 ? 64 : __builtin_clzll(x);
#endif
}

JR_HD int clz32(uint32_t x) {
#if defined(__CUDA_ARCH__)
  return __clz((int)x);
#else
  return x == 0 ? 32 : __builtin_clz(x);
#endif
}

// Spreads the low 21 bits of v so that there are two zero bits between each.
JR_HD uint64_t spread_bits_21(uint64_t v) {
  v &= 0x1fffff;
  v = (v | v << 32) & 0x1f00000000ffffULL;
  v = (v | v << 16) & 0x1f0000ff0000ffULL;
  v = (v | v << 8) & 0x100f00f00f00f00fULL;
  v = (v | v << 4) & 0x10c30c30c30c30c3ULL;
  v = (v | v << 2) & 0x1249249249249249ULL;
  return v;
}

// Morton code of a point given in [0, 1]^3 (clamped; NaN maps to 0).
JR_HD uint64_t morton63(float x, float y, float z) {
  const float scale = 2097151.0f;  // 2^21 - 1
  float c[3] = {x, y, z};
  uint64_t q[3];
  for (int a = 0; a < 3; ++a) {
    float v = c[a] * scale;
    v = v > 0.0f ? v : 0.0f;  // also maps NaN to 0
    v = v < scale ? v : scale;
    q[a] = (uint64_t)v;
  }
  return (spread_bits_21(q[0]) << 2) | (spread_bits_21(q[1]) << 1) | spread_bits_21(q[2]);
}

// Length of the common prefix of keys i and j, with ties broken by index so
// duplicate keys still give a proper binary tree; -1 outside [0, n).
JR_HD int lbvh_delta(const uint64_t* keys, int32_t n, int32_t i, int32_t j) {
  if (j < 0 || j >= n) return -1;
  uint64_t a = keys[i], b = keys[j];
  if (a == b) return 64 + clz32((uint32_t)(i ^ j));
  return clz64(a ^ b);
}

// Determines the children of interior node i (0 <= i < n - 1) and writes its
// links into binary node i (words 12..15) and the parents of both children.
// leaf_valid(k) tells whether sorted triangle k can be hit.
JR_HD void lbvh_link_node(const uint64_t* keys, int32_t n, int32_t i, int32_t* nodes,
                          int32_t* node_parent, int32_t* leaf_parent) {
  int d = lbvh_delta(keys, n, i, i + 1) - lbvh_delta(keys, n, i, i - 1) >= 0 ? 1 : -1;
  int dmin = lbvh_delta(keys, n, i, i - d);
  int32_t lmax = 2;
  while (lbvh_delta(keys, n, i, i + lmax * d) > dmin) lmax *= 2;
  int32_t l = 0;
  for (int32_t t = lmax / 2; t >= 1; t /= 2)
    if (lbvh_delta(keys, n, i, i + (l + t) * d) > dmin) l += t;
  int32_t j = i + l * d;
  int dnode = lbvh_delta(keys, n, i, j);
  int32_t s = 0;
  int32_t t = l;
  do {
    t = (t + 1) >> 1;
    if (lbvh_delta(keys, n, i, i + (s + t) * d) > dnode) s += t;
  } while (t > 1);
  int32_t gamma = i + s * d + (d < 0 ? -1 : 0);
  int32_t first = i < j ? i : j;
  int32_t last = i < j ? j : i;
  int32_t* links = nodes + (int64_t)i * kNode2Words + 12;
  int32_t kids[2] = {gamma, gamma + 1};
  bool leaf[2] = {first == gamma, last == gamma + 1};
  for (int c = 0; c < 2; ++c) {
    links[c] = kids[c];
    if (leaf[c]) {
      links[2 + c] = keys[kids[c]] == kInvalidKey ? -1 : 1;
      leaf_parent[kids[c]] = i;
    } else {
      links[2 + c] = 0;
      node_parent[kids[c]] = i;
    }
  }
}

// Box of sorted triangle k.
JR_HD void triangle_box(const float* tris, int32_t k, float* lo, float* hi) {
  const float* p = tris + (int64_t)k * 9;
  for (int a = 0; a < 3; ++a) {
    lo[a] = fminf(fminf(p[a], p[3 + a]), p[6 + a]);
    hi[a] = fmaxf(fmaxf(p[a], p[3 + a]), p[6 + a]);
  }
}

// Writes the child boxes of node p from its children: leaves from their
// triangle, interior children as the union of their own two child boxes
// (which must already be written). `nodes` may be volatile-read on the GPU.
template <typename NodePtr>
JR_HD void lbvh_fill_boxes(NodePtr nodes, const float* tris, int32_t p) {
  int32_t base = p * kNode2Words;
  for (int c = 0; c < 2; ++c) {
    int32_t child = nodes[base + 12 + c];
    int32_t count = nodes[base + 14 + c];
    float lo[3] = {INFINITY, INFINITY, INFINITY};
    float hi[3] = {-INFINITY, -INFINITY, -INFINITY};
    if (count > 0) {
      triangle_box(tris, child, lo, hi);
    } else if (count == 0) {
      int32_t cb = child * kNode2Words;
      for (int g = 0; g < 2; ++g) {
        if (nodes[cb + 14 + g] < 0) continue;
        for (int a = 0; a < 3; ++a) {
          lo[a] = fminf(lo[a], bits_to_float(nodes[cb + 3 * g + a]));
          hi[a] = fmaxf(hi[a], bits_to_float(nodes[cb + 6 + 3 * g + a]));
        }
      }
    }
    for (int a = 0; a < 3; ++a) {
      nodes[base + 3 * c + a] = float_to_bits(lo[a]);
      nodes[base + 6 + 3 * c + a] = float_to_bits(hi[a]);
    }
  }
}

}  // namespace jaxrender
