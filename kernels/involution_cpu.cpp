// CPU kernels of the involution operator (mmrednet._ext): the torch binding.
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
// (what a channels-last model produces); the Python side picks one.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <string>
#include <vector>

#include "involution_cpu.h"

namespace {

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

// The kernel as a channels-last 1x1 convolution writes it: (N, Ho, Wo, G, Kh, Kw) in memory.
bool pixel_major(const torch::Tensor& weight) {
  return weight.dim() == 6 && weight.permute({0, 4, 5, 1, 2, 3}).is_contiguous();
}

Problem make_problem(const torch::Tensor& input, const torch::Tensor& weight,
                     const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                     const std::vector<int64_t>& dilation, bool channels_last) {
  TORCH_CHECK(input.dim() == 4 && weight.dim() == 6, "involution: expected 4-D input, 6-D weight");
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2,
              "involution: stride, padding and dilation must have two values");
  TORCH_CHECK(weight.device().is_cpu(), "involution: weight must be a CPU tensor");
  TORCH_CHECK(channels_last ? pixel_major(weight) : weight.is_contiguous(),
              "involution: weight must be ", channels_last ? "pixel-major" : "contiguous");
  const int64_t channels = input.size(1), groups = weight.size(1);
  return Problem{input.size(0),  channels,       groups,        channels / groups,
                 input.size(2),  input.size(3),  weight.size(4), weight.size(5),
                 weight.size(2), weight.size(3), stride[0],      stride[1],
                 padding[0],     padding[1],     dilation[0],    dilation[1],
                 channels_last};
}

c10::MemoryFormat format(bool channels_last) {
  return channels_last ? c10::MemoryFormat::ChannelsLast : c10::MemoryFormat::Contiguous;
}

// An (N, C, H, W)-shaped tensor in the problem's layout.
void check_layout(const torch::Tensor& t, const char* name, bool channels_last) {
  TORCH_CHECK(t.device().is_cpu(), "involution: ", name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(format(channels_last)), "involution: ", name, " must be ",
              channels_last ? "channels-last" : "contiguous");
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
// of every (sample, group) block.
template <typename T>
void run(PassId id, const Problem& p, int64_t rows, const T* a, const T* b, T* out,
         const torch::TensorOptions& options) {
  const auto pass = select<T>(p, id);
  // A task's rows belong to one (sample, group) block, or to one sample (all
  // its groups, whose values lie side by side) when channels-last.
  const int64_t blocks = p.channels_last ? p.batch : p.batch * p.groups;
  const int64_t threads = at::get_num_threads();
  if (blocks == 0 || rows == 0) return;
  // Enough tasks to balance the threads; a band re-reads only the few rows
  // its ring buffer needs before its first row.
  const int64_t wanted = std::clamp<int64_t>((4 * threads + blocks - 1) / blocks, 1, rows);
  const int64_t band = (rows + wanted - 1) / wanted, bands = (rows + band - 1) / band;
  const torch::Tensor scratch = torch::empty({threads, pass.scratch_elements}, options);
  T* scratch_data = scratch.data_ptr<T>();
  at::parallel_for(0, blocks * bands, 1, [&](int64_t begin, int64_t end) {
    T* mine = scratch_data + at::get_thread_num() * pass.scratch_elements;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t first = task % bands * band;
      pass.run(p, a, b, out, task / bands, first, std::min(rows, first + band), mine);
    }
  });
}

template <typename Fn>
void dispatch(const torch::Tensor& t, const char* name, Fn&& fn) {
  if (t.scalar_type() == torch::kFloat) {
    fn(float{});
  } else if (t.scalar_type() == torch::kDouble) {
    fn(double{});
  } else {
    TORCH_CHECK(false, "involution: ", name, " must be float32 or float64, got ", t.scalar_type());
  }
}

torch::Tensor forward(torch::Tensor input, torch::Tensor weight, std::vector<int64_t> stride,
                      std::vector<int64_t> padding, std::vector<int64_t> dilation,
                      bool channels_last) {
  const Problem p = make_problem(input, weight, stride, padding, dilation, channels_last);
  check_layout(input, "input", channels_last);
  auto out = torch::empty({p.batch, p.channels, p.out_height, p.out_width},
                          input.options().memory_format(format(channels_last)));
  dispatch(input, "input", [&](auto zero) {
    using T = decltype(zero);
    run<T>(mmrednet_cpu::kForward, p, p.out_height, input.data_ptr<T>(), weight.data_ptr<T>(),
           out.data_ptr<T>(), input.options());
  });
  return out;
}

torch::Tensor grad_input(torch::Tensor grad_output, torch::Tensor input, torch::Tensor weight,
                         std::vector<int64_t> stride, std::vector<int64_t> padding,
                         std::vector<int64_t> dilation, bool channels_last) {
  const Problem p = make_problem(input, weight, stride, padding, dilation, channels_last);
  check_layout(grad_output, "grad_output", channels_last);
  auto grad_in = torch::empty({p.batch, p.channels, p.height, p.width},
                              grad_output.options().memory_format(format(channels_last)));
  dispatch(grad_output, "grad_output", [&](auto zero) {
    using T = decltype(zero);
    run<T>(mmrednet_cpu::kGradInput, p, p.height, grad_output.data_ptr<T>(),
           weight.data_ptr<T>(), grad_in.data_ptr<T>(), grad_output.options());
  });
  return grad_in;
}

torch::Tensor grad_weight(torch::Tensor grad_output, torch::Tensor input, torch::Tensor weight,
                          std::vector<int64_t> stride, std::vector<int64_t> padding,
                          std::vector<int64_t> dilation, bool channels_last) {
  const Problem p = make_problem(input, weight, stride, padding, dilation, channels_last);
  check_layout(grad_output, "grad_output", channels_last);
  check_layout(input, "input", channels_last);
  // In the kernel's layout: pixel-major when channels-last.
  auto grad_w = channels_last
                    ? torch::empty({p.batch, p.out_height, p.out_width, p.groups, p.kernel_h,
                                    p.kernel_w},
                                   grad_output.options())
                          .permute({0, 3, 4, 5, 1, 2})
                    : torch::empty(weight.sizes(), grad_output.options());
  dispatch(grad_output, "grad_output", [&](auto zero) {
    using T = decltype(zero);
    run<T>(mmrednet_cpu::kGradWeight, p, p.out_height, grad_output.data_ptr<T>(),
           input.data_ptr<T>(), grad_w.data_ptr<T>(), grad_output.options());
  });
  return grad_w;
}

std::vector<std::string> isa_names() {
  std::vector<std::string> names;
  for (const Isa* isa : supported_isas()) names.emplace_back(isa->name);
  return names;
}

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

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "involution forward (CPU)");
  m.def("grad_input", &grad_input, "involution gradient w.r.t. the input (CPU)");
  m.def("grad_weight", &grad_weight, "involution gradient w.r.t. the kernel (CPU)");
  m.def("pixel_major", &pixel_major, "whether a kernel is (N, Ho, Wo, G, Kh, Kw) in memory");
  m.def("supported_isas", &isa_names, "instruction sets this CPU runs, widest first");
  m.def("isa", [] { return std::string(current_isa()->name); },
        "instruction set of the kernels in use");
  m.def("set_isa", &set_isa, "use the kernels compiled for one of supported_isas()");
}
