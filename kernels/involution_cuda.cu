// CUDA kernels of the involution operator, launched through CuPy/NVRTC by
// mmrednet/ops/cuda.py (the `extern "C"` entry points at the end of the file).
//
//   out[n, c, i, j] = sum_{u, v} w[n, g(c), u, v, i, j] * x[n, c, i*sh + u*dh - ph, j*sw + v*dw - pw]
//
// Tensors are contiguous: x (N, C, H, W), w (N, G, KH, KW, Ho, Wo), out (N, C, Ho, Wo),
// channel c in group c / (C / G).
//
// Why the kernels look the way they do
// ------------------------------------
// The op does one multiply-add per byte it must move, so it is bound by memory
// traffic, on two levels:
//  * DRAM. The generated kernel w is the largest tensor (K*K/(C/G) = 3x the input
//    for K=7 and 16 channels a group), and every value of it is shared by the C/G
//    channels of its group. A thread therefore computes the same pixel(s) for
//    several channels of one group (up to MMREDNET_CHANNELS): each w value is read
//    once per thread and used for all of them, instead of once per channel as in a
//    one-thread-per-output kernel.
//  * L1/LSU. Each input value is used by K*K outputs. Reading it K*K times from L1
//    costs as much time as the DRAM traffic itself, so the fast kernels keep a
//    vertical strip of MMREDNET_ROWS output rows per thread in registers: for one
//    horizontal tap v, the strip's KH*R taps read only (R-1)*SH + KH input rows of
//    one column, loaded once into registers. The strip is vertical, not horizontal,
//    on purpose: the 32 lanes of a warp hold 32 neighbouring columns, so every load
//    (x, w, out) is one coalesced row segment, with no shared memory, no bank
//    conflicts and no __syncthreads. The vertical kernel size and stride are
//    template parameters (so the strip lives in registers); K in {3, 7}, stride in
//    {1, 2}, vertical dilation 1 is what RedNet uses; every other geometry runs a
//    generic kernel (one pixel a thread, same channel reuse of w).
//  * grad_input is a gather, not a scatter: a thread owns input pixels and sums
//    over the taps whose outputs read them, so no atomics are needed and the
//    result is deterministic. grad_weight gives each thread (n, g, v, pixel strip)
//    and loops over the channels of the group in its own registers: a reduction
//    without atomics, with coalesced reads of x and grad_out.
//
// Indexing: everything that spans planes (batch, channel, group, tap offsets) is
// 64-bit, so tensors with more than 2^31 elements are fine; coordinates inside a
// plane are int (the launcher sends planes with a side of 2^30 or more to the
// portable path). Work items are enumerated by a grid-stride loop over a 64-bit
// index, so any grid size is correct; the grid only affects speed.
//
// No headers are included: half and bfloat16 are carried as raw 16-bit values and
// converted with the same PTX instructions cuda_fp16.h/cuda_bf16.h use. CuPy bundles
// its own (version-skewed) copies of those headers and pip-installed CUDA has none,
// so header-free source compiles identically under nvcc and NVRTC everywhere.
// Everything that is not plain C++ (PTX, __ldg, thread indices) is either under
// `#ifdef __CUDA_ARCH__` with a host path beside it or a CUDA built-in that
// kernels/emulation/cuda_host.h defines, so the same file also compiles for the
// host emulation that the tests run under the sanitizers.
// Accumulation is in float (double for double inputs), rounded once at the store.

#ifndef MMREDNET_THREADS
#define MMREDNET_THREADS 256  // threads per block (the launcher uses the same value)
#endif
#ifndef MMREDNET_ROWS
#define MMREDNET_ROWS 4  // output rows per thread in the register-tiled kernels
#endif
#ifndef MMREDNET_CHANNELS
#define MMREDNET_CHANNELS 8  // most channels of one group a thread computes
#endif
#ifndef MMREDNET_MIN_BLOCKS
#define MMREDNET_MIN_BLOCKS 1  // __launch_bounds__ occupancy hint (2 caps registers at 128)
#endif

namespace mmrednet {

typedef long long i64;

// Storage-only 16-bit types: the kernels never compute in them.
struct half_t {
  unsigned short bits;
};
struct bfloat16_t {
  unsigned short bits;
};

// ---------------------------------------------------------------------------
// 16-bit <-> float conversions. Each has a device path (the PTX instruction that
// cuda_fp16.h/cuda_bf16.h use) and a host path in plain C++, which the host
// emulation (kernels/emulation/) compiles instead. The host paths round to nearest
// even with the same overflow, subnormal and NaN rules and are tested bit-exactly
// against torch (tests/test_cuda_emulation.py: every 16-bit pattern, and every
// rounding case of float -> 16 bit; tools/cuda_emulation.py: all 2^32 floats).
// What the host paths cannot show is the PTX itself: that `cvt` rounds as the PTX
// ISA documents is the hardware's part, checked on the user's GPU by
// tools/check_cuda.py. Two known differences, both outside the tolerances: the
// device's NaN payloads (PTX may give a canonical NaN; the tests compare NaN as
// NaN), and CuPy's -ftz=true, which flushes float subnormals (< 1.2e-38) in the
// kernels' float arithmetic on the device only.
// ---------------------------------------------------------------------------
__device__ __forceinline__ float half_to_float(unsigned short h) {
#ifdef __CUDA_ARCH__
  float v;
  asm("cvt.f32.f16 %0, %1;" : "=f"(v) : "h"(h));
  return v;
#else
  const unsigned int sign = (unsigned int)(h & 0x8000u) << 16;
  const unsigned int exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0x1fu)  // infinity, or NaN (made quiet, payload kept)
    return __uint_as_float(sign | 0x7f800000u | (mantissa ? 0x400000u | (mantissa << 13) : 0u));
  if (exponent == 0u) {  // zero or subnormal: mantissa * 2^-24, exact in float
    const float magnitude = (float)mantissa * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  return __uint_as_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));  // 15 -> 127 bias
#endif
}

__device__ __forceinline__ unsigned short float_to_half(float v) {
#ifdef __CUDA_ARCH__
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
  return h;
#else
  const unsigned int u = __float_as_uint(v), magnitude = u & 0x7fffffffu;
  const unsigned short sign = (unsigned short)((u >> 16) & 0x8000u);
  if (magnitude > 0x7f800000u)  // NaN stays NaN (quiet; a zero payload must not become inf)
    return (unsigned short)(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  if (magnitude >= 0x47800000u) return (unsigned short)(sign | 0x7c00u);  // >= 2^16: inf
  if (magnitude < 0x38800000u) {  // below 2^-14: a subnormal half (units of 2^-24) or zero
    const int shift = 126 - (int)(magnitude >> 23);  // value = significand >> shift units
    if (shift > 24) return sign;  // below 2^-25 (half a unit): rounds to zero
    const unsigned int significand = (magnitude & 0x7fffffu) | 0x800000u;
    const unsigned int units = significand >> shift, rest = significand & ((1u << shift) - 1u);
    const unsigned int halfway = 1u << (shift - 1);
    const unsigned int round_up = rest > halfway || (rest == halfway && (units & 1u));
    return (unsigned short)(sign | (units + round_up));  // 0x400: the smallest normal
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits to nearest
  // even; a carry moves into the exponent, up to inf from [65520, 65536).
  const unsigned int rebiased = magnitude - (112u << 23);
  return (unsigned short)(sign | ((rebiased + 0xfffu + ((rebiased >> 13) & 1u)) >> 13));
#endif
}

__device__ __forceinline__ float bfloat16_to_float(unsigned short b) {
  return __uint_as_float((unsigned int)b << 16);  // bfloat16 is the top half of a float
}

__device__ __forceinline__ unsigned short float_to_bfloat16(float v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  unsigned short b;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(b) : "f"(v));
  return b;
#else
  // No bf16 conversion instruction before sm_80, so this is also the device path of
  // sm_75: round to nearest even by hand, keeping NaNs NaN (quiet) and letting
  // overflow round to infinity.
  const unsigned int u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x0040u);
  return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
#endif
}

template <typename T>
struct Traits;

template <>
struct Traits<float> {
  typedef float acc_t;
  static __device__ __forceinline__ float load(const float* p) { return __ldg(p); }
  static __device__ __forceinline__ void store(float* p, float v) { *p = v; }
};

template <>
struct Traits<double> {
  typedef double acc_t;
  static __device__ __forceinline__ double load(const double* p) { return __ldg(p); }
  static __device__ __forceinline__ void store(double* p, double v) { *p = v; }
};

template <>
struct Traits<half_t> {
  typedef float acc_t;
  static __device__ __forceinline__ float load(const half_t* p) {
    return half_to_float(__ldg(reinterpret_cast<const unsigned short*>(p)));
  }
  static __device__ __forceinline__ void store(half_t* p, float v) { p->bits = float_to_half(v); }
};

template <>
struct Traits<bfloat16_t> {
  typedef float acc_t;
  static __device__ __forceinline__ float load(const bfloat16_t* p) {
    return bfloat16_to_float(__ldg(reinterpret_cast<const unsigned short*>(p)));
  }
  static __device__ __forceinline__ void store(bfloat16_t* p, float v) {
    p->bits = float_to_bfloat16(v);
  }
};

struct Geometry {
  i64 batch, channels, groups;
  int height, width, out_height, out_width;
  int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int channels_per_thread;  // forward and grad_input: channels of a group per thread
};

__device__ __forceinline__ int ceil_div(int a, int b) { return (a + b - 1) / b; }

// q = a / b, r = a % b for a >= 0, b > 0; 32-bit division when both fit (the
// common case), as 64-bit division is a long software sequence on the GPU.
__device__ __forceinline__ void divmod(i64 a, i64 b, i64& q, i64& r) {
  if (((unsigned long long)a | (unsigned long long)b) >> 32 == 0) {
    const unsigned int qq = (unsigned int)a / (unsigned int)b;
    q = qq;
    r = a - (i64)qq * b;
  } else {
    q = a / b;
    r = a - q * b;
  }
}

// Returns p unchanged but hides where it came from. Without it the optimizer
// precomputes one 64-bit address per (channel, row) of a strip and keeps them all
// live across the tap loop, which spills registers to local memory (1.5 KB a
// thread for K=7); with it each address is one add from a pointer computed in
// the loop.
template <typename P>
__device__ __forceinline__ P* opaque(P* p) {
#ifdef __CUDA_ARCH__
  asm("" : "+l"(p));
#endif
  return p;
}

__device__ __forceinline__ i64 first_item() {
  return (i64)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ i64 item_stride() { return (i64)blockDim.x * gridDim.x; }

// ---------------------------------------------------------------------------
// Forward, register tile: a thread owns R rows x 1 column of output pixels for up
// to MMREDNET_CHANNELS channels of one group. Work item (n*G + g, chunk, row block,
// column), column fastest so that a warp covers neighbouring columns.
// ---------------------------------------------------------------------------
template <typename T, int KH, int SH>
__device__ __forceinline__ void forward_tiled(const T* __restrict__ input,
                                              const T* __restrict__ weight,
                                              T* __restrict__ output, const Geometry g) {
  typedef typename Traits<T>::acc_t acc_t;
  constexpr int R = MMREDNET_ROWS, CB = MMREDNET_CHANNELS;
  constexpr int L = (R - 1) * SH + KH;  // input rows under a strip of R outputs
  const int group_channels = (int)(g.channels / g.groups);
  const int per_thread = g.channels_per_thread;
  const int chunks = ceil_div(group_channels, per_thread);
  const i64 plane_items = (i64)ceil_div(g.out_height, R) * g.out_width;
  const i64 total = g.batch * g.groups * chunks * plane_items;
  const i64 in_plane = (i64)g.height * g.width;
  const i64 out_plane = (i64)g.out_height * g.out_width;
  const i64 taps_size = (i64)KH * g.kernel_w * out_plane;  // one (n, g) block of w

  for (i64 item = first_item(); item < total; item += item_stride()) {
    i64 slab, pixel, row_block, column, ng, chunk;
    divmod(item, plane_items, slab, pixel);
    divmod(pixel, g.out_width, row_block, column);
    divmod(slab, chunks, ng, chunk);
    const int i0 = (int)row_block * R, j = (int)column;
    const int c0 = (int)chunk * per_thread;
    const int count = min(per_thread, group_channels - c0);
    // (n*C + g*C/G + c0): channel planes of a group are contiguous.
    const i64 first_plane = ng * group_channels + c0;
    const T* x = input + first_plane * in_plane;
    const T* wk = weight + ng * taps_size + (i64)i0 * g.out_width + j;
    const int row0 = i0 * SH - g.pad_h;

    acc_t acc[CB][R];
#pragma unroll
    for (int c = 0; c < CB; ++c)
#pragma unroll
      for (int r = 0; r < R; ++r) acc[c][r] = acc_t(0);

    for (int v = 0; v < g.kernel_w; ++v) {
      const int col = j * g.stride_w + v * g.dilation_w - g.pad_w;
      if (col < 0 || col >= g.width) continue;
      // The strip's KH x R kernel values of this tap column: read once, used for
      // every channel of the chunk.
      acc_t wv[KH][R];
#pragma unroll
      for (int u = 0; u < KH; ++u) {
        const T* w_tap = opaque(wk + (i64)(u * g.kernel_w + v) * out_plane);
#pragma unroll
        for (int r = 0; r < R; ++r)
          wv[u][r] = i0 + r < g.out_height ? Traits<T>::load(w_tap + (i64)r * g.out_width)
                                           : acc_t(0);
      }
#pragma unroll
      for (int c = 0; c < CB; ++c) {
        if (c < count) {
          const T* x_col = opaque(x + c * in_plane + col);
          acc_t xv[L];
#pragma unroll
          for (int k = 0; k < L; ++k) {
            const int row = row0 + k;
            xv[k] = row >= 0 && row < g.height ? Traits<T>::load(x_col + (i64)row * g.width)
                                               : acc_t(0);
          }
#pragma unroll
          for (int u = 0; u < KH; ++u)
#pragma unroll
            for (int r = 0; r < R; ++r) acc[c][r] += wv[u][r] * xv[r * SH + u];
        }
      }
    }

    T* out = output + first_plane * out_plane + (i64)i0 * g.out_width + j;
#pragma unroll
    for (int c = 0; c < CB; ++c) {
      if (c < count) {
#pragma unroll
        for (int r = 0; r < R; ++r)
          if (i0 + r < g.out_height)
            Traits<T>::store(out + c * out_plane + (i64)r * g.out_width, acc[c][r]);
      }
    }
  }
}

// Forward, any geometry: one output pixel for up to MMREDNET_CHANNELS channels.
template <typename T>
__device__ __forceinline__ void forward_any(const T* __restrict__ input,
                                            const T* __restrict__ weight,
                                            T* __restrict__ output, const Geometry g) {
  typedef typename Traits<T>::acc_t acc_t;
  constexpr int CB = MMREDNET_CHANNELS;
  const int group_channels = (int)(g.channels / g.groups);
  const int per_thread = g.channels_per_thread;
  const int chunks = ceil_div(group_channels, per_thread);
  const i64 in_plane = (i64)g.height * g.width;
  const i64 out_plane = (i64)g.out_height * g.out_width;
  const i64 total = g.batch * g.groups * chunks * out_plane;
  const i64 taps_size = (i64)g.kernel_h * g.kernel_w * out_plane;

  for (i64 item = first_item(); item < total; item += item_stride()) {
    i64 slab, pixel, row, column, ng, chunk;
    divmod(item, out_plane, slab, pixel);
    divmod(pixel, g.out_width, row, column);
    divmod(slab, chunks, ng, chunk);
    const int i = (int)row, j = (int)column;
    const int c0 = (int)chunk * per_thread;
    const int count = min(per_thread, group_channels - c0);
    const i64 first_plane = ng * group_channels + c0;
    const T* x = input + first_plane * in_plane;
    const T* wk = weight + ng * taps_size + pixel;

    acc_t acc[CB];
#pragma unroll
    for (int c = 0; c < CB; ++c) acc[c] = acc_t(0);
    for (int u = 0; u < g.kernel_h; ++u) {
      const int in_row = i * g.stride_h + u * g.dilation_h - g.pad_h;
      if (in_row < 0 || in_row >= g.height) continue;
      for (int v = 0; v < g.kernel_w; ++v) {
        const int col = j * g.stride_w + v * g.dilation_w - g.pad_w;
        if (col < 0 || col >= g.width) continue;
        const acc_t wv = Traits<T>::load(wk + (i64)(u * g.kernel_w + v) * out_plane);
        const T* x_tap = x + (i64)in_row * g.width + col;
#pragma unroll
        for (int c = 0; c < CB; ++c)
          if (c < count) acc[c] += wv * Traits<T>::load(x_tap + c * in_plane);
      }
    }
    T* out = output + first_plane * out_plane + pixel;
#pragma unroll
    for (int c = 0; c < CB; ++c)
      if (c < count) Traits<T>::store(out + c * out_plane, acc[c]);
  }
}

// ---------------------------------------------------------------------------
// grad_input, register tile (vertical stride 1, dilation 1): a thread owns R rows x
// 1 column of input pixels for a chunk of channels and gathers from the outputs
// whose taps read them: output row h + r + ph - u, output column
// (w + pw - v*dw) / sw when that divides.
// ---------------------------------------------------------------------------
template <typename T, int KH>
__device__ __forceinline__ void grad_input_tiled(const T* __restrict__ grad_output,
                                                 const T* __restrict__ weight,
                                                 T* __restrict__ grad_input, const Geometry g) {
  typedef typename Traits<T>::acc_t acc_t;
  constexpr int R = MMREDNET_ROWS, CB = MMREDNET_CHANNELS;
  constexpr int L = R + KH - 1;  // output rows that reach a strip of R input rows
  const int group_channels = (int)(g.channels / g.groups);
  const int per_thread = g.channels_per_thread;
  const int chunks = ceil_div(group_channels, per_thread);
  const i64 plane_items = (i64)ceil_div(g.height, R) * g.width;
  const i64 total = g.batch * g.groups * chunks * plane_items;
  const i64 in_plane = (i64)g.height * g.width;
  const i64 out_plane = (i64)g.out_height * g.out_width;
  const i64 taps_size = (i64)KH * g.kernel_w * out_plane;

  for (i64 item = first_item(); item < total; item += item_stride()) {
    i64 slab, pixel, row_block, column, ng, chunk;
    divmod(item, plane_items, slab, pixel);
    divmod(pixel, g.width, row_block, column);
    divmod(slab, chunks, ng, chunk);
    const int h0 = (int)row_block * R, w = (int)column;
    const int c0 = (int)chunk * per_thread;
    const int count = min(per_thread, group_channels - c0);
    const i64 first_plane = ng * group_channels + c0;
    const T* go = grad_output + first_plane * out_plane;
    const T* wk = weight + ng * taps_size;
    const int out_row0 = h0 + g.pad_h - (KH - 1);  // output row of k = 0

    acc_t acc[CB][R];
#pragma unroll
    for (int c = 0; c < CB; ++c)
#pragma unroll
      for (int r = 0; r < R; ++r) acc[c][r] = acc_t(0);

    for (int v = 0; v < g.kernel_w; ++v) {
      const int numerator = w + g.pad_w - v * g.dilation_w;
      if (numerator < 0 || numerator % g.stride_w != 0) continue;
      const int j = numerator / g.stride_w;
      if (j >= g.out_width) continue;
      // Input row h0 + r is read by tap u of output row h0 + r + ph - u.
      acc_t wv[KH][R];
#pragma unroll
      for (int u = 0; u < KH; ++u) {
        const T* w_tap = opaque(wk + (i64)(u * g.kernel_w + v) * out_plane + j);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const int i = out_row0 + r - u + KH - 1;
          wv[u][r] = i >= 0 && i < g.out_height ? Traits<T>::load(w_tap + (i64)i * g.out_width)
                                                : acc_t(0);
        }
      }
#pragma unroll
      for (int c = 0; c < CB; ++c) {
        if (c < count) {
          const T* go_col = opaque(go + c * out_plane + j);
          acc_t gv[L];
#pragma unroll
          for (int k = 0; k < L; ++k) {
            const int i = out_row0 + k;
            gv[k] = i >= 0 && i < g.out_height ? Traits<T>::load(go_col + (i64)i * g.out_width)
                                               : acc_t(0);
          }
#pragma unroll
          for (int u = 0; u < KH; ++u)
#pragma unroll
            for (int r = 0; r < R; ++r) acc[c][r] += wv[u][r] * gv[r - u + KH - 1];
        }
      }
    }

    T* gi = grad_input + first_plane * in_plane + (i64)h0 * g.width + w;
#pragma unroll
    for (int c = 0; c < CB; ++c) {
      if (c < count) {
#pragma unroll
        for (int r = 0; r < R; ++r)
          if (h0 + r < g.height) Traits<T>::store(gi + c * in_plane + (i64)r * g.width, acc[c][r]);
      }
    }
  }
}

// grad_input, any geometry: one input pixel for up to MMREDNET_CHANNELS channels.
template <typename T>
__device__ __forceinline__ void grad_input_any(const T* __restrict__ grad_output,
                                               const T* __restrict__ weight,
                                               T* __restrict__ grad_input, const Geometry g) {
  typedef typename Traits<T>::acc_t acc_t;
  constexpr int CB = MMREDNET_CHANNELS;
  const int group_channels = (int)(g.channels / g.groups);
  const int per_thread = g.channels_per_thread;
  const int chunks = ceil_div(group_channels, per_thread);
  const i64 in_plane = (i64)g.height * g.width;
  const i64 out_plane = (i64)g.out_height * g.out_width;
  const i64 total = g.batch * g.groups * chunks * in_plane;
  const i64 taps_size = (i64)g.kernel_h * g.kernel_w * out_plane;

  for (i64 item = first_item(); item < total; item += item_stride()) {
    i64 slab, pixel, row, column, ng, chunk;
    divmod(item, in_plane, slab, pixel);
    divmod(pixel, g.width, row, column);
    divmod(slab, chunks, ng, chunk);
    const int h = (int)row, w = (int)column;
    const int c0 = (int)chunk * per_thread;
    const int count = min(per_thread, group_channels - c0);
    const i64 first_plane = ng * group_channels + c0;
    const T* go = grad_output + first_plane * out_plane;
    const T* wk = weight + ng * taps_size;

    acc_t acc[CB];
#pragma unroll
    for (int c = 0; c < CB; ++c) acc[c] = acc_t(0);
    for (int u = 0; u < g.kernel_h; ++u) {
      const int row_num = h + g.pad_h - u * g.dilation_h;
      if (row_num < 0 || row_num % g.stride_h != 0) continue;
      const int i = row_num / g.stride_h;
      if (i >= g.out_height) continue;
      for (int v = 0; v < g.kernel_w; ++v) {
        const int col_num = w + g.pad_w - v * g.dilation_w;
        if (col_num < 0 || col_num % g.stride_w != 0) continue;
        const int j = col_num / g.stride_w;
        if (j >= g.out_width) continue;
        const i64 at = (i64)i * g.out_width + j;
        const acc_t wv = Traits<T>::load(wk + (i64)(u * g.kernel_w + v) * out_plane + at);
#pragma unroll
        for (int c = 0; c < CB; ++c)
          if (c < count) acc[c] += wv * Traits<T>::load(go + c * out_plane + at);
      }
    }
    T* gi = grad_input + first_plane * in_plane + pixel;
#pragma unroll
    for (int c = 0; c < CB; ++c)
      if (c < count) Traits<T>::store(gi + c * in_plane, acc[c]);
  }
}

// ---------------------------------------------------------------------------
// grad_weight, register tile: a thread owns one tap column v and a strip of R output
// rows x 1 column, i.e. the KH x R values gw[n, g, :, v, i0:i0+R, j], and sums over
// all channels of the group itself (no atomics). Per channel it reads R values of
// grad_out and (R-1)*SH + KH values of x, for KH*R multiply-adds.
// ---------------------------------------------------------------------------
template <typename T, int KH, int SH>
__device__ __forceinline__ void grad_weight_tiled(const T* __restrict__ grad_output,
                                                  const T* __restrict__ input,
                                                  T* __restrict__ grad_weight, const Geometry g) {
  typedef typename Traits<T>::acc_t acc_t;
  constexpr int R = MMREDNET_ROWS;
  constexpr int L = (R - 1) * SH + KH;
  const int group_channels = (int)(g.channels / g.groups);
  const i64 plane_items = (i64)ceil_div(g.out_height, R) * g.out_width;
  const i64 total = g.batch * g.groups * g.kernel_w * plane_items;
  const i64 in_plane = (i64)g.height * g.width;
  const i64 out_plane = (i64)g.out_height * g.out_width;

  for (i64 item = first_item(); item < total; item += item_stride()) {
    i64 slab, pixel, row_block, column, ng, tap_col;
    divmod(item, plane_items, slab, pixel);
    divmod(pixel, g.out_width, row_block, column);
    divmod(slab, g.kernel_w, ng, tap_col);
    const int i0 = (int)row_block * R, j = (int)column, v = (int)tap_col;
    const int col = j * g.stride_w + v * g.dilation_w - g.pad_w;
    const int row0 = i0 * SH - g.pad_h;

    acc_t acc[KH][R];
#pragma unroll
    for (int u = 0; u < KH; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) acc[u][r] = acc_t(0);

    if (col >= 0 && col < g.width) {
      const i64 first_plane = ng * group_channels;
      const T* go = grad_output + first_plane * out_plane + (i64)i0 * g.out_width + j;
      const T* x = input + first_plane * in_plane + col;
#pragma unroll 2
      for (int c = 0; c < group_channels; ++c) {
        acc_t gv[R], xv[L];
#pragma unroll
        for (int r = 0; r < R; ++r)
          gv[r] = i0 + r < g.out_height ? Traits<T>::load(go + (i64)r * g.out_width) : acc_t(0);
#pragma unroll
        for (int k = 0; k < L; ++k) {
          const int row = row0 + k;
          xv[k] = row >= 0 && row < g.height ? Traits<T>::load(x + (i64)row * g.width)
                                             : acc_t(0);
        }
#pragma unroll
        for (int u = 0; u < KH; ++u)
#pragma unroll
          for (int r = 0; r < R; ++r) acc[u][r] += gv[r] * xv[r * SH + u];
        go += out_plane;
        x += in_plane;
      }
    }

    T* gw = grad_weight + (ng * KH * g.kernel_w + v) * out_plane + (i64)i0 * g.out_width + j;
#pragma unroll
    for (int u = 0; u < KH; ++u) {
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (i0 + r < g.out_height)
          Traits<T>::store(gw + (i64)u * g.kernel_w * out_plane + (i64)r * g.out_width,
                           acc[u][r]);
    }
  }
}

// grad_weight, any geometry: one value of gw a thread (work item == its offset).
template <typename T>
__device__ __forceinline__ void grad_weight_any(const T* __restrict__ grad_output,
                                                const T* __restrict__ input,
                                                T* __restrict__ grad_weight, const Geometry g) {
  typedef typename Traits<T>::acc_t acc_t;
  const int group_channels = (int)(g.channels / g.groups);
  const int taps = g.kernel_h * g.kernel_w;
  const i64 in_plane = (i64)g.height * g.width;
  const i64 out_plane = (i64)g.out_height * g.out_width;
  const i64 total = g.batch * g.groups * taps * out_plane;

  for (i64 item = first_item(); item < total; item += item_stride()) {
    i64 slab, pixel, row, column, ng, tap;
    divmod(item, out_plane, slab, pixel);
    divmod(pixel, g.out_width, row, column);
    divmod(slab, taps, ng, tap);
    const int u = (int)tap / g.kernel_w, v = (int)tap % g.kernel_w;
    const int in_row = (int)row * g.stride_h + u * g.dilation_h - g.pad_h;
    const int col = (int)column * g.stride_w + v * g.dilation_w - g.pad_w;
    acc_t acc = acc_t(0);
    if (in_row >= 0 && in_row < g.height && col >= 0 && col < g.width) {
      const i64 first_plane = ng * group_channels;
      const T* go = grad_output + first_plane * out_plane + pixel;
      const T* x = input + first_plane * in_plane + (i64)in_row * g.width + col;
#pragma unroll 4
      for (int c = 0; c < group_channels; ++c)
        acc += Traits<T>::load(go + c * out_plane) * Traits<T>::load(x + c * in_plane);
    }
    Traits<T>::store(grad_weight + item, acc);
  }
}

__device__ __forceinline__ Geometry make_geometry(i64 batch, i64 channels, i64 groups, i64 height,
                                                  i64 width, i64 out_height, i64 out_width,
                                                  i64 kernel_h, i64 kernel_w, i64 stride_h,
                                                  i64 stride_w, i64 pad_h, i64 pad_w,
                                                  i64 dilation_h, i64 dilation_w,
                                                  i64 channels_per_thread) {
  Geometry g;
  g.batch = batch;
  g.channels = channels;
  g.groups = groups;
  g.height = (int)height;
  g.width = (int)width;
  g.out_height = (int)out_height;
  g.out_width = (int)out_width;
  g.kernel_h = (int)kernel_h;
  g.kernel_w = (int)kernel_w;
  g.stride_h = (int)stride_h;
  g.stride_w = (int)stride_w;
  g.pad_h = (int)pad_h;
  g.pad_w = (int)pad_w;
  g.dilation_h = (int)dilation_h;
  g.dilation_w = (int)dilation_w;
  g.channels_per_thread = (int)channels_per_thread;
  return g;
}

}  // namespace mmrednet

// ---------------------------------------------------------------------------
// Entry points: involution_<op>_<variant>_<dtype>(a, b, result, geometry...), all
// geometry arguments int64:
//   forward:     a = input,       b = weight, result = output
//   grad_input:  a = grad_output, b = weight, result = grad_input
//   grad_weight: a = grad_output, b = input,  result = grad_weight
// variant kKsS: register tile for vertical kernel size K, vertical stride S and
// vertical dilation 1 (any horizontal geometry); "any": every geometry.
// dtype: f32, f64, f16, bf16. MMREDNET_SELECT_DTYPE with MMREDNET_WITH_<dtype>
// restricts a build to one dtype (the launcher compiles one module per dtype).
// ---------------------------------------------------------------------------
#define MMREDNET_GEOMETRY_PARAMS                                                                \
  long long batch, long long channels, long long groups, long long height, long long width,    \
      long long out_height, long long out_width, long long kernel_h, long long kernel_w,        \
      long long stride_h, long long stride_w, long long pad_h, long long pad_w,                 \
      long long dilation_h, long long dilation_w, long long channels_per_thread

#define MMREDNET_GEOMETRY                                                                     \
  mmrednet::make_geometry(batch, channels, groups, height, width, out_height, out_width,     \
                          kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, \
                          dilation_w, channels_per_thread)

#define MMREDNET_ENTRY(name, T, ...)                                                        \
  extern "C" __global__ void __launch_bounds__(MMREDNET_THREADS, MMREDNET_MIN_BLOCKS)                            \
      name(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ result,        \
           MMREDNET_GEOMETRY_PARAMS) {                                                      \
    __VA_ARGS__(a, b, result, MMREDNET_GEOMETRY);                                           \
  }

#define MMREDNET_ENTRIES(T, tag)                                                            \
  MMREDNET_ENTRY(involution_forward_k3s1_##tag, T, mmrednet::forward_tiled<T, 3, 1>)         \
  MMREDNET_ENTRY(involution_forward_k3s2_##tag, T, mmrednet::forward_tiled<T, 3, 2>)         \
  MMREDNET_ENTRY(involution_forward_k7s1_##tag, T, mmrednet::forward_tiled<T, 7, 1>)         \
  MMREDNET_ENTRY(involution_forward_k7s2_##tag, T, mmrednet::forward_tiled<T, 7, 2>)         \
  MMREDNET_ENTRY(involution_forward_any_##tag, T, mmrednet::forward_any<T>)                  \
  MMREDNET_ENTRY(involution_grad_input_k3s1_##tag, T, mmrednet::grad_input_tiled<T, 3>)      \
  MMREDNET_ENTRY(involution_grad_input_k7s1_##tag, T, mmrednet::grad_input_tiled<T, 7>)      \
  MMREDNET_ENTRY(involution_grad_input_any_##tag, T, mmrednet::grad_input_any<T>)            \
  MMREDNET_ENTRY(involution_grad_weight_k3s1_##tag, T, mmrednet::grad_weight_tiled<T, 3, 1>) \
  MMREDNET_ENTRY(involution_grad_weight_k3s2_##tag, T, mmrednet::grad_weight_tiled<T, 3, 2>) \
  MMREDNET_ENTRY(involution_grad_weight_k7s1_##tag, T, mmrednet::grad_weight_tiled<T, 7, 1>) \
  MMREDNET_ENTRY(involution_grad_weight_k7s2_##tag, T, mmrednet::grad_weight_tiled<T, 7, 2>) \
  MMREDNET_ENTRY(involution_grad_weight_any_##tag, T, mmrednet::grad_weight_any<T>)

// kernels/involution_fused_cuda.cu includes this file for its helpers, not its entry points.
#ifndef MMREDNET_NO_OP_ENTRIES
#if !defined(MMREDNET_SELECT_DTYPE) || defined(MMREDNET_WITH_F32)
MMREDNET_ENTRIES(float, f32)
#endif
#if !defined(MMREDNET_SELECT_DTYPE) || defined(MMREDNET_WITH_F64)
MMREDNET_ENTRIES(double, f64)
#endif
#if !defined(MMREDNET_SELECT_DTYPE) || defined(MMREDNET_WITH_F16)
MMREDNET_ENTRIES(mmrednet::half_t, f16)
#endif
#if !defined(MMREDNET_SELECT_DTYPE) || defined(MMREDNET_WITH_BF16)
MMREDNET_ENTRIES(mmrednet::bfloat16_t, bf16)
#endif
#endif  // MMREDNET_NO_OP_ENTRIES
