// What the bindings of the op library share (involution_cpu.cpp,
// involution_fused_cpu.cpp): argument checks with ATen-like messages, tensor
// layout tests and allocation, all on torch's stable ABI.
#pragma once

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
#include <vector>

namespace mmrednet_cpu::binding {

using torch::headeronly::MemoryFormat;
using torch::headeronly::ScalarType;
using torch::stable::Tensor;
using Ints = std::vector<int64_t>;

// Messages as ATen's checks wrote them: lists as [a, b], dtypes by their ATen
// names, devices as cpu or cuda:0.
struct List {
  torch::headeronly::IntHeaderOnlyArrayRef values;
};

inline std::ostream& operator<<(std::ostream& out, List list) {
  out << '[';
  for (size_t i = 0; i < list.values.size(); ++i) out << (i ? ", " : "") << list.values[i];
  return out << ']';
}

inline List list(const Ints& values) { return {values}; }
inline List list(const Tensor& t, int64_t first, int64_t count) {
  return {t.sizes().slice(first, count)};
}
inline List shape(const Tensor& t) { return {t.sizes()}; }

inline std::ostream& operator<<(std::ostream& out, const torch::stable::Device& device) {
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

// A bad argument: std::invalid_argument (ValueError in Python), the message's
// parts evaluated only then (as TORCH_CHECK_VALUE).
#define MMREDNET_CHECK_VALUE(condition, ...)                                           \
  do {                                                                                 \
    if (!(condition)) throw std::invalid_argument(::mmrednet_cpu::binding::message(__VA_ARGS__)); \
  } while (false)

// Bounds: a stride, padding or dilation value fits 32 bits (the CUDA kernels'
// coordinates), and the padded problem, (C + G * Kh * Kw) * (H + 2 * pad_h) *
// (W + 2 * pad_w) values, at most 2^40: every scratch size and index of the
// kernels is a small multiple of it (rows and columns of a pass's window span
// the padded input at most, see make_problem's stride), so none wraps in 64
// bits. Those are computed with saturating arithmetic, before any other
// product of the geometry.
constexpr int64_t kMaxGeometry = 2147483647;           // 2^31 - 1
constexpr int64_t kMaxPaddedProblem = int64_t{1} << 40;

// a + b and a * b for a, b >= 0, INT64_MAX where they overflow.
inline int64_t saturating_add(int64_t a, int64_t b) {
  int64_t sum;
  return __builtin_add_overflow(a, b, &sum) ? INT64_MAX : sum;
}
inline int64_t saturating_mul(int64_t a, int64_t b) {
  int64_t product;
  return __builtin_mul_overflow(a, b, &product) ? INT64_MAX : product;
}

inline void check_pair(const char* op, const char* name, const Ints& values, int64_t minimum) {
  MMREDNET_CHECK_VALUE(values.size() == 2, op, ": ", name, " must be 2 ints, got ",
                       list(values));
  MMREDNET_CHECK_VALUE(values[0] >= minimum && values[1] >= minimum, op, ": ", name,
                       " must be >= ", minimum, ", got ", list(values));
  MMREDNET_CHECK_VALUE(values[0] <= kMaxGeometry && values[1] <= kMaxGeometry, op, ": ", name,
                       " must be <= ", kMaxGeometry, " (2^31 - 1), got ", list(values));
}

// The padded problem of `channels` channels, `groups` groups of a kernel
// `kernel` (Kh, Kw) on an input `size` (H, W) with `padding`: at most
// kMaxPaddedProblem values. Returns the padded input (H, W).
inline Ints check_padded_problem(const char* op, int64_t channels, int64_t groups,
                                 const Ints& kernel, const Ints& size, const Ints& padding) {
  const Ints padded{saturating_add(size[0], 2 * padding[0]),
                    saturating_add(size[1], 2 * padding[1])};
  const int64_t values = saturating_mul(
      saturating_add(channels, saturating_mul(groups, saturating_mul(kernel[0], kernel[1]))),
      saturating_mul(padded[0], padded[1]));
  MMREDNET_CHECK_VALUE(values <= kMaxPaddedProblem, op,
                       ": the padded problem, (channels + groups * Kh * Kw) * "
                       "(H + 2 * padding[0]) * (W + 2 * padding[1]) = (", channels, " + ",
                       groups, " * ", kernel[0], " * ", kernel[1], ") * (", size[0], " + 2 * ",
                       padding[0], ") * (", size[1], " + 2 * ", padding[1],
                       "), must be at most 2^40 values");
  return padded;
}

// Length of one output axis, as for a convolution with the same geometry; 0
// where the input is too small. `padded` (the padded input length) is at most
// kMaxPaddedProblem, so nothing overflows: the kernel span dilation * (kernel - 1)
// is compared by division first.
inline int64_t output_size(int64_t padded, int64_t kernel, int64_t stride, int64_t dilation) {
  if (kernel - 1 > (padded - 1) / dilation) return 0;
  return (padded - dilation * (kernel - 1) - 1) / stride + 1;
}

// What ATen's isFloatingType accepts (and the stable ABI of TORCH_TARGET_VERSION
// names): the kernels compute the 16- and 8-bit types in float32.
inline bool is_floating(ScalarType type) {
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
inline int32_t dtype_code(const Tensor& t) {
  int32_t code;
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_dtype(t.get(), &code));
  return code;
}

inline bool same_device(const Tensor& a, const Tensor& b) {
  int32_t a_type, a_index, b_type, b_index;
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_type(a.get(), &a_type));
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_type(b.get(), &b_type));
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_index(a.get(), &a_index));
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_index(b.get(), &b_index));
  return a_type == b_type && a_index == b_index;
}

// `name` (a tensor) is on `input`'s device, in its dtype.
inline void check_like_input(const char* op, const char* name, const Tensor& t,
                             const Tensor& input) {
  MMREDNET_CHECK_VALUE(same_device(t, input), op, ": ", name, " is on ", t.device(),
                       " but input is on ", input.device(), "; both must be on the same device");
  MMREDNET_CHECK_VALUE(dtype_code(t) == dtype_code(input), op, ": ", name, " dtype ",
                       t.scalar_type(), " must equal input dtype ", input.scalar_type());
}

// Whether `t` is laid out densely with its dimensions in `order` (outermost
// first), as ATen's is_contiguous decides it (size-1 dimensions have any
// stride). Read from the strides: no dispatcher call.
inline bool dense_in_order(const Tensor& t, std::initializer_list<int64_t> order) {
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
inline bool contiguous(const Tensor& t, bool channels_last) {
  return channels_last ? dense_in_order(t, {0, 2, 3, 1}) : dense_in_order(t, {0, 1, 2, 3});
}

inline MemoryFormat format(bool channels_last) {
  return channels_last ? MemoryFormat::ChannelsLast : MemoryFormat::Contiguous;
}

// The kernels compute in float32 or float64.
inline ScalarType compute_type(ScalarType type) {
  return type == ScalarType::Float || type == ScalarType::Double ? type : ScalarType::Float;
}

// `t` of dtype `type` in dtype `to`.
inline Tensor cast(const Tensor& t, ScalarType type, ScalarType to) {
  return type == to ? t : torch::stable::to(t, to);
}

// An (N, C, H, W) tensor of dtype `type` in the computing dtype and the problem's layout.
inline Tensor dense(const Tensor& t, ScalarType type, bool channels_last) {
  const Tensor c = cast(t, type, compute_type(type));
  return contiguous(c, channels_last) ? c : torch::stable::contiguous(c, format(channels_last));
}

// A new (uninitialized) tensor of `like`'s dtype and device: contiguous, or
// channels-last (4-D), with the strides torch.empty gives. By the C shim's
// empty_strided: torch::stable::empty looks the op up by name in every call,
// which costs a tiny problem more than its arithmetic.
inline Tensor new_empty(const Ints& sizes, const Tensor& like, bool channels_last = false) {
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

template <typename T>
const T* data(const Tensor& t) {
  return static_cast<const T*>(t.const_data_ptr());
}

}  // namespace mmrednet_cpu::binding
