// CPU kernels of the involution operator (mmrednet._ext).
//
// The op is bound by memory traffic, not arithmetic, so no K*K-times unfolded
// tensor is built: every task owns one output plane (or one kernel block for
// grad_weight), keeps it in cache, and walks the K*K taps over it row by row.
// The valid column range of each tap is computed up front, so the inner loops
// are branch-free and contiguous (for stride 1) and the compiler vectorizes them.
// Tasks write disjoint memory, so the results are deterministic.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>

namespace {

struct Geometry {
  int64_t batch, channels, groups, height, width, out_height, out_width;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
};

// Output indices [lo, hi) whose tap at offset `offset` lands inside [0, in_size).
inline void valid_range(int64_t offset, int64_t stride, int64_t in_size, int64_t out_size,
                        int64_t* lo, int64_t* hi) {
  *lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  const int64_t last = in_size - 1 - offset;
  *hi = last < 0 ? 0 : std::min(out_size, last / stride + 1);
  *hi = std::max(*hi, *lo);
}

// Calls body(tap, u_offset_rows [i0,i1), cols [j0,j1), row_offset, col_offset) for each tap.
template <typename Body>
inline void for_each_tap(const Geometry& g, Body body) {
  for (int64_t u = 0; u < g.kernel_h; ++u) {
    const int64_t row_offset = u * g.dilation_h - g.pad_h;
    int64_t i0, i1;
    valid_range(row_offset, g.stride_h, g.height, g.out_height, &i0, &i1);
    for (int64_t v = 0; v < g.kernel_w; ++v) {
      const int64_t col_offset = v * g.dilation_w - g.pad_w;
      int64_t j0, j1;
      valid_range(col_offset, g.stride_w, g.width, g.out_width, &j0, &j1);
      body(u * g.kernel_w + v, i0, i1, j0, j1, row_offset, col_offset);
    }
  }
}

Geometry make_geometry(const torch::Tensor& input, const torch::Tensor& weight,
                       std::vector<int64_t> stride, std::vector<int64_t> padding,
                       std::vector<int64_t> dilation) {
  TORCH_CHECK(input.dim() == 4 && weight.dim() == 6, "involution: expected 4-D input, 6-D weight");
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2,
              "involution: stride, padding and dilation must have two values");
  return Geometry{input.size(0),  input.size(1),  weight.size(1), input.size(2), input.size(3),
                  weight.size(4), weight.size(5), weight.size(2), weight.size(3), stride[0],
                  stride[1],      padding[0],     padding[1],     dilation[0],   dilation[1]};
}

template <typename scalar_t>
void forward_kernel(const Geometry& g, const scalar_t* x, const scalar_t* w, scalar_t* out) {
  const int64_t in_plane = g.height * g.width, out_plane = g.out_height * g.out_width;
  const int64_t taps = g.kernel_h * g.kernel_w, group_channels = g.channels / g.groups;
  at::parallel_for(0, g.batch * g.channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t n = plane / g.channels, group = (plane % g.channels) / group_channels;
      const scalar_t* x_plane = x + plane * in_plane;
      const scalar_t* w_block = w + (n * g.groups + group) * taps * out_plane;
      scalar_t* out_plane_ptr = out + plane * out_plane;
      std::fill(out_plane_ptr, out_plane_ptr + out_plane, scalar_t(0));
      for_each_tap(g, [&](int64_t tap, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                          int64_t row_offset, int64_t col_offset) {
        for (int64_t i = i0; i < i1; ++i) {
          const scalar_t* x_row = x_plane + (i * g.stride_h + row_offset) * g.width + col_offset;
          const scalar_t* w_row = w_block + tap * out_plane + i * g.out_width;
          scalar_t* o_row = out_plane_ptr + i * g.out_width;
          if (g.stride_w == 1) {
#pragma omp simd
            for (int64_t j = j0; j < j1; ++j) o_row[j] += w_row[j] * x_row[j];
          } else {
            for (int64_t j = j0; j < j1; ++j) o_row[j] += w_row[j] * x_row[j * g.stride_w];
          }
        }
      });
    }
  });
}

template <typename scalar_t>
void grad_input_kernel(const Geometry& g, const scalar_t* grad_out, const scalar_t* w,
                       scalar_t* grad_in) {
  const int64_t in_plane = g.height * g.width, out_plane = g.out_height * g.out_width;
  const int64_t taps = g.kernel_h * g.kernel_w, group_channels = g.channels / g.groups;
  at::parallel_for(0, g.batch * g.channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t n = plane / g.channels, group = (plane % g.channels) / group_channels;
      const scalar_t* go_plane = grad_out + plane * out_plane;
      const scalar_t* w_block = w + (n * g.groups + group) * taps * out_plane;
      scalar_t* gi_plane = grad_in + plane * in_plane;
      std::fill(gi_plane, gi_plane + in_plane, scalar_t(0));
      for_each_tap(g, [&](int64_t tap, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                          int64_t row_offset, int64_t col_offset) {
        for (int64_t i = i0; i < i1; ++i) {
          scalar_t* gi_row = gi_plane + (i * g.stride_h + row_offset) * g.width + col_offset;
          const scalar_t* w_row = w_block + tap * out_plane + i * g.out_width;
          const scalar_t* go_row = go_plane + i * g.out_width;
          if (g.stride_w == 1) {
#pragma omp simd
            for (int64_t j = j0; j < j1; ++j) gi_row[j] += w_row[j] * go_row[j];
          } else {
            for (int64_t j = j0; j < j1; ++j) gi_row[j * g.stride_w] += w_row[j] * go_row[j];
          }
        }
      });
    }
  });
}

template <typename scalar_t>
void grad_weight_kernel(const Geometry& g, const scalar_t* grad_out, const scalar_t* x,
                        scalar_t* grad_w) {
  const int64_t in_plane = g.height * g.width, out_plane = g.out_height * g.out_width;
  const int64_t taps = g.kernel_h * g.kernel_w, group_channels = g.channels / g.groups;
  at::parallel_for(0, g.batch * g.groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      const int64_t n = block / g.groups, group = block % g.groups;
      scalar_t* gw_block = grad_w + block * taps * out_plane;
      std::fill(gw_block, gw_block + taps * out_plane, scalar_t(0));
      for (int64_t c = 0; c < group_channels; ++c) {
        const int64_t plane = n * g.channels + group * group_channels + c;
        const scalar_t* x_plane = x + plane * in_plane;
        const scalar_t* go_plane = grad_out + plane * out_plane;
        for_each_tap(g, [&](int64_t tap, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                            int64_t row_offset, int64_t col_offset) {
          for (int64_t i = i0; i < i1; ++i) {
            const scalar_t* x_row = x_plane + (i * g.stride_h + row_offset) * g.width + col_offset;
            const scalar_t* go_row = go_plane + i * g.out_width;
            scalar_t* gw_row = gw_block + tap * out_plane + i * g.out_width;
            if (g.stride_w == 1) {
#pragma omp simd
              for (int64_t j = j0; j < j1; ++j) gw_row[j] += go_row[j] * x_row[j];
            } else {
              for (int64_t j = j0; j < j1; ++j) gw_row[j] += go_row[j] * x_row[j * g.stride_w];
            }
          }
        });
      }
    }
  });
}

void check_cpu_contiguous(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), "involution: ", name,
              " must be a contiguous CPU tensor");
}

torch::Tensor forward(torch::Tensor input, torch::Tensor weight, std::vector<int64_t> stride,
                      std::vector<int64_t> padding, std::vector<int64_t> dilation) {
  check_cpu_contiguous(input, "input");
  check_cpu_contiguous(weight, "weight");
  const Geometry g = make_geometry(input, weight, stride, padding, dilation);
  auto out = torch::empty({g.batch, g.channels, g.out_height, g.out_width}, input.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "involution_forward_cpu", [&] {
    forward_kernel<scalar_t>(g, input.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(),
                             out.data_ptr<scalar_t>());
  });
  return out;
}

torch::Tensor grad_input(torch::Tensor grad_output, torch::Tensor input, torch::Tensor weight,
                         std::vector<int64_t> stride, std::vector<int64_t> padding,
                         std::vector<int64_t> dilation) {
  check_cpu_contiguous(grad_output, "grad_output");
  check_cpu_contiguous(weight, "weight");
  const Geometry g = make_geometry(input, weight, stride, padding, dilation);
  auto grad_in = torch::empty(input.sizes(), grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "involution_grad_input_cpu", [&] {
    grad_input_kernel<scalar_t>(g, grad_output.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(),
                                grad_in.data_ptr<scalar_t>());
  });
  return grad_in;
}

torch::Tensor grad_weight(torch::Tensor grad_output, torch::Tensor input, torch::Tensor weight,
                          std::vector<int64_t> stride, std::vector<int64_t> padding,
                          std::vector<int64_t> dilation) {
  check_cpu_contiguous(grad_output, "grad_output");
  check_cpu_contiguous(input, "input");
  const Geometry g = make_geometry(input, weight, stride, padding, dilation);
  auto grad_w = torch::empty(weight.sizes(), grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "involution_grad_weight_cpu", [&] {
    grad_weight_kernel<scalar_t>(g, grad_output.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(),
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
