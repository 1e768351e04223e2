// What the CPU kernels of the involution operator share across translation units.
//
// The kernels are compiled once per instruction set (involution_cpu_{avx512,avx2,
// baseline}.cpp, one template source, involution_cpu_kernels.h); the binding
// (involution_cpu.cpp) picks the widest one the CPU runs and splits the work into
// tasks. This header is plain C++ so that no torch code is compiled for an
// instruction set the CPU may lack.
#pragma once

#include <cstdint>

namespace mmrednet_cpu {

// One involution problem in the canonical 2-D layout: input (N, C, H, W),
// kernel (N, G, Kh, Kw, Ho, Wo). In memory either all contiguous, or (when
// channels_last) input and output (N, H, W, C) and the kernel pixel-major
// (N, Ho, Wo, G, Kh, Kw), which is what a channels-last 1x1 convolution
// producing the kernel writes.
struct Problem {
  int64_t batch, channels, groups, group_channels, height, width, out_height, out_width;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  bool channels_last;
  int64_t taps() const { return kernel_h * kernel_w; }
  int64_t plane() const { return height * width; }
  int64_t out_plane() const { return out_height * out_width; }
};

// One task: rows [begin, end) of one (sample, group) block, or of one sample
// when channels_last (output rows for the forward and grad_weight, input rows
// for grad_input), with `scratch` holding the task's scratch_elements values.
// Tasks write disjoint memory.
template <typename T>
using KernelFn = void (*)(const Problem&, const T* a, const T* b, T* out, int64_t block,
                          int64_t begin, int64_t end, T* scratch);

// The kernels of one pass, chosen for a problem, and their scratch per task.
template <typename T>
struct Pass {
  KernelFn<T> run;
  int64_t scratch_elements;
};

enum PassId { kForward = 0, kGradInput = 1, kGradWeight = 2 };

// The kernels compiled for one instruction set.
struct Isa {
  const char* name;
  Pass<float> (*f32)(const Problem&, PassId);
  Pass<double> (*f64)(const Problem&, PassId);
};

// Defined in their translation units; the AVX ones only on x86-64 with GCC or clang.
extern const Isa kIsaAvx512;
extern const Isa kIsaAvx2;
extern const Isa kIsaBaseline;

// The instruction set in use (the widest this CPU runs, unless the
// _cpu_set_isa op chose another): the fused ops pick their kernels by its name.
const Isa& selected_isa();

}  // namespace mmrednet_cpu
