// One-thread-per-output involution kernels: the design of the original CuPy
// kernels (every thread recomputes its own indices and reads the generated
// kernel value once per channel of its group). Kept ONLY as baseline (b) of
// tools/benchmark_involution.py; mmrednet never runs them otherwise. Unlike the
// original they take 64-bit indices, accumulate in float and handle half and
// bfloat16, so the benchmark compares designs, not bugs.
//
// Entry points: involution_baseline_<op>_<dtype>(a, b, result, geometry...) with
// the same arguments as the main kernels (see involution_cuda.cu); the last
// geometry argument is unused.

#ifndef MMREDNET_THREADS
#define MMREDNET_THREADS 256
#endif

namespace mmrednet_baseline {

typedef long long i64;

struct half_t {
  unsigned short bits;
};
struct bfloat16_t {
  unsigned short bits;
};

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ double to_float(double v) { return v; }
__device__ __forceinline__ float to_float(half_t v) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
  return f;
}
__device__ __forceinline__ float to_float(bfloat16_t v) {
  return __uint_as_float(static_cast<unsigned int>(v.bits) << 16);
}

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(double* p, double v) { *p = v; }
__device__ __forceinline__ void store(half_t* p, float v) {
  unsigned short bits;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(v));
  p->bits = bits;
}
__device__ __forceinline__ void store(bfloat16_t* p, float v) {
  // Round to nearest even (NaN handling is irrelevant for a timing baseline).
  const unsigned int u = __float_as_uint(v);
  p->bits = static_cast<unsigned short>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

template <typename T>
struct Acc {
  typedef float type;
};
template <>
struct Acc<double> {
  typedef double type;
};

#define MMREDNET_BASELINE_PARAMS                                                             \
  long long N, long long C, long long G, long long H, long long W, long long Ho, long long Wo, \
      long long KH, long long KW, long long SH, long long SW, long long PH, long long PW,      \
      long long DH, long long DW, long long

#define MMREDNET_BASELINE_LOOP(index, total)                                           \
  for (i64 index = (i64)blockIdx.x * blockDim.x + threadIdx.x; index < (total); \
       index += (i64)blockDim.x * gridDim.x)

// out[n, c, i, j]: one thread each.
template <typename T>
__device__ void forward(const T* input, const T* weight, T* output, MMREDNET_BASELINE_PARAMS) {
  MMREDNET_BASELINE_LOOP(index, N * C * Ho * Wo) {
    const i64 j = index % Wo, i = index / Wo % Ho, c = index / (Wo * Ho) % C;
    const i64 n = index / (Wo * Ho * C), g = c / (C / G);
    typename Acc<T>::type sum = 0;
    for (i64 u = 0; u < KH; ++u) {
      for (i64 v = 0; v < KW; ++v) {
        const i64 h = i * SH + u * DH - PH, w = j * SW + v * DW - PW;
        if (h >= 0 && h < H && w >= 0 && w < W) {
          sum += to_float(weight[((((n * G + g) * KH + u) * KW + v) * Ho + i) * Wo + j]) *
                 to_float(input[((n * C + c) * H + h) * W + w]);
        }
      }
    }
    store(output + index, sum);
  }
}

// grad_input[n, c, h, w]: one thread each, over the taps whose outputs read it.
template <typename T>
__device__ void grad_input(const T* grad_output, const T* weight, T* grad_in,
                           MMREDNET_BASELINE_PARAMS) {
  MMREDNET_BASELINE_LOOP(index, N * C * H * W) {
    const i64 w = index % W, h = index / W % H, c = index / (W * H) % C;
    const i64 n = index / (W * H * C), g = c / (C / G);
    typename Acc<T>::type sum = 0;
    for (i64 u = 0; u < KH; ++u) {
      for (i64 v = 0; v < KW; ++v) {
        const i64 hs = h + PH - u * DH, ws = w + PW - v * DW;
        if (hs >= 0 && ws >= 0 && hs % SH == 0 && ws % SW == 0 && hs / SH < Ho && ws / SW < Wo) {
          const i64 i = hs / SH, j = ws / SW;
          sum += to_float(weight[((((n * G + g) * KH + u) * KW + v) * Ho + i) * Wo + j]) *
                 to_float(grad_output[((n * C + c) * Ho + i) * Wo + j]);
        }
      }
    }
    store(grad_in + index, sum);
  }
}

// grad_weight[n, g, u, v, i, j]: one thread each, over the channels of the group.
template <typename T>
__device__ void grad_weight(const T* grad_output, const T* input, T* grad_w,
                            MMREDNET_BASELINE_PARAMS) {
  MMREDNET_BASELINE_LOOP(index, N * G * KH * KW * Ho * Wo) {
    const i64 j = index % Wo, i = index / Wo % Ho, v = index / (Wo * Ho) % KW;
    const i64 u = index / (Wo * Ho * KW) % KH, g = index / (Wo * Ho * KW * KH) % G;
    const i64 n = index / (Wo * Ho * KW * KH * G);
    const i64 h = i * SH + u * DH - PH, w = j * SW + v * DW - PW;
    typename Acc<T>::type sum = 0;
    if (h >= 0 && h < H && w >= 0 && w < W) {
      for (i64 c = g * (C / G); c < (g + 1) * (C / G); ++c) {
        sum += to_float(grad_output[((n * C + c) * Ho + i) * Wo + j]) *
               to_float(input[((n * C + c) * H + h) * W + w]);
      }
    }
    store(grad_w + index, sum);
  }
}

}  // namespace mmrednet_baseline

#define MMREDNET_BASELINE_ARGS N, C, G, H, W, Ho, Wo, KH, KW, SH, SW, PH, PW, DH, DW, 0

#define MMREDNET_BASELINE_ENTRY(op, T, tag)                                                 \
  extern "C" __global__ void __launch_bounds__(MMREDNET_THREADS)                            \
      involution_baseline_##op##_##tag(const T* a, const T* b, T* result,                   \
                                       long long N, long long C, long long G, long long H,  \
                                       long long W, long long Ho, long long Wo,             \
                                       long long KH, long long KW, long long SH,            \
                                       long long SW, long long PH, long long PW,            \
                                       long long DH, long long DW, long long) {             \
    mmrednet_baseline::op<T>(a, b, result, MMREDNET_BASELINE_ARGS);                         \
  }

#define MMREDNET_BASELINE_ENTRIES(T, tag)    \
  MMREDNET_BASELINE_ENTRY(forward, T, tag)     \
  MMREDNET_BASELINE_ENTRY(grad_input, T, tag)  \
  MMREDNET_BASELINE_ENTRY(grad_weight, T, tag)

MMREDNET_BASELINE_ENTRIES(float, f32)
MMREDNET_BASELINE_ENTRIES(double, f64)
MMREDNET_BASELINE_ENTRIES(mmrednet_baseline::half_t, f16)
MMREDNET_BASELINE_ENTRIES(mmrednet_baseline::bfloat16_t, bf16)
