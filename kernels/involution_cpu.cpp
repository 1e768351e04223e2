// The op library of the involution operator (mmrednet/_C.so): the
// mmrednet::involution* ops defined with TORCH_LIBRARY and their CPU kernels.
//
// Plain libtorch, no pybind and no Python symbol, so that a C++ program (an
// AOTInductor runner) can dlopen it with no Python in the process; Python loads
// it with torch.ops.load_library and adds the fake kernels, autograd and the
// CUDA and portable kernels (mmrednet/ops/library.py).
//
// The kernels themselves (involution_cpu_kernels.h) are compiled once per
// instruction set; this file checks the arguments, picks the widest
// instruction set the CPU runs, and splits a pass into tasks (bands of rows of
// one (sample, group) block) run by ATen's thread pool. Tasks write disjoint
// memory and the arithmetic of an output does not depend on how the work is
// split, so results are deterministic and independent of the thread count.
// Each thread's scratch (ring buffers of a few rows, in cache) is one torch
// tensor, so that torch's memory profiler sees it. Two layouts: all tensors
// contiguous (NCHW), or channels-last input/output with the kernel pixel-major
// (what a channels-last model produces). Half and bfloat16 are computed in
// float32 and rounded once at the end, faster and more accurate on CPUs than
// accumulating 49 products in 16 bits.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/StringUtil.h>
#include <torch/library.h>

#include <algorithm>
#include <string>
#include <vector>

#include "involution_cpu.h"
#include "mmrednet_generated.h"  // the op schemas and the package version, written by setup.py

namespace {

using at::IntArrayRef;
using at::Tensor;
using mmrednet_cpu::Isa;
using mmrednet_cpu::PassId;
using mmrednet_cpu::Problem;

std::vector<const Isa*> supported_isas() {
  std::vector<const Isa*> isas;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw")) {
    isas.push_back(&mmrednet_cpu::kIsaAvx512);
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    isas.push_back(&mmrednet_cpu::kIsaAvx2);
  }
#endif
  isas.push_back(&mmrednet_cpu::kIsaBaseline);
  return isas;
}

const Isa*& current_isa() {
  static const Isa* isa = supported_isas().front();
  return isa;
}

// The arguments, checked as mmrednet/ops/_args.py checks them for the Python
// entry points (same conditions, exception types and messages), since C++
// callers have no Python in front of the op.
int64_t output_size(int64_t size, int64_t kernel, int64_t stride, int64_t padding,
                    int64_t dilation) {
  return (size + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1;
}

void check_pair(const char* op, const char* name, IntArrayRef values, int64_t minimum) {
  TORCH_CHECK_VALUE(values.size() == 2, op, ": ", name, " must be 2 ints, got ", values);
  TORCH_CHECK_VALUE(values[0] >= minimum && values[1] >= minimum, op, ": ", name,
                    " must be >= ", minimum, ", got ", values);
}

void check_problem(const char* op, const Tensor& input, const Tensor& weight, IntArrayRef stride,
                   IntArrayRef padding, IntArrayRef dilation) {
  TORCH_CHECK_VALUE(input.dim() == 4, op, ": input must be (N, C, H, W), got shape ",
                    input.sizes());
  TORCH_CHECK_VALUE(weight.dim() == 6, op,
                    ": for a 2-D input, weight must be (N, G, K, K, H_out, W_out), got shape ",
                    weight.sizes());
  TORCH_CHECK_VALUE(weight.device() == input.device(), op, ": weight is on ", weight.device(),
                    " but input is on ", input.device(), "; both must be on the same device");
  TORCH_CHECK_TYPE(weight.scalar_type() == input.scalar_type(), op, ": weight dtype ",
                   weight.scalar_type(), " must equal input dtype ", input.scalar_type());
  TORCH_CHECK_TYPE(at::isFloatingType(input.scalar_type()), op,
                   ": input must be a floating point tensor, got ", input.scalar_type());
  check_pair(op, "stride", stride, 1);
  check_pair(op, "padding", padding, 0);
  check_pair(op, "dilation", dilation, 1);
  const int64_t channels = input.size(1), groups = weight.size(1);
  TORCH_CHECK_VALUE(weight.size(0) == input.size(0), op, ": weight batch size ", weight.size(0),
                    " must equal input batch size ", input.size(0));
  TORCH_CHECK_VALUE(groups >= 1 && channels % groups == 0, op,
                    ": the number of groups (weight.shape[1] = ", groups,
                    ") must divide the input channels (", channels, ")");
  TORCH_CHECK_VALUE(weight.size(2) >= 1 && weight.size(3) >= 1, op,
                    ": kernel size must be >= 1, got ", weight.sizes().slice(2, 2));
  TORCH_CHECK_VALUE(input.size(2) >= 1 && input.size(3) >= 1, op,
                    ": input spatial size must be >= 1, got ", input.sizes().slice(2));
  const int64_t out_h = output_size(input.size(2), weight.size(2), stride[0], padding[0],
                                    dilation[0]);
  const int64_t out_w = output_size(input.size(3), weight.size(3), stride[1], padding[1],
                                    dilation[1]);
  TORCH_CHECK_VALUE(out_h >= 1 && out_w >= 1, op, ": input spatial size ",
                    input.sizes().slice(2), " is too small for kernel ",
                    weight.sizes().slice(2, 2), ", padding ", padding, ", dilation ", dilation);
  TORCH_CHECK_VALUE(weight.size(4) == out_h && weight.size(5) == out_w, op,
                    ": weight spatial size ", weight.sizes().slice(4), " must equal the output size [",
                    out_h, ", ", out_w, "] for input ", input.sizes().slice(2), ", stride ", stride,
                    ", padding ", padding, ", dilation ", dilation);
}

void check_grad_output(const char* op, const Tensor& grad_output, const Tensor& input,
                       const Tensor& weight) {
  TORCH_CHECK_VALUE(grad_output.device() == input.device(), op, ": grad_output is on ",
                    grad_output.device(), " but input is on ", input.device(),
                    "; both must be on the same device");
  TORCH_CHECK_TYPE(grad_output.scalar_type() == input.scalar_type(), op, ": grad_output dtype ",
                   grad_output.scalar_type(), " must equal input dtype ", input.scalar_type());
  const std::vector<int64_t> expected{input.size(0), input.size(1), weight.size(4),
                                      weight.size(5)};
  TORCH_CHECK_VALUE(grad_output.sizes() == IntArrayRef(expected), op,
                    ": grad_output must have the output shape ", IntArrayRef(expected), ", got ",
                    grad_output.sizes());
}

// The kernel as a channels-last 1x1 convolution writes it: (N, Ho, Wo, G, Kh, Kw) in memory
// (and not also contiguous), as _args.is_pixel_major.
bool pixel_major(const Tensor& weight) {
  return weight.dim() == 6 && !weight.is_contiguous() &&
         weight.permute({0, 4, 5, 1, 2, 3}).is_contiguous();
}

c10::MemoryFormat format(bool channels_last) {
  return channels_last ? c10::MemoryFormat::ChannelsLast : c10::MemoryFormat::Contiguous;
}

// The kernels compute in float32 or float64.
at::ScalarType compute_type(const Tensor& t) {
  const auto type = t.scalar_type();
  return type == at::kFloat || type == at::kDouble ? type : at::kFloat;
}

// An (N, C, H, W) tensor in the computing dtype and the problem's layout.
Tensor dense(const Tensor& t, bool channels_last) {
  return t.to(compute_type(t)).contiguous(format(channels_last));
}

// The kernel in the computing dtype: pixel-major kept as it is when channels-last.
Tensor kernel_tensor(const Tensor& weight, bool channels_last) {
  const Tensor w = weight.to(compute_type(weight));
  return channels_last ? w : w.contiguous();
}

Problem make_problem(const Tensor& input, const Tensor& weight, IntArrayRef stride,
                     IntArrayRef padding, IntArrayRef dilation, bool channels_last) {
  const int64_t channels = input.size(1), groups = weight.size(1);
  return Problem{input.size(0),  channels,       groups,        channels / groups,
                 input.size(2),  input.size(3),  weight.size(4), weight.size(5),
                 weight.size(2), weight.size(3), stride[0],      stride[1],
                 padding[0],     padding[1],     dilation[0],    dilation[1],
                 channels_last};
}

template <typename T>
mmrednet_cpu::Pass<T> select(const Problem& p, PassId id) {
  if constexpr (std::is_same_v<T, float>) {
    return current_isa()->f32(p, id);
  } else {
    return current_isa()->f64(p, id);
  }
}

// Runs one pass over `rows` rows (output rows, or input rows for grad_input)
// of every (sample, group) block into `out`; with nothing to sum (no sample or
// no channel) `out` is zeros.
template <typename T>
void run(PassId id, const Problem& p, int64_t rows, const T* a, const T* b, Tensor& out) {
  if (p.batch == 0 || p.channels == 0) {
    out.zero_();
    return;
  }
  const auto pass = select<T>(p, id);
  // A task's rows belong to one (sample, group) block, or to one sample (all
  // its groups, whose values lie side by side) when channels-last.
  const int64_t blocks = p.channels_last ? p.batch : p.batch * p.groups;
  const int64_t threads = at::get_num_threads();
  // Enough tasks to balance the threads; a band re-reads only the few rows
  // its ring buffer needs before its first row.
  const int64_t wanted = std::clamp<int64_t>((4 * threads + blocks - 1) / blocks, 1, rows);
  const int64_t band = (rows + wanted - 1) / wanted, bands = (rows + band - 1) / band;
  const Tensor scratch = at::empty({threads, pass.scratch_elements}, out.options());
  T* scratch_data = scratch.data_ptr<T>();
  T* out_data = out.data_ptr<T>();
  at::parallel_for(0, blocks * bands, 1, [&](int64_t begin, int64_t end) {
    T* mine = scratch_data + at::get_thread_num() * pass.scratch_elements;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t first = task % bands * band;
      pass.run(p, a, b, out_data, task / bands, first, std::min(rows, first + band), mine);
    }
  });
}

template <typename Fn>
void dispatch(const Tensor& t, Fn&& fn) {
  if (t.scalar_type() == at::kFloat) {
    fn(float{});
  } else {
    fn(double{});
  }
}

// The three ops. `input` of grad_input and `weight` of grad_weight are read
// for their shapes (and the kernel's layout) only.
Tensor involution(const Tensor& input, const Tensor& weight, IntArrayRef stride,
                  IntArrayRef padding, IntArrayRef dilation) {
  check_problem("involution", input, weight, stride, padding, dilation);
  const bool cl = pixel_major(weight);
  const Tensor x = dense(input, cl), w = kernel_tensor(weight, cl);
  const Problem p = make_problem(x, w, stride, padding, dilation, cl);
  Tensor out = at::empty({p.batch, p.channels, p.out_height, p.out_width},
                         x.options().memory_format(format(cl)));
  dispatch(x, [&](auto zero) {
    using T = decltype(zero);
    run<T>(mmrednet_cpu::kForward, p, p.out_height, x.data_ptr<T>(), w.data_ptr<T>(), out);
  });
  return out.to(input.scalar_type());
}

Tensor involution_grad_input(const Tensor& grad_output, const Tensor& input,
                             const Tensor& weight, IntArrayRef stride, IntArrayRef padding,
                             IntArrayRef dilation) {
  check_problem("involution_grad_input", input, weight, stride, padding, dilation);
  check_grad_output("involution_grad_input", grad_output, input, weight);
  const bool cl = pixel_major(weight);
  const Tensor go = dense(grad_output, cl), w = kernel_tensor(weight, cl);
  const Problem p = make_problem(input, w, stride, padding, dilation, cl);
  Tensor grad_in = at::empty({p.batch, p.channels, p.height, p.width},
                             go.options().memory_format(format(cl)));
  dispatch(go, [&](auto zero) {
    using T = decltype(zero);
    run<T>(mmrednet_cpu::kGradInput, p, p.height, go.data_ptr<T>(), w.data_ptr<T>(), grad_in);
  });
  return grad_in.to(grad_output.scalar_type());
}

Tensor involution_grad_weight(const Tensor& grad_output, const Tensor& input,
                              const Tensor& weight, IntArrayRef stride, IntArrayRef padding,
                              IntArrayRef dilation) {
  check_problem("involution_grad_weight", input, weight, stride, padding, dilation);
  check_grad_output("involution_grad_weight", grad_output, input, weight);
  const bool cl = pixel_major(weight);
  const Tensor go = dense(grad_output, cl), x = dense(input, cl);
  const Problem p = make_problem(x, weight, stride, padding, dilation, cl);
  // In the kernel's layout: pixel-major when channels-last.
  Tensor grad_w =
      cl ? at::empty({p.batch, p.out_height, p.out_width, p.groups, p.kernel_h, p.kernel_w},
                     go.options())
               .permute({0, 3, 4, 5, 1, 2})
         : at::empty(weight.sizes(), go.options());
  dispatch(go, [&](auto zero) {
    using T = decltype(zero);
    run<T>(mmrednet_cpu::kGradWeight, p, p.out_height, go.data_ptr<T>(), x.data_ptr<T>(),
           grad_w);
  });
  return grad_w.to(grad_output.scalar_type());
}

std::vector<std::string> isa_names() {
  std::vector<std::string> names;
  for (const Isa* isa : supported_isas()) names.emplace_back(isa->name);
  return names;
}

c10::List<std::string> supported_isa_names() { return c10::List<std::string>(isa_names()); }

std::string isa() { return current_isa()->name; }

void set_isa(const std::string& name) {
  for (const Isa* isa : supported_isas()) {
    if (name == isa->name) {
      current_isa() = isa;
      return;
    }
  }
  TORCH_CHECK(false, "involution: instruction set '", name, "' is not supported by this CPU; ",
              "supported: ", c10::Join(", ", isa_names()));
}

std::string library_version() { return MMREDNET_VERSION; }

}  // namespace

TORCH_LIBRARY(mmrednet, m) {
  m.def(MMREDNET_SCHEMA_INVOLUTION);
  m.def(MMREDNET_SCHEMA_INVOLUTION_GRAD_INPUT);
  m.def(MMREDNET_SCHEMA_INVOLUTION_GRAD_WEIGHT);
  // The CPU kernels' instruction set (widest first; tests pick each one) and
  // the library's version (the mmrednet version it was built from).
  m.def("_cpu_supported_isas() -> str[]", &supported_isa_names);
  m.def("_cpu_isa() -> str", &isa);
  m.def("_cpu_set_isa(str name) -> ()", &set_isa);
  m.def("_library_version() -> str", &library_version);
}

TORCH_LIBRARY_IMPL(mmrednet, CPU, m) {
  m.impl("involution", &involution);
  m.impl("involution_grad_input", &involution_grad_input);
  m.impl("involution_grad_weight", &involution_grad_weight);
}
