// The op library of the involution operator (mmrednet/_C.so): the
// mmrednet::involution* ops and their CPU kernels, on torch's stable ABI.
//
// Only torch's stable C API (torch/csrc/stable, torch/headeronly: header-only
// C++ over the C shim) is used, and setup.py compiles it with
// TORCH_TARGET_VERSION, so that one build loads in every torch release from that
// one on (torch's headers refuse ATen/c10 then). No pybind and no Python symbol
// either, so that a C++ program (an AOTInductor runner) can dlopen it with no
// Python in the process; Python loads it with torch.ops.load_library and adds
// the fake kernels, autograd and the CUDA and portable kernels
// (mmrednet/ops/library.py).
//
// The kernels themselves (involution_cpu_kernels.h) are compiled once per
// instruction set; this file checks the arguments, picks the widest
// instruction set the CPU runs, and splits a pass into tasks (bands of rows of
// one (sample, group) block) run by torch's thread pool. Tasks write disjoint
// memory and the arithmetic of an output does not depend on how the work is
// split, so results are deterministic and independent of the thread count.
// The scratch (ring buffers of a few rows per chunk of tasks, in cache) is one
// torch tensor, so that torch's memory profiler sees it. Two layouts: all
// tensors contiguous (NCHW), or channels-last input/output with the kernel
// pixel-major (what a channels-last model produces). Half and bfloat16 are
// computed in float32 and rounded once at the end, faster and more accurate on
// CPUs than accumulating 49 products in 16 bits.
//
// Errors: a std::invalid_argument (torch raises ValueError in Python) for bad
// arguments, a std::runtime_error (RuntimeError) otherwise; the stable ABI has
// no TypeError, so a dtype mismatch at a direct torch.ops call is a ValueError
// (the functional involution() raises TypeError before the op is reached).
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "involution_cpu.h"
#include "involution_cpu_binding.h"  // checks, layouts and allocation shared with the fused ops
#include "mmrednet_generated.h"  // the op schemas and the package version, written by setup.py

namespace {

using namespace mmrednet_cpu::binding;  // NOLINT: the binding's vocabulary
using mmrednet_cpu::Isa;
using mmrednet_cpu::PassId;
using mmrednet_cpu::Problem;
#define CHECK_VALUE MMREDNET_CHECK_VALUE  // a bad argument: ValueError in Python

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
// entry points (same conditions and messages), since C++ callers have no
// Python in front of the op; bounded as involution_cpu_binding.h says.
//
// Checks the problem and returns the dtype of its tensors.
ScalarType check_problem(const char* op, const Tensor& input, const Tensor& weight,
                         const Ints& stride, const Ints& padding, const Ints& dilation) {
  CHECK_VALUE(input.dim() == 4, op, ": input must be (N, C, H, W), got shape ", shape(input));
  CHECK_VALUE(weight.dim() == 6, op,
              ": for a 2-D input, weight must be (N, G, K, K, H_out, W_out), got shape ",
              shape(weight));
  CHECK_VALUE(same_device(weight, input), op, ": weight is on ", weight.device(),
              " but input is on ", input.device(), "; both must be on the same device");
  CHECK_VALUE(dtype_code(weight) == dtype_code(input), op, ": weight dtype ",
              weight.scalar_type(), " must equal input dtype ", input.scalar_type());
  const ScalarType type = input.scalar_type();
  CHECK_VALUE(is_floating(type), op, ": input must be a floating point tensor, got ", type);
  check_pair(op, "stride", stride, 1);
  check_pair(op, "padding", padding, 0);
  check_pair(op, "dilation", dilation, 1);
  const auto x = input.sizes(), w = weight.sizes();
  const int64_t channels = x[1], groups = w[1];
  CHECK_VALUE(w[0] == x[0], op, ": weight batch size ", w[0], " must equal input batch size ",
              x[0]);
  CHECK_VALUE(groups >= 1 && channels % groups == 0, op,
              ": the number of groups (weight.shape[1] = ", groups,
              ") must divide the input channels (", channels, ")");
  CHECK_VALUE(w[2] >= 1 && w[3] >= 1, op, ": kernel size must be >= 1, got ", list(weight, 2, 2));
  CHECK_VALUE(x[2] >= 1 && x[3] >= 1, op, ": input spatial size must be >= 1, got ",
              list(input, 2, 2));
  const Ints padded =
      check_padded_problem(op, channels, groups, {w[2], w[3]}, {x[2], x[3]}, padding);
  const int64_t out_h = output_size(padded[0], w[2], stride[0], dilation[0]);
  const int64_t out_w = output_size(padded[1], w[3], stride[1], dilation[1]);
  CHECK_VALUE(out_h >= 1 && out_w >= 1, op, ": input spatial size ", list(input, 2, 2),
              " is too small for kernel ", list(weight, 2, 2), ", padding ", list(padding),
              ", dilation ", list(dilation));
  CHECK_VALUE(w[4] == out_h && w[5] == out_w, op, ": weight spatial size ", list(weight, 4, 2),
              " must equal the output size [", out_h, ", ", out_w, "] for input ",
              list(input, 2, 2), ", stride ", list(stride), ", padding ", list(padding),
              ", dilation ", list(dilation));
  return type;
}

void check_grad_output(const char* op, const Tensor& grad_output, const Tensor& input,
                       const Tensor& weight) {
  CHECK_VALUE(same_device(grad_output, input), op, ": grad_output is on ", grad_output.device(),
              " but input is on ", input.device(), "; both must be on the same device");
  CHECK_VALUE(dtype_code(grad_output) == dtype_code(input), op, ": grad_output dtype ",
              grad_output.scalar_type(), " must equal input dtype ", input.scalar_type());
  const Ints expected{input.size(0), input.size(1), weight.size(4), weight.size(5)};
  CHECK_VALUE(grad_output.sizes().equals(expected), op,
              ": grad_output must have the output shape ", list(expected), ", got ",
              shape(grad_output));
}

// The kernel as a channels-last 1x1 convolution writes it: (N, Ho, Wo, G, Kh, Kw) in memory
// (and not also contiguous), as _args.is_pixel_major.
bool pixel_major(const Tensor& weight) {
  return weight.dim() == 6 && !dense_in_order(weight, {0, 1, 2, 3, 4, 5}) &&
         dense_in_order(weight, {0, 4, 5, 1, 2, 3});
}

// The kernel in the computing dtype: pixel-major kept as it is when channels-last.
Tensor kernel_tensor(const Tensor& weight, ScalarType type, bool channels_last) {
  const Tensor w = cast(weight, type, compute_type(type));
  return channels_last || dense_in_order(w, {0, 1, 2, 3, 4, 5}) ? w : torch::stable::contiguous(w);
}

// The problem of checked arguments. A stride longer than the padded input
// (one output row or column, whose stride nothing reads) is shortened to that
// length: the same result, and the kernels' windows (rows of R outputs, columns
// of a pixel block) then span at most a few padded inputs.
Problem make_problem(const Tensor& input, const Tensor& weight, const Ints& stride,
                     const Ints& padding, const Ints& dilation, bool channels_last) {
  const auto x = input.sizes(), w = weight.sizes();
  const int64_t stride_h = std::min(stride[0], x[2] + 2 * padding[0]);
  const int64_t stride_w = std::min(stride[1], x[3] + 2 * padding[1]);
  return Problem{x[0], x[1], w[1], x[1] / w[1], x[2], x[3], w[4], w[5], w[2], w[3],
                 stride_h, stride_w, padding[0], padding[1], dilation[0], dilation[1],
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
    torch::stable::zero_(out);
    return;
  }
  const auto pass = select<T>(p, id);
  // A task's rows belong to one (sample, group) block, or to one sample (all
  // its groups, whose values lie side by side) when channels-last.
  const int64_t blocks = p.channels_last ? p.batch : p.batch * p.groups;
  const int64_t threads = torch::stable::get_num_threads();
  // Enough tasks to balance the threads; a band re-reads only the few rows
  // its ring buffer needs before its first row.
  const int64_t wanted = std::clamp<int64_t>((4 * threads + blocks - 1) / blocks, 1, rows);
  const int64_t band = (rows + wanted - 1) / wanted, bands = (rows + band - 1) / band;
  // The tasks in one chunk per thread (consecutive tasks, as ATen's
  // parallel_for splits a range), each chunk with its own scratch: the stable
  // API has no thread id.
  const int64_t tasks = blocks * bands, chunks = std::min(threads, tasks);
  const Tensor scratch = new_empty({chunks, pass.scratch_elements}, out);
  T* scratch_data = static_cast<T*>(scratch.mutable_data_ptr());
  T* out_data = static_cast<T*>(out.mutable_data_ptr());
  torch::stable::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      T* mine = scratch_data + chunk * pass.scratch_elements;
      for (int64_t task = tasks * chunk / chunks; task < tasks * (chunk + 1) / chunks; ++task) {
        const int64_t first = task % bands * band;
        pass.run(p, a, b, out_data, task / bands, first, std::min(rows, first + band), mine);
      }
    }
  });
}


// Runs pass `id` over `rows` rows with operands `a` and `b` into `out` (all in
// the computing dtype of `type`); returns `out` in `type`.
Tensor compute(PassId id, const Problem& p, int64_t rows, const Tensor& a, const Tensor& b,
               Tensor out, ScalarType type) {
  const ScalarType computing = compute_type(type);
  if (computing == ScalarType::Float) {
    run<float>(id, p, rows, data<float>(a), data<float>(b), out);
  } else {
    run<double>(id, p, rows, data<double>(a), data<double>(b), out);
  }
  return cast(out, computing, type);
}

// The checks of a gradient op: its problem and grad_output; returns their dtype.
ScalarType check_backward(const char* op, const Tensor& grad_output, const Tensor& input,
                          const Tensor& weight, const Ints& stride, const Ints& padding,
                          const Ints& dilation) {
  const ScalarType type = check_problem(op, input, weight, stride, padding, dilation);
  check_grad_output(op, grad_output, input, weight);
  return type;
}

// The three ops. `input` of grad_input and `weight` of grad_weight are read
// for their shapes (and the kernel's layout) only.
Tensor involution(const Tensor& input, const Tensor& weight, const Ints& stride,
                  const Ints& padding, const Ints& dilation) {
  const ScalarType type = check_problem("involution", input, weight, stride, padding, dilation);
  const bool cl = pixel_major(weight);
  const Tensor x = dense(input, type, cl), w = kernel_tensor(weight, type, cl);
  const Problem p = make_problem(x, w, stride, padding, dilation, cl);
  Tensor out = new_empty({p.batch, p.channels, p.out_height, p.out_width}, x, cl);
  return compute(mmrednet_cpu::kForward, p, p.out_height, x, w, out, type);
}

Tensor involution_grad_input(const Tensor& grad_output, const Tensor& input,
                             const Tensor& weight, const Ints& stride, const Ints& padding,
                             const Ints& dilation) {
  const ScalarType type = check_backward("involution_grad_input", grad_output, input, weight,
                                         stride, padding, dilation);
  const bool cl = pixel_major(weight);
  const Tensor go = dense(grad_output, type, cl), w = kernel_tensor(weight, type, cl);
  const Problem p = make_problem(input, w, stride, padding, dilation, cl);
  Tensor grad_in = new_empty({p.batch, p.channels, p.height, p.width}, go, cl);
  return compute(mmrednet_cpu::kGradInput, p, p.height, go, w, grad_in, type);
}

Tensor involution_grad_weight(const Tensor& grad_output, const Tensor& input,
                              const Tensor& weight, const Ints& stride, const Ints& padding,
                              const Ints& dilation) {
  const ScalarType type = check_backward("involution_grad_weight", grad_output, input, weight,
                                         stride, padding, dilation);
  const bool cl = pixel_major(weight);
  const Tensor go = dense(grad_output, type, cl), x = dense(input, type, cl);
  const Problem p = make_problem(x, weight, stride, padding, dilation, cl);
  // In the kernel's layout: pixel-major when channels-last.
  Tensor grad_w =
      cl ? torch::stable::permute(
               new_empty({p.batch, p.out_height, p.out_width, p.groups, p.kernel_h, p.kernel_w},
                         go),
               {0, 3, 4, 5, 1, 2})
         : new_empty({p.batch, p.groups, p.kernel_h, p.kernel_w, p.out_height, p.out_width}, go);
  return compute(mmrednet_cpu::kGradWeight, p, p.out_height, go, x, grad_w, type);
}

std::vector<std::string> supported_isa_names() {
  std::vector<std::string> names;
  for (const Isa* isa : supported_isas()) names.emplace_back(isa->name);
  return names;
}

std::string isa() { return current_isa()->name; }

void set_isa(std::string name) {
  std::string supported;
  for (const Isa* isa : supported_isas()) {
    if (name == isa->name) {
      current_isa() = isa;
      return;
    }
    supported += (supported.empty() ? "" : ", ") + std::string(isa->name);
  }
  throw std::runtime_error(message("involution: instruction set '", name,
                                   "' is not supported by this CPU; supported: ", supported));
}

std::string library_version() { return MMREDNET_VERSION; }

}  // namespace

const Isa& mmrednet_cpu::selected_isa() { return *current_isa(); }

STABLE_TORCH_LIBRARY(mmrednet, m) {
  m.def(MMREDNET_SCHEMA_INVOLUTION);
  m.def(MMREDNET_SCHEMA_INVOLUTION_GRAD_INPUT);
  m.def(MMREDNET_SCHEMA_INVOLUTION_GRAD_WEIGHT);
  // The fused ops (their CPU kernels: involution_fused_cpu.cpp).
  m.def(MMREDNET_SCHEMA_INVOLUTION_FUSED);
  m.def(MMREDNET_SCHEMA_INVOLUTION_FUSED_GRAD_INPUT);
  m.def(MMREDNET_SCHEMA_INVOLUTION_FUSED_GRAD_SPAN);
  // The CPU kernels' instruction set (widest first; tests pick each one) and
  // the library's version (the mmrednet version it was built from).
  m.def("_cpu_supported_isas() -> str[]");
  m.def("_cpu_isa() -> str");
  m.def("_cpu_set_isa(str name) -> ()");
  m.def("_library_version() -> str");
}

STABLE_TORCH_LIBRARY_IMPL(mmrednet, CPU, m) {
  m.impl("involution", TORCH_BOX(&involution));
  m.impl("involution_grad_input", TORCH_BOX(&involution_grad_input));
  m.impl("involution_grad_weight", TORCH_BOX(&involution_grad_weight));
}

// The ops without a tensor argument: one kernel for every dispatch key.
STABLE_TORCH_LIBRARY_IMPL(mmrednet, CompositeExplicitAutograd, m) {
  m.impl("_cpu_supported_isas", TORCH_BOX(&supported_isa_names));
  m.impl("_cpu_isa", TORCH_BOX(&isa));
  m.impl("_cpu_set_isa", TORCH_BOX(&set_isa));
  m.impl("_library_version", TORCH_BOX(&library_version));
}
