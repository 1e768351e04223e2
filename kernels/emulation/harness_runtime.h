// The runtime of the host emulation harnesses (harness.cpp for the op's kernels,
// fused_harness.cpp for the fused op's): stdin/stdout protocol helpers, exact-size
// buffers, and the launch of a grid, sequential or threaded. See harness.cpp for why
// running the kernels on the host is faithful and how the threaded runs reach every
// pair of GPU threads.
#ifndef MMREDNET_EMULATION_HARNESS_RUNTIME_H
#define MMREDNET_EMULATION_HARNESS_RUNTIME_H

#include "cuda_host.h"

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace emulation {

[[noreturn]] inline void fail(const std::string& message) {
  std::fprintf(stdout, "error: %s\n", message.c_str());
  std::fflush(stdout);
  std::exit(2);
}

inline void read_exact(void* data, size_t bytes) {
  if (bytes && std::fread(data, 1, bytes, stdin) != bytes) fail("short read on stdin");
}

inline void write_exact(const void* data, size_t bytes) {
  if (bytes && std::fwrite(data, 1, bytes, stdout) != bytes) fail("short write on stdout");
}

// A tensor in its own exact-size allocation. When `missing` is 1 the allocation
// (and the copy) is one element short: the kernel's access to the last element is
// then one past the end of the buffer.
struct Buffer {
  std::unique_ptr<unsigned char[]> data;
  size_t bytes = 0;

  Buffer(long long count, size_t element_bytes, int missing, bool from_stdin) {
    const size_t full = (size_t)count * element_bytes;
    bytes = count > 0 ? full - (size_t)missing * element_bytes : 0;
    data.reset(new unsigned char[bytes ? bytes : 1]);
    if (from_stdin) {
      read_exact(data.get(), bytes);
      std::vector<unsigned char> dropped(full - bytes);
      read_exact(dropped.data(), dropped.size());
    } else {
      std::memset(data.get(), 0xff, bytes);
    }
  }
};

// W host threads, each with its own mutex and condition variable: a worker
// synchronises only with the launcher (start, done), never with another worker,
// so the GPU threads of different workers are unordered for ThreadSanitizer.
class Pool {
 public:
  explicit Pool(int size) {
    for (int i = 0; i < size; ++i) workers_.emplace_back(new Worker);
    for (int i = 0; i < size; ++i) workers_[i]->thread = std::thread([this, i] { loop(i); });
  }

  ~Pool() {
    for (auto& w : workers_) {
      {
        std::lock_guard<std::mutex> lock(w->mutex);
        w->quit = true;
      }
      w->wake.notify_all();
    }
    for (auto& w : workers_) w->thread.join();
  }

  int size() const { return (int)workers_.size(); }

  // Runs job(worker) on every worker at once and returns when all are done.
  void run(const std::function<void(int)>& job) {
    job_ = &job;
    for (auto& w : workers_) {
      {
        std::lock_guard<std::mutex> lock(w->mutex);
        w->start = true;
        w->done = false;
      }
      w->wake.notify_all();
    }
    for (auto& w : workers_) {
      std::unique_lock<std::mutex> lock(w->mutex);
      w->wake.wait(lock, [&] { return w->done; });
    }
  }

 private:
  struct Worker {
    std::thread thread;
    std::mutex mutex;
    std::condition_variable wake;
    bool start = false, done = false, quit = false;
  };

  void loop(int index) {
    Worker& w = *workers_[index];
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(w.mutex);
        w.wake.wait(lock, [&] { return w.start || w.quit; });
        if (w.quit) return;
        w.start = false;
      }
      (*job_)(index);
      {
        std::lock_guard<std::mutex> lock(w.mutex);
        w.done = true;
      }
      w.wake.notify_all();
    }
  }

  std::vector<std::unique_ptr<Worker>> workers_;
  const std::function<void(int)>* job_ = nullptr;
};

inline std::unique_ptr<Pool> pool;

// Runs GPU thread `gpu_thread(linear index)` for every thread of a grid of `blocks` x
// `threads`, with blockIdx/threadIdx set: one after another (workers = 0, which calls
// `sequential_begin` and `sequential_end` around the run), or on `workers` host threads
// in the passes that make every pair of GPU threads concurrent once; `duplicate` runs
// every GPU thread twice at once (the planted race of the tests).
inline void run_grid(unsigned int blocks, unsigned int threads, int workers, bool duplicate,
              const std::function<void(unsigned int)>& gpu_thread) {
  gridDim.x = blocks;
  blockDim.x = threads;
  const unsigned long long total = (unsigned long long)blocks * threads;
  if (total > 0xffffffffull) fail("more than 2^32 GPU threads");
  auto run = [&](unsigned int t) {
    blockIdx.x = t / blockDim.x;
    threadIdx.x = t % blockDim.x;
    gpu_thread(t);
  };
  if (workers == 0) {
    for (unsigned int t = 0; t < total; ++t) run(t);
    return;
  }
  if (!pool || pool->size() != workers) pool.reset(new Pool(workers));
  unsigned long long place = 1;  // W^k of pass k
  do {
    const unsigned long long digit_of = place;
    pool->run([&, digit_of](int worker) {
      for (unsigned int t = 0; t < total; ++t) {
        const int digit = (int)(t / digit_of % (unsigned long long)workers);
        if (digit == worker || (duplicate && (digit + 1) % workers == worker)) run(t);
      }
    });
    place *= (unsigned long long)workers;
  } while (place < total);
}

inline int missing_from(const std::string& shortened, const char* name) {
  return shortened == name ? 1 : 0;
}

}  // namespace emulation

#endif  // MMREDNET_EMULATION_HARNESS_RUNTIME_H
