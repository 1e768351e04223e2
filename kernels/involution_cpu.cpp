// CPU kernels of the involution operator (mmrednet._ext).
//
// The op is bound by memory traffic and loop overhead, not arithmetic, so no
// K*K-times unfolded tensor is built. Instead each group's channels are moved
// channels-last ((N, G, H, W, C/G), zero-padded for the input), which turns
// every kernel tap into one short contiguous vector FMA over the channels of a
// group (16 in RedNet): the accumulator stays in registers across all K*K
// taps, each generated kernel value is loaded once per pixel and reused for all
// channels of its group, and there are no bounds checks in the hot loop.
// The layout changes are plain torch copies (parallel, a few % of the time).
// Work is split by output rows (input rows for grad_input, written as a
// gather), so tasks write disjoint memory: no atomics, deterministic results.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>

namespace {

constexpr int64_t kChunk = 16;  // channels handled by one register accumulator

struct Geometry {
  int64_t batch, channels, groups, group_channels, height, width, out_height, out_width;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t padded_height() const { return height + 2 * pad_h; }
  int64_t padded_width() const { return width + 2 * pad_w; }
  int64_t taps() const { return kernel_h * kernel_w; }
  int64_t out_plane() const { return out_height * out_width; }
};

Geometry make_geometry(const torch::Tensor& input, const torch::Tensor& weight,
                       const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                       const std::vector<int64_t>& dilation) {
  TORCH_CHECK(input.dim() == 4 && weight.dim() == 6, "involution: expected 4-D input, 6-D weight");
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2,
              "involution: stride, padding and dilation must have two values");
  const int64_t channels = input.size(1), groups = weight.size(1);
  return Geometry{input.size(0),  channels,       groups,        channels / groups,
                  input.size(2),  input.size(3),  weight.size(4), weight.size(5),
                  weight.size(2), weight.size(3), stride[0],      stride[1],
                  padding[0],     padding[1],     dilation[0],    dilation[1]};
}

// (N, C, H, W) -> (N, G, H, W, C/G): the channels of a group become contiguous.
torch::Tensor group_channels_last(const torch::Tensor& t, const Geometry& g) {
  return t.view({t.size(0), g.groups, g.group_channels, t.size(2), t.size(3)})
      .permute({0, 1, 3, 4, 2})
      .contiguous();
}

// (N, G, H, W, C/G) -> (N, C, H, W), contiguous.
torch::Tensor group_channels_first(const torch::Tensor& t, const Geometry& g) {
  return t.permute({0, 1, 4, 2, 3}).contiguous().view({t.size(0), g.channels, t.size(2), t.size(3)});
}

// Runs body.template operator()<WIDTH>(c0, width) over the channel chunks of a
// group, with WIDTH = kChunk (a compile-time trip count the compiler unrolls
// into registers) for full chunks and 0 (runtime width) for a remainder.
template <typename Body>
inline void for_each_chunk(int64_t group_channels, Body&& body) {
  for (int64_t c0 = 0; c0 < group_channels; c0 += kChunk) {
    const int64_t width = std::min(kChunk, group_channels - c0);
    if (width == kChunk) {
      body.template operator()<kChunk>(c0, width);
    } else {
      body.template operator()<0>(c0, width);
    }
  }
}

template <typename scalar_t>
void forward_kernel(const Geometry& g, const scalar_t* x_padded, const scalar_t* w, scalar_t* out) {
  const int64_t cg = g.group_channels, wp = g.padded_width(), plane = g.out_plane();
  at::parallel_for(0, g.batch * g.groups * g.out_height, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t block = row / g.out_height, i = row % g.out_height;
      const scalar_t* x_block = x_padded + block * g.padded_height() * wp * cg;
      const scalar_t* w_block = w + block * g.taps() * plane;
      scalar_t* out_row = out + (block * g.out_height + i) * g.out_width * cg;
      for_each_chunk(cg, [&]<int64_t WIDTH>(int64_t c0, int64_t width) {
        const int64_t n = WIDTH > 0 ? WIDTH : width;
        for (int64_t j = 0; j < g.out_width; ++j) {
          scalar_t acc[kChunk] = {};
          for (int64_t u = 0; u < g.kernel_h; ++u) {
            const scalar_t* x_tap = x_block +
                ((i * g.stride_h + u * g.dilation_h) * wp + j * g.stride_w) * cg + c0;
            const scalar_t* w_tap = w_block + u * g.kernel_w * plane + i * g.out_width + j;
            for (int64_t v = 0; v < g.kernel_w; ++v) {
              const scalar_t weight = w_tap[v * plane];
              const scalar_t* src = x_tap + v * g.dilation_w * cg;
#pragma omp simd
              for (int64_t c = 0; c < n; ++c) acc[c] += weight * src[c];
            }
          }
          std::copy(acc, acc + n, out_row + j * cg + c0);
        }
      });
    }
  });
}

// Gather form: each input pixel sums over the taps of the outputs that read it.
template <typename scalar_t>
void grad_input_kernel(const Geometry& g, const scalar_t* grad_out, const scalar_t* w,
                       scalar_t* grad_in) {
  const int64_t cg = g.group_channels, plane = g.out_plane();
  at::parallel_for(0, g.batch * g.groups * g.height, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t block = row / g.height, y = row % g.height;
      const scalar_t* go_block = grad_out + block * plane * cg;
      const scalar_t* w_block = w + block * g.taps() * plane;
      scalar_t* gi_row = grad_in + (block * g.height + y) * g.width * cg;
      for_each_chunk(cg, [&]<int64_t WIDTH>(int64_t c0, int64_t width) {
        const int64_t n = WIDTH > 0 ? WIDTH : width;
        for (int64_t x = 0; x < g.width; ++x) {
          scalar_t acc[kChunk] = {};
          for (int64_t u = 0; u < g.kernel_h; ++u) {
            const int64_t ti = y + g.pad_h - u * g.dilation_h;  // = i * stride_h
            if (ti < 0) break;  // and for every later u
            if (ti % g.stride_h || ti / g.stride_h >= g.out_height) continue;
            const int64_t i = ti / g.stride_h;
            for (int64_t v = 0; v < g.kernel_w; ++v) {
              const int64_t tj = x + g.pad_w - v * g.dilation_w;
              if (tj < 0) break;
              if (tj % g.stride_w || tj / g.stride_w >= g.out_width) continue;
              const int64_t j = tj / g.stride_w;
              const scalar_t weight = w_block[(u * g.kernel_w + v) * plane + i * g.out_width + j];
              const scalar_t* src = go_block + (i * g.out_width + j) * cg + c0;
#pragma omp simd
              for (int64_t c = 0; c < n; ++c) acc[c] += weight * src[c];
            }
          }
          std::copy(acc, acc + n, gi_row + x * cg + c0);
        }
      });
    }
  });
}

template <typename scalar_t>
void grad_weight_kernel(const Geometry& g, const scalar_t* grad_out, const scalar_t* x_padded,
                        scalar_t* grad_w) {
  const int64_t cg = g.group_channels, wp = g.padded_width(), plane = g.out_plane();
  at::parallel_for(0, g.batch * g.groups * g.out_height, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t block = row / g.out_height, i = row % g.out_height;
      const scalar_t* x_block = x_padded + block * g.padded_height() * wp * cg;
      const scalar_t* go_row = grad_out + (block * g.out_height + i) * g.out_width * cg;
      scalar_t* gw_block = grad_w + block * g.taps() * plane + i * g.out_width;
      for (int64_t j = 0; j < g.out_width; ++j) {
        const scalar_t* go = go_row + j * cg;
        for (int64_t u = 0; u < g.kernel_h; ++u) {
          const scalar_t* x_tap =
              x_block + ((i * g.stride_h + u * g.dilation_h) * wp + j * g.stride_w) * cg;
          for (int64_t v = 0; v < g.kernel_w; ++v) {
            const scalar_t* src = x_tap + v * g.dilation_w * cg;
            scalar_t sum = 0;
#pragma omp simd reduction(+ : sum)
            for (int64_t c = 0; c < cg; ++c) sum += go[c] * src[c];
            gw_block[(u * g.kernel_w + v) * plane + j] = sum;
          }
        }
      }
    }
  });
}

void check_cpu(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "involution: ", name, " must be a CPU tensor");
}

torch::Tensor padded_group_channels_last(const torch::Tensor& input, const Geometry& g) {
  return group_channels_last(at::constant_pad_nd(input, {g.pad_w, g.pad_w, g.pad_h, g.pad_h}), g);
}

torch::Tensor forward(torch::Tensor input, torch::Tensor weight, std::vector<int64_t> stride,
                      std::vector<int64_t> padding, std::vector<int64_t> dilation) {
  check_cpu(input, "input");
  check_cpu(weight, "weight");
  const Geometry g = make_geometry(input, weight, stride, padding, dilation);
  const auto x_padded = padded_group_channels_last(input, g);
  const auto w = weight.contiguous();
  auto out = torch::empty({g.batch, g.groups, g.out_height, g.out_width, g.group_channels},
                          input.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "involution_forward_cpu", [&] {
    forward_kernel<scalar_t>(g, x_padded.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                             out.data_ptr<scalar_t>());
  });
  return group_channels_first(out, g);
}

torch::Tensor grad_input(torch::Tensor grad_output, torch::Tensor input, torch::Tensor weight,
                         std::vector<int64_t> stride, std::vector<int64_t> padding,
                         std::vector<int64_t> dilation) {
  check_cpu(grad_output, "grad_output");
  check_cpu(weight, "weight");
  const Geometry g = make_geometry(input, weight, stride, padding, dilation);
  const auto go = group_channels_last(grad_output, g);
  const auto w = weight.contiguous();
  auto grad_in = torch::empty({g.batch, g.groups, g.height, g.width, g.group_channels},
                              grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "involution_grad_input_cpu", [&] {
    grad_input_kernel<scalar_t>(g, go.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                                grad_in.data_ptr<scalar_t>());
  });
  return group_channels_first(grad_in, g);
}

torch::Tensor grad_weight(torch::Tensor grad_output, torch::Tensor input, torch::Tensor weight,
                          std::vector<int64_t> stride, std::vector<int64_t> padding,
                          std::vector<int64_t> dilation) {
  check_cpu(grad_output, "grad_output");
  check_cpu(input, "input");
  const Geometry g = make_geometry(input, weight, stride, padding, dilation);
  const auto go = group_channels_last(grad_output, g);
  const auto x_padded = padded_group_channels_last(input, g);
  auto grad_w = torch::empty(weight.sizes(), grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "involution_grad_weight_cpu", [&] {
    grad_weight_kernel<scalar_t>(g, go.data_ptr<scalar_t>(), x_padded.data_ptr<scalar_t>(),
                                 grad_w.data_ptr<scalar_t>());
  });
  return grad_w;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "involution forward (CPU)");
  m.def("grad_input", &grad_input, "involution gradient w.r.t. the input (CPU)");
  m.def("grad_weight", &grad_weight, "involution gradient w.r.t. the kernel (CPU)");
}
