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
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/MemoryFormat.h>
#include <torch/headeronly/core/ScalarType.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "involution_cpu.h"
#include "mmrednet_generated.h"  // the op schemas and the package version, written by setup.py

namespace {

using torch::headeronly::MemoryFormat;
using torch::headeronly::ScalarType;
using torch::stable::Tensor;
using mmrednet_cpu::Isa;
using mmrednet_cpu::PassId;
using mmrednet_cpu::Problem;
using Ints = std::vector<int64_t>;

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

// Messages as ATen's checks wrote them: lists as [a, b], dtypes by their ATen
// names, devices as cpu or cuda:0.
struct List {
  torch::headeronly::IntHeaderOnlyArrayRef values;
};

std::ostream& operator<<(std::ostream& out, List list) {
  out << '[';
  for (size_t i = 0; i < list.values.size(); ++i) out << (i ? ", " : "") << list.values[i];
  return out << ']';
}

List list(const Ints& values) { return {values}; }
List list(const Tensor& t, int64_t first, int64_t count) {
  return {t.sizes().slice(first, count)};
}
List shape(const Tensor& t) { return {t.sizes()}; }

std::ostream& operator<<(std::ostream& out, const torch::stable::Device& device) {
  using torch::headeronly::DeviceType;
  switch (device.type()) {
    case DeviceType::CPU: out << "cpu"; break;
    case DeviceType::CUDA: out << "cuda"; break;
    case DeviceType::Meta: out << "meta"; break;
    default: out << "device type " << static_cast<int>(device.type());
  }
  if (device.index() >= 0) out << ':' << static_cast<int>(device.index());
  return out;
}

template <typename... Parts>
std::string message(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

// A bad argument: std::invalid_argument, the message's parts evaluated only
// then (as TORCH_CHECK_VALUE).
#define CHECK_VALUE(condition, ...)                                      \
  do {                                                                   \
    if (!(condition)) throw std::invalid_argument(message(__VA_ARGS__)); \
  } while (false)

// The arguments, checked as mmrednet/ops/_args.py checks them for the Python
// entry points (same conditions and messages), since C++ callers have no
// Python in front of the op.
//
// Bounds: a stride, padding or dilation value fits 32 bits (the CUDA kernels'
// coordinates), and the padded problem, (C + G * Kh * Kw) * (H + 2 * pad_h) *
// (W + 2 * pad_w) values, at most 2^40: every scratch size and index of the
// kernels is a small multiple of it (rows and columns of a pass's window span
// the padded input at most, see make_problem's stride), so none wraps in 64
// bits. Those are computed here with saturating arithmetic, before any other
// product of the geometry.
constexpr int64_t kMaxGeometry = 2147483647;           // 2^31 - 1
constexpr int64_t kMaxPaddedProblem = int64_t{1} << 40;

// a + b and a * b for a, b >= 0, INT64_MAX where they overflow.
int64_t saturating_add(int64_t a, int64_t b) {
  int64_t sum;
  return __builtin_add_overflow(a, b, &sum) ? INT64_MAX : sum;
}
int64_t saturating_mul(int64_t a, int64_t b) {
  int64_t product;
  return __builtin_mul_overflow(a, b, &product) ? INT64_MAX : product;
}

void check_pair(const char* op, const char* name, const Ints& values, int64_t minimum) {
  CHECK_VALUE(values.size() == 2, op, ": ", name, " must be 2 ints, got ", list(values));
  CHECK_VALUE(values[0] >= minimum && values[1] >= minimum, op, ": ", name, " must be >= ", minimum,
        ", got ", list(values));
  CHECK_VALUE(values[0] <= kMaxGeometry && values[1] <= kMaxGeometry, op, ": ", name,
              " must be <= ", kMaxGeometry, " (2^31 - 1), got ", list(values));
}

// Length of one output axis, as for a convolution with the same geometry; 0
// where the input is too small. `padded` (the padded input length) is at most
// kMaxPaddedProblem, so nothing overflows: the kernel span dilation * (kernel - 1)
// is compared by division first.
int64_t output_size(int64_t padded, int64_t kernel, int64_t stride, int64_t dilation) {
  if (kernel - 1 > (padded - 1) / dilation) return 0;
  return (padded - dilation * (kernel - 1) - 1) / stride + 1;
}

// What ATen's isFloatingType accepts (and the stable ABI of TORCH_TARGET_VERSION
// names): the kernels compute the 16- and 8-bit types in float32.
bool is_floating(ScalarType type) {
  switch (type) {
    case ScalarType::Float: case ScalarType::Double: case ScalarType::Half:
    case ScalarType::BFloat16: case ScalarType::Float8_e5m2: case ScalarType::Float8_e4m3fn:
    case ScalarType::Float8_e5m2fnuz: case ScalarType::Float8_e4m3fnuz:
      return true;
    default:
      return false;
  }
}

// A tensor's dtype and device as the C shim codes them: compared without
// converting them (the messages convert them).
int32_t dtype_code(const Tensor& t) {
  int32_t code;
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_dtype(t.get(), &code));
  return code;
}

bool same_device(const Tensor& a, const Tensor& b) {
  int32_t a_type, a_index, b_type, b_index;
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_type(a.get(), &a_type));
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_type(b.get(), &b_type));
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_index(a.get(), &a_index));
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_index(b.get(), &b_index));
  return a_type == b_type && a_index == b_index;
}

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
  const int64_t padded_h = saturating_add(x[2], 2 * padding[0]);
  const int64_t padded_w = saturating_add(x[3], 2 * padding[1]);
  const int64_t values = saturating_mul(
      saturating_add(channels, saturating_mul(groups, saturating_mul(w[2], w[3]))),
      saturating_mul(padded_h, padded_w));
  CHECK_VALUE(values <= kMaxPaddedProblem, op,
              ": the padded problem, (channels + groups * Kh * Kw) * (H + 2 * padding[0]) * "
              "(W + 2 * padding[1]) = (", channels, " + ", groups, " * ", w[2], " * ", w[3],
              ") * (", x[2], " + 2 * ", padding[0], ") * (", x[3], " + 2 * ", padding[1],
              "), must be at most 2^40 values");
  const int64_t out_h = output_size(padded_h, w[2], stride[0], dilation[0]);
  const int64_t out_w = output_size(padded_w, w[3], stride[1], dilation[1]);
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

// Whether `t` is laid out densely with its dimensions in `order` (outermost
// first), as ATen's is_contiguous decides it (size-1 dimensions have any
// stride). Read from the strides: no dispatcher call.
bool dense_in_order(const Tensor& t, std::initializer_list<int64_t> order) {
  const auto sizes = t.sizes(), strides = t.strides();
  if (std::find(sizes.begin(), sizes.end(), 0) != sizes.end()) return true;
  int64_t expected = 1;
  for (auto d = std::rbegin(order); d != std::rend(order); ++d) {
    if (sizes[*d] == 1) continue;
    if (strides[*d] != expected) return false;
    expected *= sizes[*d];
  }
  return true;
}

// Whether an (N, C, H, W) tensor is contiguous in the problem's layout.
bool contiguous(const Tensor& t, bool channels_last) {
  return channels_last ? dense_in_order(t, {0, 2, 3, 1}) : dense_in_order(t, {0, 1, 2, 3});
}

// The kernel as a channels-last 1x1 convolution writes it: (N, Ho, Wo, G, Kh, Kw) in memory
// (and not also contiguous), as _args.is_pixel_major.
bool pixel_major(const Tensor& weight) {
  return weight.dim() == 6 && !dense_in_order(weight, {0, 1, 2, 3, 4, 5}) &&
         dense_in_order(weight, {0, 4, 5, 1, 2, 3});
}

MemoryFormat format(bool channels_last) {
  return channels_last ? MemoryFormat::ChannelsLast : MemoryFormat::Contiguous;
}

// The kernels compute in float32 or float64.
ScalarType compute_type(ScalarType type) {
  return type == ScalarType::Float || type == ScalarType::Double ? type : ScalarType::Float;
}

// `t` of dtype `type` in dtype `to`.
Tensor cast(const Tensor& t, ScalarType type, ScalarType to) {
  return type == to ? t : torch::stable::to(t, to);
}

// An (N, C, H, W) tensor of dtype `type` in the computing dtype and the problem's layout.
Tensor dense(const Tensor& t, ScalarType type, bool channels_last) {
  const Tensor c = cast(t, type, compute_type(type));
  return contiguous(c, channels_last) ? c : torch::stable::contiguous(c, format(channels_last));
}

// The kernel in the computing dtype: pixel-major kept as it is when channels-last.
Tensor kernel_tensor(const Tensor& weight, ScalarType type, bool channels_last) {
  const Tensor w = cast(weight, type, compute_type(type));
  return channels_last || dense_in_order(w, {0, 1, 2, 3, 4, 5}) ? w : torch::stable::contiguous(w);
}

// A new (uninitialized) tensor of `like`'s dtype and device: contiguous, or
// channels-last (4-D), with the strides torch.empty gives. By the C shim's
// empty_strided: torch::stable::empty looks the op up by name in every call,
// which costs a tiny problem more than its arithmetic.
Tensor new_empty(const Ints& sizes, const Tensor& like, bool channels_last = false) {
  const int64_t dims = static_cast<int64_t>(sizes.size());
  Ints strides(sizes.size(), 1);
  if (channels_last) {
    strides = {sizes[2] * sizes[3] * sizes[1], 1, sizes[3] * sizes[1], sizes[1]};
  } else {
    for (int64_t d = dims - 2; d >= 0; --d) {
      strides[d] = strides[d + 1] * std::max<int64_t>(sizes[d + 1], 1);
    }
  }
  int32_t dtype, device_type, device_index;
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_dtype(like.get(), &dtype));
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_type(like.get(), &device_type));
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_index(like.get(), &device_index));
  AtenTensorHandle handle;
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_empty_strided(
      dims, sizes.data(), strides.data(), dtype, device_type, device_index, &handle));
  return Tensor(handle);
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

template <typename T>
const T* data(const Tensor& t) {
  return static_cast<const T*>(t.const_data_ptr());
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

STABLE_TORCH_LIBRARY(mmrednet, m) {
  m.def(MMREDNET_SCHEMA_INVOLUTION);
  m.def(MMREDNET_SCHEMA_INVOLUTION_GRAD_INPUT);
  m.def(MMREDNET_SCHEMA_INVOLUTION_GRAD_WEIGHT);
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
