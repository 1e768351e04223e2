// The CPU kernels of the fused involution ops (defined with the others in
// involution_cpu.cpp): out = involution(x, span(h)), with span a 1x1
// convolution (weight (G*Kh*Kw, C_hidden), optional bias), and their
// gradients, on torch's stable ABI (see involution_cpu.cpp).
//
// The per-pixel kernel is generated tile by tile in each task's scratch
// (involution_fused_kernels.h, compiled per instruction set) and never stored:
// the scratch is one torch tensor of a few tiles, so that torch's memory
// profiler sees it. Tasks are split from the problem alone, not from the
// thread count: the span weight's gradient sums partial sums of a fixed
// number of chunks in a fixed order, so every result is independent of the
// number of threads. Two layouts: all (N, C, H, W) tensors contiguous, or
// channels-last when the input is (what a channels-last model produces).
// Half and bfloat16 are computed in float32, as by the involution ops.
#include <torch/csrc/inductor/aoti_torch/generated/c_shim_cpu.h>  // addmm_out

#include <algorithm>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>

#include "involution_cpu_binding.h"
#include "involution_fused.h"

namespace {

using namespace mmrednet_cpu::binding;  // NOLINT: the binding's vocabulary
using mmrednet_cpu::FusedArgs;
using mmrednet_cpu::FusedIsa;
using mmrednet_cpu::FusedKernels;
using mmrednet_cpu::FusedProblem;
using mmrednet_cpu::Problem;
using OptionalTensor = std::optional<Tensor>;

// C (M x N) = A (M x K) * B (K x N) [+ C] by torch's addmm on views of the
// operands (FusedArgs::matmul). Called inside a task: torch runs it on the
// calling thread, so a result does not depend on the thread count.
template <typename T>
void matmul(int64_t M, int64_t N, int64_t K, const T* A, int64_t ars, int64_t ais, const T* B,
            int64_t brs, int64_t bis, T* C, int64_t ldc, bool accumulate) {
  if (M == 0 || N == 0) return;
  const ScalarType type = std::is_same_v<T, float> ? ScalarType::Float : ScalarType::Double;
  const torch::stable::Device cpu(torch::headeronly::DeviceType::CPU);
  const Tensor a = torch::stable::from_blob(const_cast<T*>(A), Ints{M, K}, Ints{ars, ais}, cpu,
                                            type);
  const Tensor b = torch::stable::from_blob(const_cast<T*>(B), Ints{K, N}, Ints{brs, bis}, cpu,
                                            type);
  const Tensor c = torch::stable::from_blob(C, Ints{M, N}, Ints{ldc, 1}, cpu, type);
  // beta 0: C's values are ignored (not even a NaN there propagates).
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_cpu_addmm_out(c.get(), c.get(), a.get(), b.get(),
                                                         accumulate ? 1.0 : 0.0, 1.0));
}

// Partial sums of the span weight's gradient: at most this many, one per chunk
// of consecutive tasks (a fixed split, so a fixed order of summation).
constexpr int64_t kSpanPartials = 16;

// The fused kernels of the instruction set the involution ops use (which
// tests and benchmarks choose by the _cpu_set_isa op).
const FusedIsa& current_isa() {
  const std::string name = mmrednet_cpu::selected_isa().name;
  for (const FusedIsa* isa :
       {&mmrednet_cpu::kFusedAvx512, &mmrednet_cpu::kFusedAvx2, &mmrednet_cpu::kFusedBaseline}) {
    if (name == isa->name) return *isa;
  }
  throw std::logic_error("involution_fused: no fused kernels for instruction set " + name);
}

// Checks the problem, as mmrednet/ops/_fused_args.py checks it for the Python
// entry points (same conditions and messages); returns its dtype.
ScalarType check_fused(const char* op, const Tensor& input, const Tensor& hidden,
                       const Tensor& weight, const OptionalTensor& bias, const Ints& kernel_size,
                       const Ints& stride, const Ints& padding, const Ints& dilation) {
  MMREDNET_CHECK_VALUE(input.dim() == 4, op, ": input must be (N, C, H, W), got shape ",
                       shape(input));
  MMREDNET_CHECK_VALUE(hidden.dim() == 4, op,
                       ": hidden must be (N, C_hidden, H_out, W_out), got shape ", shape(hidden));
  MMREDNET_CHECK_VALUE(weight.dim() == 2, op,
                       ": weight must be (G * K_h * K_w, C_hidden), got shape ", shape(weight));
  check_like_input(op, "hidden", hidden, input);
  check_like_input(op, "weight", weight, input);
  if (bias) check_like_input(op, "bias", *bias, input);
  const ScalarType type = input.scalar_type();
  MMREDNET_CHECK_VALUE(is_floating(type), op, ": input must be a floating point tensor, got ",
                       type);
  check_pair(op, "kernel_size", kernel_size, 1);
  check_pair(op, "stride", stride, 1);
  check_pair(op, "padding", padding, 0);
  check_pair(op, "dilation", dilation, 1);
  MMREDNET_CHECK_VALUE(!bias || (bias->dim() == 1 && bias->size(0) == weight.size(0)), op,
                       ": bias must be (", weight.size(0), ",) as weight.shape[0], got shape ",
                       bias ? shape(*bias) : List{});
  const int64_t taps = kernel_size[0] * kernel_size[1], rows = weight.size(0);
  MMREDNET_CHECK_VALUE(rows >= taps && rows % taps == 0, op, ": weight.shape[0] (", rows,
                       ") must be a positive multiple of the kernel's taps (", taps,
                       " for kernel_size ", list(kernel_size), ")");
  const int64_t groups = rows / taps, channels = input.size(1);
  MMREDNET_CHECK_VALUE(channels % groups == 0, op, ": the number of groups (weight.shape[0] / ",
                       taps, " = ", groups, ") must divide the input channels (", channels, ")");
  MMREDNET_CHECK_VALUE(hidden.size(0) == input.size(0), op, ": hidden batch size ",
                       hidden.size(0), " must equal input batch size ", input.size(0));
  MMREDNET_CHECK_VALUE(hidden.size(1) == weight.size(1), op, ": hidden channels ",
                       hidden.size(1), " must equal weight.shape[1] (", weight.size(1), ")");
  MMREDNET_CHECK_VALUE(hidden.size(1) >= 1, op,
                       ": hidden must have at least one channel (C_hidden >= 1), got shape ",
                       shape(hidden));
  MMREDNET_CHECK_VALUE(input.size(2) >= 1 && input.size(3) >= 1, op,
                       ": input spatial size must be >= 1, got ", list(input, 2, 2));
  const Ints padded = check_padded_problem(op, channels, groups, kernel_size,
                                           {input.size(2), input.size(3)}, padding);
  const int64_t out_h = output_size(padded[0], kernel_size[0], stride[0], dilation[0]);
  const int64_t out_w = output_size(padded[1], kernel_size[1], stride[1], dilation[1]);
  MMREDNET_CHECK_VALUE(out_h >= 1 && out_w >= 1, op, ": input spatial size ", list(input, 2, 2),
                       " is too small for kernel ", list(kernel_size), ", padding ",
                       list(padding), ", dilation ", list(dilation));
  MMREDNET_CHECK_VALUE(hidden.size(2) == out_h && hidden.size(3) == out_w, op,
                       ": hidden spatial size ", list(hidden, 2, 2),
                       " must equal the output size [", out_h, ", ", out_w, "] for input ",
                       list(input, 2, 2), ", kernel_size ", list(kernel_size), ", stride ",
                       list(stride), ", padding ", list(padding), ", dilation ", list(dilation));
  return type;
}

void check_grad_output(const char* op, const Tensor& grad_output, const Tensor& input,
                       const Tensor& hidden) {
  check_like_input(op, "grad_output", grad_output, input);
  const Ints expected{input.size(0), input.size(1), hidden.size(2), hidden.size(3)};
  MMREDNET_CHECK_VALUE(grad_output.sizes().equals(expected), op,
                       ": grad_output must have the output shape ", list(expected), ", got ",
                       shape(grad_output));
}

// Channels-last when the input is (and not also contiguous), as torch's
// suggest_memory_format decides it for a 4-D tensor.
bool channels_last(const Tensor& input) {
  return !dense_in_order(input, {0, 1, 2, 3}) && dense_in_order(input, {0, 2, 3, 1});
}

// The layout of the results (the input's) and the one the kernels compute in:
// channels-last also for a contiguous problem unless its output rows are
// wider than its channels (and than kNarrowRow): the contiguous kernels put
// a row's pixels in the vectors and pay their per-tap bookkeeping per
// channel and row, the channels-last ones put the channels there and pay it
// per pixel. Measured on RedNet-50's shapes, one thread: channels-last 1.1-1.8x
// faster, copies included, at 128x28x28 and 256x50x84 to 512x25x42; contiguous
// faster at 64x200x336. The operands and results are then copied.
constexpr int64_t kNarrowRow = 32;

struct Layouts {
  bool result, compute;
};

Layouts layouts(const Tensor& input, const Tensor& hidden) {
  const bool cl = channels_last(input);
  return {cl, cl || hidden.size(3) < std::max(kNarrowRow, input.size(1))};
}

// A result computed in l.compute, in l.result (with the strides torch.empty
// gives, as the fake kernels say) and dtype `type`.
Tensor result(const Tensor& t, Layouts l, ScalarType type) {
  if (l.compute == l.result) return cast(t, compute_type(type), type);
  const auto sizes = t.sizes();
  Tensor r = new_empty(Ints(sizes.begin(), sizes.end()), t, l.result);
  torch::stable::copy_(r, t);
  return cast(r, compute_type(type), type);
}

// The operands in the computing dtype and the problem's layout.
struct Operands {
  Tensor input, hidden, weight;
  OptionalTensor bias;
  FusedProblem f;

  Operands(const Tensor& x, const Tensor& h, const Tensor& w, const OptionalTensor& b,
           const Ints& kernel_size, const Ints& stride, const Ints& padding,
           const Ints& dilation, ScalarType type, bool cl)
      : input(dense(x, type, cl)), hidden(dense(h, type, cl)),
        weight(torch::stable::contiguous(cast(w, type, compute_type(type)))) {
    if (b) bias = torch::stable::contiguous(cast(*b, type, compute_type(type)));
    const auto s = input.sizes();
    const int64_t groups = w.size(0) / (kernel_size[0] * kernel_size[1]);
    // A stride longer than the padded input (one output row or column) is
    // shortened to it, as for the involution ops: the same result, and the
    // phased rows then span a few padded inputs at most.
    const int64_t stride_h = std::min(stride[0], s[2] + 2 * padding[0]);
    const int64_t stride_w = std::min(stride[1], s[3] + 2 * padding[1]);
    f = FusedProblem{Problem{s[0], s[1], groups, s[1] / groups, s[2], s[3], h.size(2), h.size(3),
                             kernel_size[0], kernel_size[1], stride_h, stride_w, padding[0],
                             padding[1], dilation[0], dilation[1], cl},
                     h.size(1), b.has_value()};
  }

  template <typename T>
  FusedArgs<T> args(const T* grad_output, T* out) const {
    return {data<T>(input), data<T>(hidden), data<T>(weight), bias ? data<T>(*bias) : nullptr, grad_output, out, nullptr, nullptr, &matmul<T>};
  }
};

template <typename T>
const FusedKernels<T>& kernels() {
  if constexpr (std::is_same_v<T, float>) {
    return current_isa().f32;
  } else {
    return current_isa().f64;
  }
}

// Runs item(i, scratch) for i in [0, count): consecutive items on one thread
// each (as ATen's parallel_for splits a range), each thread's range with its
// own `scratch_elements` of scratch of `like`'s dtype (the stable API has no
// thread id). What an item computes must not depend on the split.
template <typename T, typename Item>
void for_each_item(int64_t count, int64_t scratch_elements, const Tensor& like,
                   const Item& item) {
  if (count == 0) return;
  const int64_t slots = std::min<int64_t>(torch::stable::get_num_threads(), count);
  const Tensor scratch = new_empty({slots, scratch_elements}, like);
  T* scratch_data = static_cast<T*>(scratch.mutable_data_ptr());
  torch::stable::parallel_for(0, slots, 1, [&](int64_t begin, int64_t end) {
    for (int64_t slot = begin; slot < end; ++slot) {
      for (int64_t i = count * slot / slots; i < count * (slot + 1) / slots; ++i) {
        item(i, scratch_data + slot * scratch_elements);
      }
    }
  });
}

// Forward and grad_input: tasks of (sample, group chunk, row band), bands of
// `band` rows of `rows`, each task with `scratch` elements of scratch.
template <typename T>
void run_banded(mmrednet_cpu::FusedFn<T> fn, const FusedProblem& f, const FusedArgs<T>& a,
                int64_t rows, int64_t band, int64_t scratch, const Tensor& like) {
  const int64_t bands = (rows + band - 1) / band, group_chunks = f.group_chunks();
  const int64_t tasks = f.p.batch * group_chunks * bands;
  for_each_item<T>(tasks, scratch, like, [&](int64_t t, T* mine) {
    const int64_t n = t / (group_chunks * bands), g = t / bands % group_chunks, b = t % bands;
    const int64_t g0 = g * f.tile_groups();
    fn(f, a, n, g0, std::min(f.p.groups, g0 + f.tile_groups()), b * band,
       std::min(rows, (b + 1) * band), mine);
  });
}

Tensor involution_fused(const Tensor& input, const Tensor& hidden, const Tensor& weight,
                        const OptionalTensor& bias, const Ints& kernel_size, const Ints& stride,
                        const Ints& padding, const Ints& dilation) {
  const ScalarType type = check_fused("involution_fused", input, hidden, weight, bias,
                                      kernel_size, stride, padding, dilation);
  const Layouts l = layouts(input, hidden);
  const Operands o(input, hidden, weight, bias, kernel_size, stride, padding, dilation, type,
                   l.compute);
  const Problem& p = o.f.p;
  Tensor out = new_empty({p.batch, p.channels, p.out_height, p.out_width}, o.input, l.compute);
  const auto run = [&](auto zero) {
    using T = decltype(zero);
    run_banded<T>(kernels<T>().forward, o.f,
                  o.args<T>(nullptr, static_cast<T*>(out.mutable_data_ptr())), p.out_height,
                  o.f.tile_rows(), o.f.forward_scratch_elements(), out);
  };
  compute_type(type) == ScalarType::Float ? run(float{}) : run(double{});
  return result(out, l, type);
}

Tensor involution_fused_grad_input(const Tensor& grad_output, const Tensor& input,
                                   const Tensor& hidden, const Tensor& weight,
                                   const OptionalTensor& bias, const Ints& kernel_size,
                                   const Ints& stride, const Ints& padding,
                                   const Ints& dilation) {
  const char* op = "involution_fused_grad_input";
  const ScalarType type =
      check_fused(op, input, hidden, weight, bias, kernel_size, stride, padding, dilation);
  check_grad_output(op, grad_output, input, hidden);
  const Layouts l = layouts(input, hidden);
  const Operands o(input, hidden, weight, bias, kernel_size, stride, padding, dilation, type,
                   l.compute);
  const Tensor go = dense(grad_output, type, l.compute);
  const Problem& p = o.f.p;
  Tensor grad_in = new_empty({p.batch, p.channels, p.height, p.width}, o.input, l.compute);
  const auto run = [&](auto zero) {
    using T = decltype(zero);
    run_banded<T>(kernels<T>().grad_input, o.f,
                  o.args<T>(data<T>(go), static_cast<T*>(grad_in.mutable_data_ptr())),
                  p.height, o.f.input_band(), o.f.grad_input_scratch_elements(), grad_in);
  };
  compute_type(type) == ScalarType::Float ? run(float{}) : run(double{});
  return result(grad_in, l, type);
}

std::tuple<Tensor, Tensor, Tensor> involution_fused_grad_span(
    const Tensor& grad_output, const Tensor& input, const Tensor& hidden, const Tensor& weight,
    const Ints& kernel_size, const Ints& stride, const Ints& padding, const Ints& dilation) {
  const char* op = "involution_fused_grad_span";
  const ScalarType type = check_fused(op, input, hidden, weight, std::nullopt, kernel_size,
                                      stride, padding, dilation);
  check_grad_output(op, grad_output, input, hidden);
  const Layouts l = layouts(input, hidden);
  const Operands o(input, hidden, weight, std::nullopt, kernel_size, stride, padding, dilation,
                   type, l.compute);
  const Tensor go = dense(grad_output, type, l.compute);
  const FusedProblem& f = o.f;
  const Problem& p = f.p;
  const int64_t rows = f.kernel_rows(), span = rows * f.hidden;
  Tensor grad_hidden =
      new_empty({p.batch, f.hidden, p.out_height, p.out_width}, o.input, l.compute);
  Tensor grad_weight = new_empty({rows, f.hidden}, o.input);
  Tensor grad_bias = new_empty({rows}, o.input);
  const auto run = [&](auto zero) {
    using T = decltype(zero);
    FusedArgs<T> a = o.args<T>(data<T>(go), static_cast<T*>(grad_hidden.mutable_data_ptr()));
    const auto grad_span = kernels<T>().grad_span;
    const int64_t bands = f.row_bands(), tasks = p.batch * bands;
    const int64_t chunks = std::clamp<int64_t>(tasks, 1, kSpanPartials);
    // The partial sums of the span weight and bias, one set per chunk of
    // consecutive tasks (chunks fixed by the problem, threads take chunks).
    const int64_t partial = span + rows;
    const Tensor partials = new_empty({chunks, partial}, grad_weight);
    T* partial_data = static_cast<T*>(partials.mutable_data_ptr());
    for_each_item<T>(chunks, f.span_scratch_elements(), grad_weight,
                     [&](int64_t chunk, T* scratch) {
      T* sums = partial_data + chunk * partial;
      std::fill(sums, sums + partial, T(0));
      FusedArgs<T> mine = a;
      mine.grad_span = sums;
      mine.grad_bias = sums + span;
      for (int64_t t = tasks * chunk / chunks; t < tasks * (chunk + 1) / chunks; ++t) {
        const int64_t n = t / bands, i0 = t % bands * f.tile_rows();
        grad_span(f, mine, n, 0, p.groups, i0, std::min(p.out_height, i0 + f.tile_rows()),
                  scratch);
      }
    });
    // The chunks' partial sums in chunk order.
    T* gw = static_cast<T*>(grad_weight.mutable_data_ptr());
    T* gb = static_cast<T*>(grad_bias.mutable_data_ptr());
    torch::stable::parallel_for(0, partial, 4096, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        T sum = 0;
        for (int64_t chunk = 0; chunk < chunks; ++chunk) sum += partial_data[chunk * partial + e];
        (e < span ? gw[e] : gb[e - span]) = sum;
      }
    });
  };
  compute_type(type) == ScalarType::Float ? run(float{}) : run(double{});
  const ScalarType computing = compute_type(type);
  return {result(grad_hidden, l, type), cast(grad_weight, computing, type),
          cast(grad_bias, computing, type)};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(mmrednet, CPU, m) {
  m.impl("involution_fused", TORCH_BOX(&involution_fused));
  m.impl("involution_fused_grad_input", TORCH_BOX(&involution_fused_grad_input));
  m.impl("involution_fused_grad_span", TORCH_BOX(&involution_fused_grad_span));
}
