// The CUDA built-ins that kernels/involution_cuda.cu uses, defined for the host, so
// that the kernel source compiles unchanged as C++ for the host emulation
// (harness.cpp). Nothing here changes what a kernel computes: qualifiers vanish,
// __ldg is a plain load (that the harness may count), bit casts are memcpy, and the
// thread indices are set by the harness before it calls an entry point. The PTX of the device paths is under
// `#ifdef __CUDA_ARCH__` in the kernel source, which is undefined here, so its host
// paths are compiled instead.
#ifndef MMREDNET_EMULATION_CUDA_HOST_H
#define MMREDNET_EMULATION_CUDA_HOST_H

#include <algorithm>
#include <cstring>

#ifdef __CUDA_ARCH__
#error "cuda_host.h is for host builds of the kernels only"
#endif

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct emulated_dim3 {
  unsigned int x, y, z;
};

// Per host thread: the threaded emulation runs GPU threads on several host threads.
inline thread_local emulated_dim3 threadIdx = {0, 0, 0};
inline thread_local emulated_dim3 blockIdx = {0, 0, 0};
// Set once per launch, before any GPU thread runs.
inline emulated_dim3 blockDim = {1, 1, 1};
inline emulated_dim3 gridDim = {1, 1, 1};

// The harness counts a launch's loads through this hook (null: not counting), so
// the tests can hold the traffic model (mmrednet/ops/cuda_traffic.py) to the loads
// the kernels really make.
inline thread_local void (*emulated_load_hook)(const void*) = nullptr;

template <typename T>
inline T __ldg(const T* p) {
  if (emulated_load_hook) emulated_load_hook(p);
  return *p;
}

inline float __uint_as_float(unsigned int u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline unsigned int __float_as_uint(float f) {
  unsigned int u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

using std::min;

#endif  // MMREDNET_EMULATION_CUDA_HOST_H
