// parallel_for over XLA's intra-op thread pool (CPU only, STL allowed here).
//
// The calling thread claims chunks too, so the loop finishes even when no
// pool thread is free (or the handler itself runs on the only pool thread):
// helpers that start after all chunks are claimed return at once. The state
// is shared-owned, so a late helper never touches a dead stack frame.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace jaxrender {

struct ParallelState {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex mutex;
  std::condition_variable cv;
};

// fn(begin, end) is called for disjoint chunks covering [0, n) with at most
// `grain` items each.
template <typename F>
void parallel_for(xla::ffi::ThreadPool& pool, int64_t n, int64_t grain, const F& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t n_chunks = (n + grain - 1) / grain;
  const int64_t threads = pool.num_threads();
  if (n_chunks == 1 || threads <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  auto state = std::make_shared<ParallelState>();
  const F* fn_ptr = &fn;
  auto worker = [state, fn_ptr, n, grain, n_chunks]() {
    for (;;) {
      int64_t chunk = state->next.fetch_add(1);
      if (chunk >= n_chunks) return;
      int64_t begin = chunk * grain;
      (*fn_ptr)(begin, std::min(n, begin + grain));
      if (state->done.fetch_add(1) + 1 == n_chunks) {
        std::lock_guard<std::mutex> lock(state->mutex);
        state->cv.notify_all();
      }
    }
  };
  const int64_t helpers = std::min<int64_t>(threads - 1, n_chunks - 1);
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule(decltype(worker)(worker));
  worker();
  std::unique_lock<std::mutex> lock(state->mutex);
  state->cv.wait(lock, [&] { return state->done.load() == n_chunks; });
}

}  // namespace jaxrender
