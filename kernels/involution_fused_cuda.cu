// CUDA kernels of the fused involution op, launched through CuPy/NVRTC by
// mmrednet/ops/cuda/fused_backend.py (the `extern "C"` entry points at the end).
//
//   k[n, g, t, i, j]   = bias[g*T + t] + sum_m span[g*T + t, m] * hidden[n, m, i, j]
//   out[n, c, i, j]    = sum_t k[n, g(c), t, i, j] * x[n, c, tap t of (i, j)]
//
// with T = Kh*Kw taps, t = u*Kw + v. The generated kernel k (N x G*T x Ho x Wo, three
// times the input for K=7 and 16 channels a group) is what the composition (span conv +
// involution op) writes to global memory and reads back. Here it never exists as a
// tensor: each thread computes the kernel values it needs in a register, from hidden
// and the span weights, and uses each for every channel it owns before the next, as
// DCNv4 computes its per-group weights in the kernel.
//
// Tensors are contiguous NCHW: x (N, C, H, W), hidden (N, Ch, Ho, Wo), span (G*T, Ch),
// bias (G*T), grad_output and out (N, C, Ho, Wo); channel c in group c / (C / G).
//
// The entry points (one of each a dtype):
//  * forward_k3, forward_k7 (square kernels, RedNet's): a thread owns one output pixel
//    and a chunk of up to MMREDNET_CHANNELS channels of one group; it builds the pixel's
//    K*K kernel values in registers (reading hidden once), then applies them to each
//    channel. forward_any (every other kernel): per tap inside the input it computes
//    the kernel value (Ch multiply-adds) and adds its product with x for each channel.
//  * grad_input: a gather, as the op's grad_input_any: a thread owns one input pixel
//    and a chunk of channels, and for each tap whose output reads the pixel computes
//    that output's kernel value and adds its product with grad_output. Each kernel
//    value is computed once per chunk, as in forward.
//  * grad_hidden: a thread owns one pixel of hidden and up to MMREDNET_HIDDEN_CHUNK of
//    its channels. For every group and tap it forms the kernel's gradient there,
//    gk = sum over the group's channels of grad_output * x at the tap (C/G
//    multiply-adds, in a register), and adds span[g*T + t, m] * gk for its channels.
//  * grad_span_weight: the span weight's and bias' gradients, sums over every pixel
//    of the batch. A thread owns one span row (g, t), up to MMREDNET_HIDDEN_CHUNK
//    hidden channels and one slice of the N*Ho*Wo pixels: per pixel it forms gk as
//    grad_hidden does and adds gk * hidden (and gk, for the bias). It writes its
//    partial sums, (slices, G*T, Ch + 1) in the accumulator type, and the launcher
//    adds the slices (torch.sum, in that type): a reduction without atomics, so
//    deterministic. The slices are what keeps the GPU busy: G*T rows alone are a few
//    hundred threads.
//
// Registers only: no shared memory, no barriers, no atomics, no warp intrinsics, so a
// thread depends on nothing but its indices, and the host emulation (kernels/emulation/
// fused_harness.cpp) that runs GPU threads one after another runs exactly the device's
// index arithmetic, loads and stores. Indexing, the 16-bit conversions, the grid-stride
// loop and the accumulation (float; double for double inputs; rounded once at the store)
// are those of involution_cuda.cu, included below for them (not for its entry points).
// Its sources are assembled into one text before NVRTC sees them
// (mmrednet/ops/cuda/launcher.py, source_text), so CuPy's binary cache keys on all of it.

#define MMREDNET_NO_OP_ENTRIES
#include "involution_cuda.cu"

#ifndef MMREDNET_HIDDEN_CHUNK
#define MMREDNET_HIDDEN_CHUNK 8  // hidden channels a grad_hidden/grad_span_weight thread owns
#endif

namespace mmrednet {

struct FusedGeometry {
  i64 batch, channels, groups, hidden;
  int height, width, out_height, out_width;
  int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int channels_per_thread;  // forward and grad_input: channels of a group a thread
  int has_bias;             // 0: bias is not read (it may be null)
  i64 slices;               // grad_span_weight: slices of the pixels, one partial sum each
};

// One value of the generated kernel: bias[row] + span[row, :] . hidden[n, :, pixel].
// `h` points at hidden[n, 0, pixel]; the hidden channels are out_plane apart.
template <typename T>
__device__ __forceinline__ typename Traits<T>::acc_t kernel_value(
    const T* __restrict__ span, const T* __restrict__ bias, const T* __restrict__ h, i64 row,
    i64 out_plane, const FusedGeometry& g) {
  typedef typename Traits<T>::acc_t acc_t;
  acc_t value = g.has_bias ? Traits<T>::load(bias + row) : acc_t(0);
  const T* weights = span + row * g.hidden;
#pragma unroll 4
  for (i64 m = 0; m < g.hidden; ++m) value += Traits<T>::load(weights + m) * Traits<T>::load(h + m * out_plane);
  return value;
}

// Forward: work item (n*G + g, chunk, output pixel), pixel fastest so that a warp
// reads neighbouring pixels (coalesced x, hidden and output; the span row is the
// same for the whole warp, a broadcast).
template <typename T>
__device__ __forceinline__ void fused_forward(const T* __restrict__ input,
                                              const T* __restrict__ hidden,
                                              const T* __restrict__ span,
                                              const T* __restrict__ bias,
                                              T* __restrict__ output, const FusedGeometry g) {
  typedef typename Traits<T>::acc_t acc_t;
  constexpr int CB = MMREDNET_CHANNELS;
  const int group_channels = (int)(g.channels / g.groups);
  const int per_thread = g.channels_per_thread;
  const int chunks = ceil_div(group_channels, per_thread);
  const int taps = g.kernel_h * g.kernel_w;
  const i64 in_plane = (i64)g.height * g.width;
  const i64 out_plane = (i64)g.out_height * g.out_width;
  const i64 total = g.batch * g.groups * chunks * out_plane;

  for (i64 item = first_item(); item < total; item += item_stride()) {
    i64 slab, pixel, row, column, ng, chunk, n, group;
    divmod(item, out_plane, slab, pixel);
    divmod(pixel, g.out_width, row, column);
    divmod(slab, chunks, ng, chunk);
    divmod(ng, g.groups, n, group);
    const int i = (int)row, j = (int)column;
    const int c0 = (int)chunk * per_thread;
    const int count = min(per_thread, group_channels - c0);
    const i64 first_plane = ng * group_channels + c0;
    const T* x = input + first_plane * in_plane;
    const T* h = hidden + n * g.hidden * out_plane + pixel;

    acc_t acc[CB];
#pragma unroll
    for (int c = 0; c < CB; ++c) acc[c] = acc_t(0);
    for (int u = 0; u < g.kernel_h; ++u) {
      const int in_row = i * g.stride_h + u * g.dilation_h - g.pad_h;
      if (in_row < 0 || in_row >= g.height) continue;
      for (int v = 0; v < g.kernel_w; ++v) {
        const int col = j * g.stride_w + v * g.dilation_w - g.pad_w;
        if (col < 0 || col >= g.width) continue;  // x is 0 there: no kernel value needed
        const acc_t k = kernel_value(span, bias, h, group * taps + u * g.kernel_w + v,
                                     out_plane, g);
        const T* x_tap = x + (i64)in_row * g.width + col;
#pragma unroll
        for (int c = 0; c < CB; ++c)
          if (c < count) acc[c] += k * Traits<T>::load(x_tap + c * in_plane);
      }
    }
    T* out = output + first_plane * out_plane + pixel;
#pragma unroll
    for (int c = 0; c < CB; ++c)
      if (c < count) Traits<T>::store(out + c * out_plane, acc[c]);
  }
}

// Forward for a square K x K kernel (RedNet's K = 7 and 3; any stride, padding and
// dilation): the thread builds its pixel's K*K kernel values in registers first,
// reading hidden once (fused_forward reads it once a tap), then applies them to each channel of its chunk in turn, so one
// accumulator serves every channel. Work items as fused_forward's.
template <typename T, int K>
__device__ __forceinline__ void fused_forward_square(const T* __restrict__ input,
                                                     const T* __restrict__ hidden,
                                                     const T* __restrict__ span,
                                                     const T* __restrict__ bias,
                                                     T* __restrict__ output,
                                                     const FusedGeometry g) {
  typedef typename Traits<T>::acc_t acc_t;
  constexpr int TAPS = K * K;
  const int group_channels = (int)(g.channels / g.groups);
  const int per_thread = g.channels_per_thread;
  const int chunks = ceil_div(group_channels, per_thread);
  const i64 in_plane = (i64)g.height * g.width;
  const i64 out_plane = (i64)g.out_height * g.out_width;
  const i64 total = g.batch * g.groups * chunks * out_plane;

  for (i64 item = first_item(); item < total; item += item_stride()) {
    i64 slab, pixel, row, column, ng, chunk, n, group;
    divmod(item, out_plane, slab, pixel);
    divmod(pixel, g.out_width, row, column);
    divmod(slab, chunks, ng, chunk);
    divmod(ng, g.groups, n, group);
    const int i = (int)row, j = (int)column;
    const int c0 = (int)chunk * per_thread;
    const int count = min(per_thread, group_channels - c0);
    const i64 first_plane = ng * group_channels + c0;
    const T* h = hidden + n * g.hidden * out_plane + pixel;
    const T* weights = span + group * TAPS * g.hidden;

    acc_t k[TAPS];
#pragma unroll
    for (int t = 0; t < TAPS; ++t)
      k[t] = g.has_bias ? Traits<T>::load(bias + group * TAPS + t) : acc_t(0);
    // One hidden channel an iteration, not unrolled: unrolling it lets the compiler
    // hoist a chunk's K*K x chunk span loads into registers, which spills at K=7.
#pragma unroll 1
    for (i64 m = 0; m < g.hidden; ++m) {
      const acc_t hv = Traits<T>::load(h + m * out_plane);
      const T* w = weights + m;
#pragma unroll
      for (int t = 0; t < TAPS; ++t) {
        k[t] += Traits<T>::load(w) * hv;
        w = opaque(w + g.hidden);  // one add a tap, not K*K live addresses
      }
    }

    const int row0 = i * g.stride_h - g.pad_h, col0 = j * g.stride_w - g.pad_w;
    for (int c = 0; c < count; ++c) {
      const T* x = input + (first_plane + c) * in_plane;
      acc_t acc = acc_t(0);
#pragma unroll
      for (int u = 0; u < K; ++u) {
        const int in_row = row0 + u * g.dilation_h;
        if (in_row < 0 || in_row >= g.height) continue;
        const T* x_row = opaque(x + (i64)in_row * g.width);
#pragma unroll
        for (int v = 0; v < K; ++v) {
          const int col = col0 + v * g.dilation_w;
          if (col >= 0 && col < g.width) acc += k[u * K + v] * Traits<T>::load(x_row + col);
        }
      }
      Traits<T>::store(output + (first_plane + c) * out_plane + pixel, acc);
    }
  }
}

// grad_input: work item (n*G + g, chunk, input pixel), pixel fastest.
template <typename T>
__device__ __forceinline__ void fused_grad_input(const T* __restrict__ grad_output,
                                                 const T* __restrict__ hidden,
                                                 const T* __restrict__ span,
                                                 const T* __restrict__ bias,
                                                 T* __restrict__ grad_input,
                                                 const FusedGeometry g) {
  typedef typename Traits<T>::acc_t acc_t;
  constexpr int CB = MMREDNET_CHANNELS;
  const int group_channels = (int)(g.channels / g.groups);
  const int per_thread = g.channels_per_thread;
  const int chunks = ceil_div(group_channels, per_thread);
  const int taps = g.kernel_h * g.kernel_w;
  const i64 in_plane = (i64)g.height * g.width;
  const i64 out_plane = (i64)g.out_height * g.out_width;
  const i64 total = g.batch * g.groups * chunks * in_plane;

  for (i64 item = first_item(); item < total; item += item_stride()) {
    i64 slab, pixel, row, column, ng, chunk, n, group;
    divmod(item, in_plane, slab, pixel);
    divmod(pixel, g.width, row, column);
    divmod(slab, chunks, ng, chunk);
    divmod(ng, g.groups, n, group);
    const int hh = (int)row, w = (int)column;
    const int c0 = (int)chunk * per_thread;
    const int count = min(per_thread, group_channels - c0);
    const i64 first_plane = ng * group_channels + c0;
    const T* go = grad_output + first_plane * out_plane;
    const T* h = hidden + n * g.hidden * out_plane;

    acc_t acc[CB];
#pragma unroll
    for (int c = 0; c < CB; ++c) acc[c] = acc_t(0);
    for (int u = 0; u < g.kernel_h; ++u) {
      const int row_num = hh + g.pad_h - u * g.dilation_h;
      if (row_num < 0 || row_num % g.stride_h != 0) continue;
      const int i = row_num / g.stride_h;
      if (i >= g.out_height) continue;
      for (int v = 0; v < g.kernel_w; ++v) {
        const int col_num = w + g.pad_w - v * g.dilation_w;
        if (col_num < 0 || col_num % g.stride_w != 0) continue;
        const int j = col_num / g.stride_w;
        if (j >= g.out_width) continue;
        const i64 at = (i64)i * g.out_width + j;
        const acc_t k = kernel_value(span, bias, h + at, group * taps + u * g.kernel_w + v,
                                     out_plane, g);
#pragma unroll
        for (int c = 0; c < CB; ++c)
          if (c < count) acc[c] += k * Traits<T>::load(go + c * out_plane + at);
      }
    }
    T* gi = grad_input + first_plane * in_plane + pixel;
#pragma unroll
    for (int c = 0; c < CB; ++c)
      if (c < count) Traits<T>::store(gi + c * in_plane, acc[c]);
  }
}

// The generated kernel's gradient at (n, group, tap (u, v), output pixel (i, j)):
// sum over the group's channels of grad_output * x at the tap; 0 outside the input.
// `go` and `x` point at channel 0 of the group of batch n.
template <typename T>
__device__ __forceinline__ typename Traits<T>::acc_t kernel_grad(
    const T* __restrict__ go, const T* __restrict__ x, int i, int j, int u, int v,
    int group_channels, i64 in_plane, i64 out_plane, const FusedGeometry& g) {
  typedef typename Traits<T>::acc_t acc_t;
  const int in_row = i * g.stride_h + u * g.dilation_h - g.pad_h;
  const int col = j * g.stride_w + v * g.dilation_w - g.pad_w;
  acc_t value = acc_t(0);
  if (in_row < 0 || in_row >= g.height || col < 0 || col >= g.width) return value;
  const T* go_pixel = go + (i64)i * g.out_width + j;
  const T* x_tap = x + (i64)in_row * g.width + col;
#pragma unroll 4
  for (int c = 0; c < group_channels; ++c)
    value += Traits<T>::load(go_pixel + c * out_plane) * Traits<T>::load(x_tap + c * in_plane);
  return value;
}

// grad_hidden: work item (n, hidden chunk, output pixel), pixel fastest.
template <typename T>
__device__ __forceinline__ void fused_grad_hidden(const T* __restrict__ input,
                                                  const T* __restrict__ span,
                                                  const T* __restrict__ grad_output,
                                                  T* __restrict__ grad_hidden,
                                                  const FusedGeometry g) {
  typedef typename Traits<T>::acc_t acc_t;
  constexpr int MB = MMREDNET_HIDDEN_CHUNK;
  const int group_channels = (int)(g.channels / g.groups);
  const int taps = g.kernel_h * g.kernel_w;
  const i64 chunks = (g.hidden + MB - 1) / MB;
  const i64 in_plane = (i64)g.height * g.width;
  const i64 out_plane = (i64)g.out_height * g.out_width;
  const i64 total = g.batch * chunks * out_plane;

  for (i64 item = first_item(); item < total; item += item_stride()) {
    i64 slab, pixel, row, column, n, chunk;
    divmod(item, out_plane, slab, pixel);
    divmod(pixel, g.out_width, row, column);
    divmod(slab, chunks, n, chunk);
    const int i = (int)row, j = (int)column;
    const i64 m0 = chunk * MB;
    const int count = (int)min((i64)MB, g.hidden - m0);

    acc_t acc[MB];
#pragma unroll
    for (int m = 0; m < MB; ++m) acc[m] = acc_t(0);
    for (i64 group = 0; group < g.groups; ++group) {
      const i64 first_plane = (n * g.groups + group) * group_channels;
      const T* go = grad_output + first_plane * out_plane;
      const T* x = input + first_plane * in_plane;
      for (int u = 0; u < g.kernel_h; ++u) {
        for (int v = 0; v < g.kernel_w; ++v) {
          const acc_t gk = kernel_grad(go, x, i, j, u, v, group_channels, in_plane, out_plane,
                                       g);
          const T* weights = span + (group * taps + u * g.kernel_w + v) * g.hidden + m0;
#pragma unroll
          for (int m = 0; m < MB; ++m)
            if (m < count) acc[m] += Traits<T>::load(weights + m) * gk;
        }
      }
    }
    T* gh = grad_hidden + (n * g.hidden + m0) * out_plane + pixel;
#pragma unroll
    for (int m = 0; m < MB; ++m)
      if (m < count) Traits<T>::store(gh + m * out_plane, acc[m]);
  }
}

// grad_span_weight: work item (slice, span row g*T + t, hidden chunk), chunk fastest.
// partial[slice, row, m] = sum over the slice's pixels of gk * hidden[n, m, pixel];
// partial[slice, row, Ch] = sum of gk (the bias' gradient), written by chunk 0.
template <typename T>
__device__ __forceinline__ void fused_grad_span_weight(
    const T* __restrict__ input, const T* __restrict__ hidden,
    const T* __restrict__ grad_output, typename Traits<T>::acc_t* __restrict__ partial,
    const FusedGeometry g) {
  typedef typename Traits<T>::acc_t acc_t;
  constexpr int MB = MMREDNET_HIDDEN_CHUNK;
  const int group_channels = (int)(g.channels / g.groups);
  const int taps = g.kernel_h * g.kernel_w;
  // One chunk at least: with no hidden channel the thread still sums the bias' gradient.
  const i64 chunks = g.hidden > 0 ? (g.hidden + MB - 1) / MB : 1;
  const i64 rows = g.groups * taps;
  const i64 in_plane = (i64)g.height * g.width;
  const i64 out_plane = (i64)g.out_height * g.out_width;
  const i64 pixels = g.batch * out_plane;
  const i64 total = g.slices * rows * chunks;

  for (i64 item = first_item(); item < total; item += item_stride()) {
    i64 rest, chunk, slice, span_row, group, tap;
    divmod(item, chunks, rest, chunk);
    divmod(rest, rows, slice, span_row);
    divmod(span_row, taps, group, tap);
    const int u = (int)tap / g.kernel_w, v = (int)tap % g.kernel_w;
    const i64 m0 = chunk * MB;
    const int count = (int)min((i64)MB, g.hidden - m0);
    // Slice s holds pixels [s*P/S, (s+1)*P/S) of the flattened (n, i, j).
    const i64 first = slice * pixels / g.slices, last = (slice + 1) * pixels / g.slices;

    acc_t acc[MB], acc_bias = acc_t(0);
#pragma unroll
    for (int m = 0; m < MB; ++m) acc[m] = acc_t(0);
    for (i64 p = first; p < last; ++p) {
      i64 n, pixel, row, column;
      divmod(p, out_plane, n, pixel);
      divmod(pixel, g.out_width, row, column);
      const i64 first_plane = (n * g.groups + group) * group_channels;
      const acc_t gk = kernel_grad(grad_output + first_plane * out_plane,
                                   input + first_plane * in_plane, (int)row, (int)column, u, v,
                                   group_channels, in_plane, out_plane, g);
      const T* h = hidden + (n * g.hidden + m0) * out_plane + pixel;
#pragma unroll
      for (int m = 0; m < MB; ++m)
        if (m < count) acc[m] += gk * Traits<T>::load(h + m * out_plane);
      acc_bias += gk;
    }
    acc_t* out = partial + (slice * rows + span_row) * (g.hidden + 1);
#pragma unroll
    for (int m = 0; m < MB; ++m)
      if (m < count) out[m0 + m] = acc[m];
    if (chunk == 0) out[g.hidden] = acc_bias;
  }
}

__device__ __forceinline__ FusedGeometry make_fused_geometry(
    i64 batch, i64 channels, i64 groups, i64 hidden, i64 height, i64 width, i64 out_height,
    i64 out_width, i64 kernel_h, i64 kernel_w, i64 stride_h, i64 stride_w, i64 pad_h, i64 pad_w,
    i64 dilation_h, i64 dilation_w, i64 channels_per_thread, i64 has_bias, i64 slices) {
  FusedGeometry g;
  g.batch = batch;
  g.channels = channels;
  g.groups = groups;
  g.hidden = hidden;
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
  g.has_bias = (int)has_bias;
  g.slices = slices;
  return g;
}

}  // namespace mmrednet

// ---------------------------------------------------------------------------
// Entry points: involution_fused_<op>_<dtype>(input, hidden, span, bias, grad_output,
// result, geometry...), every entry point the same parameters (the launcher and the
// emulation harness call them alike), all geometry arguments int64. What each reads:
//   forward_*:        input, hidden, span, bias      -> result: output (T)
//   grad_input:       hidden, span, bias, grad_output -> result: grad_input (T)
//   grad_hidden:      input, span, grad_output        -> result: grad_hidden (T)
//   grad_span_weight: input, hidden, grad_output      -> result: partial sums (float;
//                                                        double for double)
// A pointer an entry point does not read may be null, as may bias when has_bias is 0.
// ---------------------------------------------------------------------------
#define MMREDNET_FUSED_PARAMS                                                                 \
  long long batch, long long channels, long long groups, long long hidden_channels,          \
      long long height, long long width, long long out_height, long long out_width,          \
      long long kernel_h, long long kernel_w, long long stride_h, long long stride_w,        \
      long long pad_h, long long pad_w, long long dilation_h, long long dilation_w,          \
      long long channels_per_thread, long long has_bias, long long slices

#define MMREDNET_FUSED_GEOMETRY                                                             \
  mmrednet::make_fused_geometry(batch, channels, groups, hidden_channels, height, width,   \
                                out_height, out_width, kernel_h, kernel_w, stride_h,       \
                                stride_w, pad_h, pad_w, dilation_h, dilation_w,            \
                                channels_per_thread, has_bias, slices)

#define MMREDNET_FUSED_ENTRY(name, T, R, ...) /* ...: the call (it may hold commas) */ \
  MMREDNET_FUSED_ENTRY_BOUNDED(name, T, R, MMREDNET_MIN_BLOCKS, __VA_ARGS__)
#define MMREDNET_FUSED_ENTRY_BOUNDED(name, T, R, min_blocks, ...)                                               \
  extern "C" __global__ void __launch_bounds__(MMREDNET_THREADS, min_blocks)                 \
      name(const T* __restrict__ input, const T* __restrict__ hidden,                        \
           const T* __restrict__ span, const T* __restrict__ bias,                           \
           const T* __restrict__ grad_output, R* __restrict__ result, MMREDNET_FUSED_PARAMS) { \
    (void)input, (void)hidden, (void)span, (void)bias, (void)grad_output; /* not all read */ \
    const mmrednet::FusedGeometry g = MMREDNET_FUSED_GEOMETRY;                               \
    __VA_ARGS__;                                                                             \
  }

// forward_k7 holds 49 kernel values a thread: capped at 128 registers (two blocks an
// SM) it fits without spilling in float, not in double (98 registers for the values).
// Fixed, not MMREDNET_MIN_BLOCKS: more blocks would spill.
#define MMREDNET_K7_MIN_BLOCKS(T) (sizeof(T) > 4 ? 1 : 2)

#define MMREDNET_FUSED_ENTRIES(T, tag)                                                       \
  MMREDNET_FUSED_ENTRY(involution_fused_forward_k3_##tag, T, T,                              \
                       mmrednet::fused_forward_square<T, 3>(input, hidden, span, bias,       \
                                                            result, g))                      \
  MMREDNET_FUSED_ENTRY_BOUNDED(involution_fused_forward_k7_##tag, T, T, MMREDNET_K7_MIN_BLOCKS(T), \
                       mmrednet::fused_forward_square<T, 7>(input, hidden, span, bias,       \
                                                            result, g))                      \
  MMREDNET_FUSED_ENTRY(involution_fused_forward_any_##tag, T, T,                             \
                       mmrednet::fused_forward<T>(input, hidden, span, bias, result, g))     \
  MMREDNET_FUSED_ENTRY(involution_fused_grad_input_##tag, T, T,                              \
                       mmrednet::fused_grad_input<T>(grad_output, hidden, span, bias, result, \
                                                     g))                                      \
  MMREDNET_FUSED_ENTRY(involution_fused_grad_hidden_##tag, T, T,                             \
                       mmrednet::fused_grad_hidden<T>(input, span, grad_output, result, g))  \
  MMREDNET_FUSED_ENTRY(involution_fused_grad_span_weight_##tag, T,                           \
                       mmrednet::Traits<T>::acc_t,                                           \
                       mmrednet::fused_grad_span_weight<T>(input, hidden, grad_output,       \
                                                           result, g))

#if !defined(MMREDNET_SELECT_DTYPE) || defined(MMREDNET_WITH_F32)
MMREDNET_FUSED_ENTRIES(float, f32)
#endif
#if !defined(MMREDNET_SELECT_DTYPE) || defined(MMREDNET_WITH_F64)
MMREDNET_FUSED_ENTRIES(double, f64)
#endif
#if !defined(MMREDNET_SELECT_DTYPE) || defined(MMREDNET_WITH_F16)
MMREDNET_FUSED_ENTRIES(mmrednet::half_t, f16)
#endif
#if !defined(MMREDNET_SELECT_DTYPE) || defined(MMREDNET_WITH_BF16)
MMREDNET_FUSED_ENTRIES(mmrednet::bfloat16_t, bf16)
#endif
