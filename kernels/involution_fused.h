// What the CPU kernels of the fused involution op share across translation units.
//
// The fused op computes involution(x, span(h)): the per-pixel kernel
// W = S h + b (S the span weight, G*Kh*Kw x C/r; h the kernel branch's hidden
// features, C/r channels at the output's pixels) is generated tile by tile in
// a task's scratch and used there, never stored as a tensor. Like
// involution_cpu.h, plain C++: the kernels are compiled once per instruction
// set (involution_fused_kernels.h, included by involution_cpu_{avx512,avx2,
// baseline}.cpp), the binding (involution_fused_cpu.cpp) splits the work.
//
// The split into tasks depends on the problem only, never on the thread count,
// so that every sum (the span weight's gradient sums over all pixels) is taken
// in the same order whatever the number of threads.
#pragma once

#include <algorithm>
#include <cstdint>

#include "involution_cpu.h"

namespace mmrednet_cpu {

// Elements of a task's kernel tile (256 kB in float32: fits in L2 with the rows it reads).
constexpr int64_t kFusedTileElements = int64_t{1} << 16;

// A fused problem: the involution geometry (Problem: input (N, C, H, W),
// output (N, C, Ho, Wo), G groups, Kh x Kw taps) and the span: hidden
// (N, Ch, Ho, Wo), span weight (G*Kh*Kw, Ch), optional bias (G*Kh*Kw). When
// channels_last, input, hidden, grad_output and their gradients are
// (N, H, W, C) in memory, else contiguous.
struct FusedProblem {
  Problem p;
  int64_t hidden;
  bool bias;

  int64_t kernel_rows() const { return p.groups * p.taps(); }  // rows of the span weight

  // Output rows of a kernel tile with all groups (at least one).
  int64_t tile_rows() const {
    return std::clamp<int64_t>(kFusedTileElements / (kernel_rows() * p.out_width), 1,
                               p.out_height);
  }
  // Groups of a forward / grad_input task: all, unless one row of all groups
  // exceeds the tile.
  int64_t tile_groups() const {
    const int64_t row = p.taps() * p.out_width;
    return std::clamp<int64_t>(kFusedTileElements / row, 1, p.groups);
  }
  int64_t group_chunks() const { return (p.groups + tile_groups() - 1) / tile_groups(); }
  int64_t row_bands() const { return (p.out_height + tile_rows() - 1) / tile_rows(); }
  // Input rows of a grad_input task: several kernel heights, so that the
  // output rows regenerated for its halo stay a fraction of its own.
  int64_t input_band() const {
    const int64_t halo = (p.kernel_h - 1) * p.dilation_h;
    return std::clamp<int64_t>(std::max(tile_rows() * p.stride_h, 3 * halo), 1, p.height);
  }
  int64_t input_bands() const { return (p.height + input_band() - 1) / input_band(); }
  // Input rows that output rows [i0, i0 + rows) read, at most.
  int64_t band_input_rows(int64_t rows) const {
    return std::min(p.height, (rows - 1) * p.stride_h + (p.kernel_h - 1) * p.dilation_h + 1);
  }
  // Values of a phase of an input row split into stride_w phases (zero padded,
  // see Fused::fill_phases): the output row rounded up to vectors of up to
  // kMaxLanes lanes, plus the taps' reach.
  static constexpr int64_t kMaxLanes = 16;
  int64_t phase_length() const {
    return (p.out_width + kMaxLanes - 1) / kMaxLanes * kMaxLanes +
           (p.kernel_w - 1) * p.dilation_w / p.stride_w + 1;
  }
  int64_t phase_row() const { return p.stride_w * phase_length(); }
  // Scratch of a forward or grad_input task: its kernel tile (with a vector of
  // slack: a row's last vector may read past the tile) and, NCHW, one
  // channel's input rows in phases.
  int64_t kernel_tile_elements() const {
    return tile_groups() * p.taps() * tile_rows() * p.out_width + kMaxLanes;
  }
  // Scratch of a grad_input task: as forward's, then its band of input rows
  // of each of its channels, phased (NCHW).
  int64_t grad_input_scratch_elements() const {
    return kernel_tile_elements() + tile_groups() * p.group_channels * input_band() * phase_row();
  }
  int64_t forward_scratch_elements() const {
    return kernel_tile_elements() + band_input_rows(tile_rows()) * phase_row();
  }
  // Scratch of a grad_span task: the kernel's gradient for a tile of all
  // groups, every channel's input rows in phases and, channels-last, the
  // tile's grad_output transposed to rows per channel.
  int64_t tile_elements() const { return kernel_rows() * tile_rows() * p.out_width; }
  int64_t span_scratch_elements() const {
    return tile_elements() + p.channels * band_input_rows(tile_rows()) * phase_row() +
           (p.channels_last ? p.channels * tile_rows() * p.out_width : 0);
  }
};

// C (M x N, row stride ldc) = A (M x K, strides ars and ais) * B (K x N,
// strides brs and bis), plus C's values when `accumulate`: the span's
// products, by torch's matrix multiply (the binding's; the kernels call no
// torch code). Transposed operands are strided views, never copies.
template <typename T>
using MatmulFn = void (*)(int64_t M, int64_t N, int64_t K, const T* A, int64_t ars, int64_t ais,
                          const T* B, int64_t brs, int64_t bis, T* C, int64_t ldc,
                          bool accumulate);

// The operands of the three passes (null where a pass does not use them).
template <typename T>
struct FusedArgs {
  const T* input;
  const T* hidden;
  const T* span;
  const T* bias;
  const T* grad_output;
  T* out;          // forward: output; grad_input: grad_input; grad_span: grad_hidden
  T* grad_span;    // grad_span: this task's partial sums (G*Kh*Kw, Ch), accumulated
  T* grad_bias;    // grad_span: this task's partial sums (G*Kh*Kw), accumulated
  MatmulFn<T> matmul;
};

// forward: output rows [begin, end) of groups [g0, g1) of sample n.
// grad_input: input rows [begin, end) of groups [g0, g1) of sample n.
// grad_span: output rows [begin, end) of sample n, all groups (g0, g1 unused):
// writes grad_hidden there and adds to the partial sums.
template <typename T>
using FusedFn = void (*)(const FusedProblem&, const FusedArgs<T>&, int64_t n, int64_t g0,
                         int64_t g1, int64_t begin, int64_t end, T* scratch);

template <typename T>
struct FusedKernels {
  FusedFn<T> forward, grad_input, grad_span;
};

// The fused kernels compiled for one instruction set (named as its Isa).
struct FusedIsa {
  const char* name;
  FusedKernels<float> f32;
  FusedKernels<double> f64;
};

extern const FusedIsa kFusedAvx512;
extern const FusedIsa kFusedAvx2;
extern const FusedIsa kFusedBaseline;

}  // namespace mmrednet_cpu
