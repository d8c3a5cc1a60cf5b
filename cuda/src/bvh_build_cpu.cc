// Binned-SAH BVH builder for the CPU.
//
// Top levels are split one node at a time on the calling thread (each split
// over a large range is itself a parallel binning pass); once ranges are
// small enough, whole subtrees are built in parallel, one per pool task.
#include "bvh_build_cpu.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "jaxrender/bvh.h"
#include "jaxrender/lbvh.h"
#include "parallel_cpu.h"

namespace jaxrender {
namespace {

constexpr int kBins = 32;
constexpr int kMaxLeafSize = 8;
// Below this depth splits follow the SAH; deeper ranges (possible only for
// pathological inputs) are split at the object median, bounding the depth by
// 64 + log2(F) < kStackSize.
constexpr int kMaxSahDepth = 64;
constexpr float kTraversalCost = 1.0f;
constexpr float kIntersectCost = 1.0f;
// Ranges larger than this are split by the parallel binning pass.
constexpr int64_t kParallelBinThreshold = 1 << 16;

struct Box {
  float lo[3] = {INFINITY, INFINITY, INFINITY};
  float hi[3] = {-INFINITY, -INFINITY, -INFINITY};
  void grow(const Box& b) {
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::min(lo[a], b.lo[a]);
      hi[a] = std::max(hi[a], b.hi[a]);
    }
  }
  void grow_point(const float* p) {
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::min(lo[a], p[a]);
      hi[a] = std::max(hi[a], p[a]);
    }
  }
  float half_area() const {
    float dx = hi[0] - lo[0], dy = hi[1] - lo[1], dz = hi[2] - lo[2];
    if (!(dx >= 0.0f && dy >= 0.0f && dz >= 0.0f)) return 0.0f;
    return dx * dy + dy * dz + dz * dx;
  }
};

struct Bins {
  Box box[3][kBins];
  int32_t count[3][kBins] = {};
  void merge(const Bins& o) {
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < kBins; ++b) {
        box[a][b].grow(o.box[a][b]);
        count[a][b] += o.count[a][b];
      }
  }
};

// Result of deciding how to treat a range: a leaf, or a split at `mid` (after
// partitioning) with the boxes of both sides.
struct Split {
  bool leaf = true;
  int64_t mid = 0;
  Box side[2];
};

struct Builder {
  xla::ffi::ThreadPool& pool;
  std::vector<Box> prim_box;
  std::vector<float> centroid;  // 3 per primitive
  std::vector<int32_t> order;   // primitive indices, permuted into leaf order
  int32_t* nodes;
  std::atomic<int32_t> next_node{1};

  Box range_box(int64_t begin, int64_t end) const {
    Box b;
    for (int64_t i = begin; i < end; ++i) b.grow(prim_box[order[i]]);
    return b;
  }

  void bin_range(int64_t begin, int64_t end, const Box& cbox, const float* scale, Bins& bins) const {
    for (int64_t i = begin; i < end; ++i) {
      int32_t p = order[i];
      const float* c = &centroid[3 * (int64_t)p];
      for (int a = 0; a < 3; ++a) {
        int b = (int)((c[a] - cbox.lo[a]) * scale[a]);
        b = std::min(std::max(b, 0), kBins - 1);
        bins.box[a][b].grow(prim_box[p]);
        bins.count[a][b] += 1;
      }
    }
  }

  Split median_split(int64_t begin, int64_t end, const Box& cbox) {
    int axis = 0;
    float ext[3];
    for (int a = 0; a < 3; ++a) ext[a] = cbox.hi[a] - cbox.lo[a];
    if (ext[1] > ext[axis]) axis = 1;
    if (ext[2] > ext[axis]) axis = 2;
    int64_t mid = begin + (end - begin) / 2;
    if (ext[axis] > 0.0f) {
      std::nth_element(order.begin() + begin, order.begin() + mid, order.begin() + end,
                       [&](int32_t x, int32_t y) {
                         return centroid[3 * (int64_t)x + axis] < centroid[3 * (int64_t)y + axis];
                       });
    }
    Split s;
    s.leaf = false;
    s.mid = mid;
    s.side[0] = range_box(begin, mid);
    s.side[1] = range_box(mid, end);
    return s;
  }

  Split find_split(int64_t begin, int64_t end, const Box& box, int depth) {
    const int64_t n = end - begin;
    Split s;
    if (n <= 1) return s;
    Box cbox;
    for (int64_t i = begin; i < end; ++i) cbox.grow_point(&centroid[3 * (int64_t)order[i]]);
    float scale[3];
    bool any_extent = false;
    for (int a = 0; a < 3; ++a) {
      float ext = cbox.hi[a] - cbox.lo[a];
      scale[a] = ext > 0.0f ? (float)kBins * (1.0f - 1e-6f) / ext : 0.0f;
      any_extent = any_extent || ext > 0.0f;
    }
    if (!any_extent || depth >= kMaxSahDepth) {
      if (n <= kMaxLeafSize) return s;
      return median_split(begin, end, cbox);
    }
    Bins bins;
    if (n >= kParallelBinThreshold) {
      const int64_t grain = 1 << 14;
      const int64_t chunks = (n + grain - 1) / grain;
      std::vector<Bins> partial(chunks);
      parallel_for(pool, chunks, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c)
          bin_range(begin + c * grain, std::min(end, begin + (c + 1) * grain), cbox, scale,
                    partial[c]);
      });
      for (const Bins& p : partial) bins.merge(p);
    } else {
      bin_range(begin, end, cbox, scale, bins);
    }
    float best_cost = INFINITY;
    int best_axis = -1, best_bin = -1;
    for (int a = 0; a < 3; ++a) {
      if (scale[a] == 0.0f) continue;
      // Sweep from the right to get suffix areas, then from the left.
      float right_area[kBins];
      int32_t right_count[kBins];
      Box acc;
      int32_t cnt = 0;
      for (int b = kBins - 1; b > 0; --b) {
        acc.grow(bins.box[a][b]);
        cnt += bins.count[a][b];
        right_area[b] = acc.half_area();
        right_count[b] = cnt;
      }
      acc = Box();
      cnt = 0;
      for (int b = 1; b < kBins; ++b) {
        acc.grow(bins.box[a][b - 1]);
        cnt += bins.count[a][b - 1];
        if (cnt == 0 || right_count[b] == 0) continue;
        float cost = acc.half_area() * cnt + right_area[b] * right_count[b];
        if (cost < best_cost) {
          best_cost = cost;
          best_axis = a;
          best_bin = b;
        }
      }
    }
    float parent_area = box.half_area();
    float split_cost = parent_area > 0.0f
                           ? kTraversalCost + kIntersectCost * best_cost / parent_area
                           : kTraversalCost + kIntersectCost * (float)n * 0.5f;
    if (n <= kMaxLeafSize && (best_axis < 0 || kIntersectCost * (float)n <= split_cost)) return s;
    if (best_axis < 0) return median_split(begin, end, cbox);
    const int a = best_axis;
    auto mid_it = std::partition(order.begin() + begin, order.begin() + end, [&](int32_t p) {
      int b = (int)((centroid[3 * (int64_t)p + a] - cbox.lo[a]) * scale[a]);
      return std::min(std::max(b, 0), kBins - 1) < best_bin;
    });
    s.leaf = false;
    s.mid = mid_it - order.begin();
    for (int b = 0; b < kBins; ++b) s.side[b < best_bin ? 0 : 1].grow(bins.box[a][b]);
    if (s.mid == begin || s.mid == end) return median_split(begin, end, cbox);
    return s;
  }

  struct Task {
    int32_t node;
    int64_t begin, end;
    Split split;
    int depth;
  };

  // Fills node `t.node` from its precomputed split. Children that are large
  // become deferred tasks when `deferred` is given, else they are built now.
  void build_node(const Task& t, std::vector<Task>* deferred, int64_t defer_below) {
    Node2 node;
    const int64_t ranges[2][2] = {{t.begin, t.split.mid}, {t.split.mid, t.end}};
    std::vector<Task> children;
    for (int c = 0; c < 2; ++c) {
      const Box& b = t.split.side[c];
      for (int a = 0; a < 3; ++a) {
        node.lo[c][a] = b.lo[a];
        node.hi[c][a] = b.hi[a];
      }
      int64_t begin = ranges[c][0], end = ranges[c][1];
      if (end == begin) {
        node.child[c] = 0;
        node.count[c] = -1;
        continue;
      }
      Split s = find_split(begin, end, b, t.depth + 1);
      if (s.leaf) {
        node.child[c] = (int32_t)begin;
        node.count[c] = (int32_t)(end - begin);
        continue;
      }
      int32_t index = next_node.fetch_add(1);
      node.child[c] = index;
      node.count[c] = 0;
      children.push_back(Task{index, begin, end, s, t.depth + 1});
    }
    memcpy(nodes + (int64_t)t.node * kNode2Words, &node, sizeof(Node2));
    for (const Task& child : children) {
      if (deferred != nullptr && child.end - child.begin < defer_below) {
        deferred->push_back(child);
      } else {
        build_node(child, deferred, defer_below);
      }
    }
  }
};

}  // namespace

std::string build_bvh_cpu(xla::ffi::ThreadPool& pool, BvhMethod method, const float* vertices,
                          int64_t num_vertices, const int32_t* faces, int64_t num_faces,
                          int32_t* nodes, float* tris, int32_t* prim_ids) {
  const int64_t F = num_faces;
  for (int64_t f = 0; f < F; ++f) {
    for (int k = 0; k < 3; ++k) {
      int32_t v = faces[3 * f + k];
      if (v < 0 || v >= num_vertices) {
        return "faces[" + std::to_string(f) + "] = (" + std::to_string(faces[3 * f]) + ", " +
               std::to_string(faces[3 * f + 1]) + ", " + std::to_string(faces[3 * f + 2]) +
               ") indexes a vertex outside [0, " + std::to_string(num_vertices) + ")";
      }
    }
  }
  const int64_t max_nodes = max_bvh_nodes(F);
  // The builders write the binary tree here; collapse() turns it into the
  // 4-wide output nodes at the end.
  std::vector<int32_t> nodes2(kNode2Words * max_nodes, 0);
  int32_t* const out_nodes = nodes;
  nodes = nodes2.data();
  // Only the 4-wide nodes reachable from the root are written, renumbered
  // depth-first with siblings adjacent: half the memory of collapsing every
  // binary node (as the GPU does) and better locality for incoherent rays.
  auto collapse = [&](int64_t used) {
    (void)used;
    int64_t next_free = 1;
    std::vector<std::pair<int32_t, int32_t>> stack{{0, 0}};  // (binary index, output index)
    while (!stack.empty()) {
      auto [b, o] = stack.back();
      stack.pop_back();
      collapse_node(nodes, b, out_nodes + (int64_t)o * kNodeWords);
      int32_t* child = out_nodes + (int64_t)o * kNodeWords + kChildWord;
      const int32_t* count = out_nodes + (int64_t)o * kNodeWords + kCountWord;
      for (int k = kWidth - 1; k >= 0; --k) {
        if (count[k] != 0) continue;
        int32_t fresh = (int32_t)next_free++;
        stack.push_back({child[k], fresh});
        child[k] = fresh;
      }
    }
    parallel_for(pool, max_nodes - next_free, 1 << 14, [&](int64_t b, int64_t e) {
      Node empty;
      memset(&empty, 0, sizeof(empty));
      for (int k = 0; k < kWidth; ++k) empty.count[k] = -1;
      for (int64_t i = next_free + b; i < next_free + e; ++i)
        memcpy(out_nodes + i * kNodeWords, &empty, sizeof(Node));
    });
  };

  Builder builder{pool, {}, {}, {}, nodes};
  builder.prim_box.resize(F);
  builder.centroid.resize(3 * F);
  std::vector<uint8_t> valid(F);
  parallel_for(pool, F, 1 << 15, [&](int64_t b, int64_t e) {
    for (int64_t f = b; f < e; ++f) {
      Box box;
      bool ok = true;
      for (int k = 0; k < 3; ++k) {
        const float* p = vertices + 3 * (int64_t)faces[3 * f + k];
        ok = ok && std::isfinite(p[0]) && std::isfinite(p[1]) && std::isfinite(p[2]);
        box.grow_point(p);
      }
      valid[f] = ok;
      builder.prim_box[f] = box;
      for (int a = 0; a < 3; ++a) builder.centroid[3 * f + a] = 0.5f * (box.lo[a] + box.hi[a]);
    }
  });

  auto write_tris = [&]() {
    parallel_for(pool, F, 1 << 15, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        int32_t f = builder.order[i];
        prim_ids[i] = f;
        for (int k = 0; k < 3; ++k) {
          const float* p = vertices + 3 * (int64_t)faces[3 * (int64_t)f + k];
          for (int a = 0; a < 3; ++a) tris[9 * i + 3 * k + a] = p[a];
        }
      }
    });
  };

  Node2 root;
  memset(&root, 0, sizeof(root));
  root.count[0] = root.count[1] = -1;

  if (method == BvhMethod::kLbvh) {
    Box cbox;
    for (int64_t f = 0; f < F; ++f)
      if (valid[f]) cbox.grow_point(&builder.centroid[3 * f]);
    float scale[3];
    for (int a = 0; a < 3; ++a) {
      float ext = cbox.hi[a] - cbox.lo[a];
      scale[a] = ext > 0.0f ? 1.0f / ext : 0.0f;
    }
    std::vector<std::pair<uint64_t, int32_t>> keyed(F);
    parallel_for(pool, F, 1 << 15, [&](int64_t b, int64_t e) {
      for (int64_t f = b; f < e; ++f) {
        const float* c = &builder.centroid[3 * f];
        keyed[f].first = valid[f] ? morton63((c[0] - cbox.lo[0]) * scale[0],
                                             (c[1] - cbox.lo[1]) * scale[1],
                                             (c[2] - cbox.lo[2]) * scale[2])
                                  : kInvalidKey;
        keyed[f].second = (int32_t)f;
      }
    });
    std::sort(keyed.begin(), keyed.end());
    std::vector<uint64_t> keys(F);
    builder.order.resize(F);
    for (int64_t i = 0; i < F; ++i) {
      keys[i] = keyed[i].first;
      builder.order[i] = keyed[i].second;
    }
    write_tris();
    const int32_t n = (int32_t)F;
    if (n >= 2) {
      std::vector<int32_t> node_parent(n - 1, -1), leaf_parent(n, -1);
      parallel_for(pool, n - 1, 1 << 14, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          lbvh_link_node(keys.data(), n, (int32_t)i, nodes, node_parent.data(), leaf_parent.data());
      });
      // Post-order: a node's boxes are filled after both interior children.
      std::vector<std::pair<int32_t, bool>> stack{{0, false}};
      while (!stack.empty()) {
        auto [p, expanded] = stack.back();
        stack.pop_back();
        if (expanded) {
          lbvh_fill_boxes(nodes, tris, p);
          continue;
        }
        stack.push_back({p, true});
        for (int c = 0; c < 2; ++c)
          if (nodes[p * kNode2Words + 14 + c] == 0)
            stack.push_back({nodes[p * kNode2Words + 12 + c], false});
      }
    } else {
      if (n == 1 && valid[0]) {
        root.child[0] = 0;
        root.count[0] = 1;
        triangle_box(tris, 0, root.lo[0], root.hi[0]);
      }
      memcpy(nodes, &root, sizeof(Node2));
    }
    collapse(n >= 2 ? n - 1 : 1);
    return std::string();
  }

  std::vector<int32_t> invalid;
  builder.order.reserve(F);
  for (int64_t f = 0; f < F; ++f) (valid[f] ? builder.order : invalid).push_back((int32_t)f);
  const int64_t n_valid = (int64_t)builder.order.size();

  // The root always exists; a tree of one leaf is a root with one child.
  if (n_valid > 0) {
    Box all = builder.range_box(0, n_valid);
    Split s = builder.find_split(0, n_valid, all, 0);
    if (s.leaf) {
      for (int a = 0; a < 3; ++a) {
        root.lo[0][a] = all.lo[a];
        root.hi[0][a] = all.hi[a];
      }
      root.child[0] = 0;
      root.count[0] = (int32_t)n_valid;
      memcpy(nodes, &root, sizeof(Node2));
    } else {
      const int64_t threads = std::max<int64_t>(pool.num_threads(), 1);
      const int64_t defer_below =
          threads > 1 ? std::max<int64_t>(n_valid / (8 * threads), 1024) : (int64_t)1 << 62;
      std::vector<Builder::Task> deferred;
      builder.build_node(Builder::Task{0, 0, n_valid, s, 0}, threads > 1 ? &deferred : nullptr,
                         defer_below);
      std::sort(deferred.begin(), deferred.end(), [](const auto& x, const auto& y) {
        return x.end - x.begin > y.end - y.begin;
      });
      parallel_for(pool, (int64_t)deferred.size(), 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) builder.build_node(deferred[i], nullptr, 0);
      });
    }
  } else {
    memcpy(nodes, &root, sizeof(Node2));
  }
  builder.order.insert(builder.order.end(), invalid.begin(), invalid.end());
  write_tris();
  collapse(builder.next_node.load());
  return std::string();
}

}  // namespace jaxrender
