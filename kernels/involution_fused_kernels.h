// The fused involution CPU kernels, written once and compiled per instruction set.
//
// Included by involution_cpu_{avx512,avx2,baseline}.cpp inside their ISA
// namespace, after involution_cpu_kernels.h (Simd, ceil_div, floor_div).
//
// A task generates the kernel of a tile of output pixels, W = S h + b
// (kernel rows m = g * Kh * Kw + tap), into its scratch, in cache, and uses it
// there: the kernel never exists as a tensor. The span's products go through
// torch's matrix multiply (FusedArgs::matmul, aoti_torch_cpu_addmm_out on
// views of the tiles: single-threaded inside a task): measured on the tile
// shapes, one thread, it runs them 1.3-2.3x faster than a register-blocked
// micro-kernel compiled here (26-109 vs 61-186 GFLOP/s), and the whole op
// 0-13% faster.
// - forward: a tile of output rows (groups [g0, g1) of one sample): kernel
//   tile, then the K*K taps summed into the output rows.
// - grad_input: a band of input rows, written by this task only (the output
//   rows that read them scattered into it in a fixed order: no atomics,
//   deterministic); the kernel of those output rows is generated again, tile
//   by tile (the band's halo costs a fraction of its own rows).
// - grad_span: a tile of output rows: the kernel's gradient
//   dW[m, q] = sum_{c in g} grad_out[c, q] * x[c, q + tap offset] in scratch,
//   then grad_hidden = S^T dW (this tile's pixels), and dW h^T and the row
//   sums of dW added to the task's partial sums of the span weight and bias.
// Two layouts: contiguous (NCHW; tiles are tap-major, [m][pixel], the vectors
// over pixels) and channels-last (kernel tiles pixel-major, [pixel][m], the
// vectors over channels; grad_span's dW is tap-major in both layouts, its
// rows of grad_output and input transposed into the scratch, so that no sum
// runs across the lanes of a vector). Every hot loop keeps a block of up to
// kBlock independent accumulators in registers (output vectors of a pixel,
// columns of a row or taps of a kernel row), and loops without partial
// vectors are compiled apart from those with them.

template <typename T>
struct Fused {
  using S = Simd<T>;
  using V = typename S::Vec;
  static constexpr int L = S::kLanes;

  // The first `n` values at p (n <= L; none when n <= 0), zeros after them.
  static V load_part(const T* p, int64_t n) {
    if (n >= L) return S::load(p);
    V v{};
    if (n > 0) std::memcpy(&v, p, n * sizeof(T));
    return v;
  }

  // The first `n` values at p (none when n <= 0), zeros after them: one full
  // load where a vector from p stays before `end`.
  static V load_upto(const T* p, int64_t n, const T* end) {
    if (n >= L) return S::load(p);
    if (p + L > end) return load_part(p, n);
    return S::lane_index() < static_cast<typename S::Index>(n) ? S::load(p) : V{};
  }

  // Independent accumulators a loop keeps in registers: enough to hide the
  // latency of the fused multiply-adds (one chain of them runs at a quarter
  // of the rate), few enough for 16 registers.
  static constexpr int kBlock = 8;
  // fn(k, std::integral_constant<int, B>) for k = 0, kBlock, 2 * kBlock, ...
  // < count, B = min(kBlock, count - k): the blocks' sizes known at compile
  // time, so that their accumulators stay in registers.
  template <typename Fn>
  static void for_blocks(int64_t count, const Fn& fn) {
    for (int64_t k = 0; k < count; k += kBlock) {
      with_block<kBlock>(std::min<int64_t>(kBlock, count - k), [&](auto b) { fn(k, b); });
    }
  }
  // fn(std::true_type) when `full` (every vector of the loop has L lanes),
  // else fn(std::false_type): a loop without partial vectors compiled apart,
  // its accumulators in registers.
  template <typename Fn>
  static void with_full(bool full, const Fn& fn) {
    if (full) {
      fn(std::true_type{});
    } else {
      fn(std::false_type{});
    }
  }
  template <int B, typename Fn>
  static void with_block(int64_t n, const Fn& fn) {
    if constexpr (B > 1) {
      if (n < B) return with_block<B - 1>(n, fn);
    }
    fn(std::integral_constant<int, B>{});
  }

  // An input row zero padded and split into stride_w phases of `length`
  // values: padded column k (input column k - pad_w) at k % stride_w * length
  // + k / stride_w, so that the taps of a run of output columns read a run of
  // one phase: tap v of column j is phase (v * dilation_w) % stride_w, value
  // j + (v * dilation_w) / stride_w.
  static void fill_phases(const Problem& p, int64_t length, const T* src, T* dst) {
    const int64_t s = p.stride_w;
    std::fill(dst, dst + s * length, T(0));
    if (s == 1) {
      const int64_t count = std::clamp<int64_t>(length - p.pad_w, 0, p.width);
      std::memcpy(dst + p.pad_w, src, count * sizeof(T));
      return;
    }
    PhasedColumns k(p);
    for (int64_t col = 0; col < p.width; ++col, k.next()) {
      if (k.value < length) dst[k.phase * length + k.value] = src[col];
    }
  }
  // The same for the C channels of a channels-last input row: channel c's
  // phases at dst + c * distance.
  static void fill_phases_cl(const Problem& p, int64_t length, const T* src, int64_t distance,
                             T* dst) {
    const int64_t C = p.channels;
    for (int64_t c = 0; c < C; ++c) {
      std::fill(dst + c * distance, dst + c * distance + p.stride_w * length, T(0));
    }
    PhasedColumns k(p);
    for (int64_t col = 0; col < p.width && k.value < length; ++col, k.next()) {
      T* d = dst + k.phase * length + k.value;
      for (int64_t c = 0; c < C; ++c) d[c * distance] = src[col * C + c];
    }
  }
  // Where input column 0, 1, ... goes in a phased row: padded column k =
  // column + pad_w at phase k % stride_w, value k / stride_w (no division in
  // the loop; values grow with the column).
  struct PhasedColumns {
    explicit PhasedColumns(const Problem& p)
        : stride(p.stride_w), phase(p.pad_w % p.stride_w), value(p.pad_w / p.stride_w) {}
    void next() {
      if (++phase == stride) {
        phase = 0;
        ++value;
      }
    }
    int64_t stride, phase, value;
  };
  // Where the tap columns start in a phased row, v = 0, 1, ...: no division
  // in the loops over taps.
  struct PhaseOffsets {
    PhaseOffsets(const Problem& p, int64_t length)
        : length(length), stride(p.stride_w), step_phase(p.dilation_w % p.stride_w),
          step_value(p.dilation_w / p.stride_w) {}
    int64_t offset() const { return phase * length + value; }
    void next() {
      phase += step_phase;
      value += step_value;
      if (phase >= stride) {
        phase -= stride;
        ++value;
      }
    }
    int64_t length, stride, step_phase, step_value, phase = 0, value = 0;
  };
  // Input rows [*first, *last] that output rows [i0, i1) read (clipped to the input).
  static void band_rows(const Problem& p, int64_t i0, int64_t i1, int64_t* first,
                        int64_t* last) {
    *first = std::max<int64_t>(0, i0 * p.stride_h - p.pad_h);
    *last = std::min(p.height - 1,
                     (i1 - 1) * p.stride_h - p.pad_h + (p.kernel_h - 1) * p.dilation_h);
  }

  // The taps [*lo, *hi) of one axis that read inside [0, size) from `start`.
  static void taps_inside(int64_t start, int64_t dilation, int64_t kernel, int64_t size,
                          int64_t* lo, int64_t* hi) {
    *lo = start >= 0 ? 0 : ceil_div(-start, dilation);
    *hi = std::max(*lo, std::min(kernel, floor_div(size - 1 - start, dilation) + 1));
  }

  // The kernel of output rows [i0, i1), groups [g0, g1), of sample n into W:
  // [m][pixel] (NCHW) or [pixel][m] (channels-last), m from g0 * taps.
  static void kernel_tile(const FusedProblem& f, const FusedArgs<T>& a, int64_t n, int64_t g0,
                          int64_t g1, int64_t i0, int64_t i1, T* W) {
    const Problem& p = f.p;
    const int64_t P = (i1 - i0) * p.out_width, M = (g1 - g0) * p.taps(), m0 = g0 * p.taps();
    const int64_t ch = f.hidden;
    if (!p.channels_last) {
      for (int64_t m = 0; m < M; ++m) {
        std::fill(W + m * P, W + (m + 1) * P, f.bias ? a.bias[m0 + m] : T(0));
      }
      a.matmul(M, P, ch, a.span + m0 * ch, ch, 1,
               a.hidden + n * ch * p.out_plane() + i0 * p.out_width, p.out_plane(), 1, W, P,
               true);
    } else {
      for (int64_t q = 0; q < P; ++q) {
        if (f.bias) {
          std::memcpy(W + q * M, a.bias + m0, M * sizeof(T));
        } else {
          std::fill(W + q * M, W + (q + 1) * M, T(0));
        }
      }
      // W = h S^T, S^T a transposed view of the span weight.
      a.matmul(P, M, ch, a.hidden + (n * p.out_plane() + i0 * p.out_width) * ch, ch, 1,
               a.span + m0 * ch, 1, ch, W, M, true);
    }
  }

  static void forward(const FusedProblem& f, const FusedArgs<T>& a, int64_t n, int64_t g0,
                      int64_t g1, int64_t i0, int64_t i1, T* scratch) {
    const Problem& p = f.p;
    T* W = scratch;
    kernel_tile(f, a, n, g0, g1, i0, i1, W);
    const int64_t P = (i1 - i0) * p.out_width, M = (g1 - g0) * p.taps(), C = p.channels;
    const int64_t cg = p.group_channels, kw = p.kernel_w;
    if (!p.channels_last) {
      // Per channel: its input rows in phases, then L output columns at a time
      // summed over the taps in registers.
      const int64_t length = f.phase_length(), row = f.phase_row();
      int64_t first, last;
      band_rows(p, i0, i1, &first, &last);
      T* rows = W + f.kernel_tile_elements();
      for (int64_t c = g0 * cg; c < g1 * cg; ++c) {
        const T* wg = W + (c / cg - g0) * p.taps() * P;
        const T* xc = a.input + (n * C + c) * p.plane();
        for (int64_t y = first; y <= last; ++y) {
          fill_phases(p, length, xc + y * p.width, rows + (y - first) * row);
        }
        for (int64_t i = i0; i < i1; ++i) {
          T* o = a.out + ((n * C + c) * p.out_height + i) * p.out_width;
          const int64_t top = i * p.stride_h - p.pad_h;
          for_blocks(ceil_div(p.out_width, L), [&](int64_t k, auto block) {
            constexpr int B = decltype(block)::value;
            const int64_t j0 = k * L;
            V acc[B] = {};
            for (int64_t u = 0; u < p.kernel_h; ++u) {
              const int64_t y = top + u * p.dilation_h;
              if (y < 0 || y >= p.height) continue;
              const T* x = rows + (y - first) * row + j0;
              const T* w = wg + u * kw * P + (i - i0) * p.out_width + j0;
              PhaseOffsets tap(p, length);
              for (int64_t v = 0; v < kw; ++v, tap.next()) {
                for (int b = 0; b < B; ++b) {
                  acc[b] += S::load(w + v * P + b * L) * S::load(x + tap.offset() + b * L);
                }
              }
            }
            for (int b = 0; b < B; ++b) {
              S::store(o + j0 + b * L, acc[b], std::min<int64_t>(L, p.out_width - j0 - b * L));
            }
          });
        }
      }
      return;
    }
    // Channels-last: per pixel and group, L channels at a time summed over the
    // taps in registers; the taps inside the input are a rectangle [u_lo,
    // u_hi) x [v_lo, v_hi), found once per pixel for all groups.
    const T* x_end = a.input + p.batch * p.plane() * C;
    const int64_t row_step = p.dilation_h * p.width * C, col_step = p.dilation_w * C;
    const int64_t per_group = ceil_div(cg, L);
    const bool full = cg % L == 0;
    for (int64_t q = 0; q < P; ++q) {
      const int64_t i = i0 + q / p.out_width, j = q % p.out_width;
      const int64_t top = i * p.stride_h - p.pad_h, left = j * p.stride_w - p.pad_w;
      int64_t u_lo, u_hi, v_lo, v_hi;
      taps_inside(top, p.dilation_h, p.kernel_h, p.height, &u_lo, &u_hi);
      taps_inside(left, p.dilation_w, kw, p.width, &v_lo, &v_hi);
      T* o = a.out + ((n * p.out_height + i) * p.out_width + j) * C;
      const T* x0 = a.input + ((n * p.height + top + u_lo * p.dilation_h) * p.width + left +
                               v_lo * p.dilation_w) * C;
      // The pixel's vectors k = (g - g0) * per_group + c0 / L, kBlock at a time.
      for_blocks((g1 - g0) * per_group, [&](int64_t k, auto block) {
        constexpr int B = decltype(block)::value;
        const T* w[B];
        int64_t channel[B], lanes[B];
        for (int b = 0; b < B; ++b) {
          const int64_t g = (k + b) / per_group, c0 = (k + b) % per_group * L;
          w[b] = W + q * M + g * p.taps();
          channel[b] = g * cg + c0;  // from group g0's first channel
          lanes[b] = std::min<int64_t>(L, cg - c0);
        }
        with_full(full, [&](auto full_vectors) {
          V acc[B] = {};
          for (int64_t u = u_lo; u < u_hi; ++u) {
            const T* xr = x0 + (u - u_lo) * row_step;
            for (int64_t v = v_lo; v < v_hi; ++v) {
              const T* xp = xr + (v - v_lo) * col_step + (g0 * cg);
              for (int b = 0; b < B; ++b) {
                if constexpr (decltype(full_vectors)::value) {
                  acc[b] += w[b][u * kw + v] * S::load(xp + channel[b]);
                } else {
                  acc[b] += w[b][u * kw + v] * load_upto(xp + channel[b], lanes[b], x_end);
                }
              }
            }
          }
          for (int b = 0; b < B; ++b) S::store(o + g0 * cg + channel[b], acc[b], lanes[b]);
        });
      });
    }
  }

  static void grad_input(const FusedProblem& f, const FusedArgs<T>& a, int64_t n, int64_t g0,
                         int64_t g1, int64_t y0, int64_t y1, T* scratch) {
    const Problem& p = f.p;
    T* W = scratch;
    const int64_t C = p.channels, cg = p.group_channels, kw = p.kernel_w;
    T* gx = a.out;
    // NCHW: each channel's rows [y0, y1) are summed in phased rows (see
    // fill_phases), whole vectors at a time, and written out at the end.
    const int64_t length = f.phase_length(), row = f.phase_row(), band = y1 - y0;
    T* sums = W + f.kernel_tile_elements();
    const T* go_end = a.grad_output + p.batch * C * p.out_plane();
    if (!p.channels_last) {
      std::fill(sums, sums + (g1 - g0) * cg * band * row, T(0));
    } else {
      for (int64_t y = y0; y < y1; ++y) {
        for (int64_t x = 0; x < p.width; ++x) {
          T* px = gx + ((n * p.height + y) * p.width + x) * C;
          std::fill(px + g0 * cg, px + g1 * cg, T(0));
        }
      }
    }
    // The output rows whose taps read input rows [y0, y1).
    const int64_t first = std::max<int64_t>(
        0, ceil_div(y0 + p.pad_h - (p.kernel_h - 1) * p.dilation_h, p.stride_h));
    const int64_t last = std::min(p.out_height, floor_div(y1 - 1 + p.pad_h, p.stride_h) + 1);
    const int64_t rows = f.tile_rows();
    for (int64_t i0 = first; i0 < last; i0 += rows) {
      const int64_t i1 = std::min(last, i0 + rows);
      kernel_tile(f, a, n, g0, g1, i0, i1, W);
      const int64_t P = (i1 - i0) * p.out_width, M = (g1 - g0) * p.taps();
      if (!p.channels_last) {
        // A row's last vector reads past the tile: finite values there.
        std::fill(W + M * P, W + M * P + L, T(0));
        for (int64_t c = g0 * cg; c < g1 * cg; ++c) {
          const T* wg = W + (c / cg - g0) * p.taps() * P;
          T* sums_c = sums + (c - g0 * cg) * band * row;
          for (int64_t i = i0; i < i1; ++i) {
            const T* go = a.grad_output + ((n * C + c) * p.out_height + i) * p.out_width;
            const int64_t top = i * p.stride_h - p.pad_h;
            for (int64_t u = 0; u < p.kernel_h; ++u) {
              const int64_t y = top + u * p.dilation_h;
              if (y < y0 || y >= y1) continue;
              const T* w = wg + u * kw * P + (i - i0) * p.out_width;
              T* dst = sums_c + (y - y0) * row;
              PhaseOffsets tap(p, length);
              for (int64_t v = 0; v < kw; ++v, tap.next()) {
                for (int64_t j0 = 0; j0 < p.out_width; j0 += L) {
                  // Lanes past the row: grad_output zeros, so they add nothing.
                  const V product = S::load(w + v * P + j0) *
                                    load_upto(go + j0, p.out_width - j0, go_end);
                  T* d = dst + tap.offset() + j0;
                  S::store(d, S::load(d) + product);
                }
              }
            }
          }
        }
        continue;
      }
      // Channels-last: per pixel, the rectangle of taps inside the band.
      const int64_t per_group = ceil_div(cg, L);
      const int64_t row_step = p.dilation_h * p.width * C, col_step = p.dilation_w * C;
      for (int64_t q = 0; q < P; ++q) {
        const int64_t i = i0 + q / p.out_width, j = q % p.out_width;
        const int64_t top = i * p.stride_h - p.pad_h, left = j * p.stride_w - p.pad_w;
        int64_t u_lo, u_hi, v_lo, v_hi;
        taps_inside(top - y0, p.dilation_h, p.kernel_h, y1 - y0, &u_lo, &u_hi);
        taps_inside(left, p.dilation_w, kw, p.width, &v_lo, &v_hi);
        if (u_lo >= u_hi || v_lo >= v_hi) continue;
        const T* go = a.grad_output + ((n * p.out_height + i) * p.out_width + j) * C;
        T* x0 = gx + ((n * p.height + top + u_lo * p.dilation_h) * p.width + left +
                      v_lo * p.dilation_w) * C;
        // The pixel's grad_output vectors k = (g - g0) * per_group + c0 / L,
        // kBlock at a time, held in registers over the taps.
        for_blocks((g1 - g0) * per_group, [&](int64_t k, auto block) {
          constexpr int B = decltype(block)::value;
          const T* w[B];
          int64_t channel[B], lanes[B];
          V grad[B];
          for (int b = 0; b < B; ++b) {
            const int64_t g = (k + b) / per_group, c0 = (k + b) % per_group * L;
            w[b] = W + q * M + g * p.taps();
            channel[b] = (g0 + g) * cg + c0;
            lanes[b] = std::min<int64_t>(L, cg - c0);
            grad[b] = load_upto(go + channel[b], lanes[b], go_end);
          }
          with_full(cg % L == 0, [&](auto full_vectors) {
            for (int64_t u = u_lo; u < u_hi; ++u) {
              T* xr = x0 + (u - u_lo) * row_step;
              for (int64_t v = v_lo; v < v_hi; ++v) {
                T* xp = xr + (v - v_lo) * col_step;
                for (int b = 0; b < B; ++b) {
                  T* d = xp + channel[b];
                  if constexpr (decltype(full_vectors)::value) {
                    S::store(d, S::load(d) + w[b][u * kw + v] * grad[b]);
                  } else {
                    S::store(d, load_part(d, lanes[b]) + w[b][u * kw + v] * grad[b], lanes[b]);
                  }
                }
              }
            }
          });
        });
      }
    }
    if (p.channels_last) return;
    for (int64_t c = g0 * cg; c < g1 * cg; ++c) {
      for (int64_t y = y0; y < y1; ++y) {
        const T* src = sums + ((c - g0 * cg) * band + y - y0) * row;
        T* dst = gx + ((n * C + c) * p.height + y) * p.width;
        for (int64_t col = 0; col < p.width; ++col) {  // padded column k = col + pad_w
          const int64_t k = col + p.pad_w, m = k / p.stride_w;
          dst[col] = m < length ? src[k % p.stride_w * length + m] : T(0);
        }
      }
    }
  }

  // x[0] + ... + x[n - 1]: L partial sums (lane l sums x[l], x[l + L], ...),
  // then the lanes and the tail in order.
  static T sum(const T* x, int64_t n) {
    V acc{};
    int64_t k = 0;
    for (; k + L <= n; k += L) acc += S::load(x + k);
    T total = 0;
    for (int l = 0; l < L; ++l) total += acc[l];
    for (; k < n; ++k) total += x[k];
    return total;
  }

  static void grad_span(const FusedProblem& f, const FusedArgs<T>& a, int64_t n, int64_t,
                        int64_t, int64_t i0, int64_t i1, T* scratch) {
    const Problem& p = f.p;
    const int64_t P = (i1 - i0) * p.out_width, M = f.kernel_rows(), ch = f.hidden;
    const int64_t C = p.channels, cg = p.group_channels, kw = p.kernel_w;
    // Both layouts compute dW[m][q] with vectors over a row's pixels: every
    // channel's input rows in phases and grad_output's rows per channel, read
    // in place (NCHW) or transposed into the scratch (channels-last, where
    // vectors over channels would need a sum across lanes per tap).
    T* dW = scratch;
    const int64_t length = f.phase_length(), row = f.phase_row();
    int64_t first, last;
    band_rows(p, i0, i1, &first, &last);
    const int64_t band = last - first + 1;
    T* rows = dW + f.tile_elements();
    const T *go, *go_end;
    int64_t go_channel;  // distance of a channel's rows
    if (!p.channels_last) {
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t y = first; y <= last; ++y) {
          fill_phases(p, length, a.input + ((n * C + c) * p.height + y) * p.width,
                      rows + (c * band + y - first) * row);
        }
      }
      go = a.grad_output + n * C * p.out_plane() + i0 * p.out_width;
      go_channel = p.out_plane();
      go_end = a.grad_output + p.batch * C * p.out_plane();
    } else {
      for (int64_t y = first; y <= last; ++y) {
        fill_phases_cl(p, length, a.input + (n * p.height + y) * p.width * C, band * row,
                       rows + (y - first) * row);
      }
      T* transposed = rows + C * band * row;
      const T* src = a.grad_output + (n * p.out_plane() + i0 * p.out_width) * C;
      for (int64_t q = 0; q < P; ++q) {
        for (int64_t c = 0; c < C; ++c) transposed[c * P + q] = src[q * C + c];
      }
      go = transposed;
      go_channel = P;
      go_end = transposed + C * P;
    }
    // dW per L output columns and kBlock taps of a kernel row at a time, in
    // registers, summed over the group's channels: a grad_output vector is
    // loaded once for the block's taps.
    for (int64_t g = 0; g < p.groups; ++g) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t top = i * p.stride_h - p.pad_h;
        const T* go_row = go + g * cg * go_channel + (i - i0) * p.out_width;
        for (int64_t u = 0; u < p.kernel_h; ++u) {
          const int64_t y = top + u * p.dilation_h;
          T* w = dW + (g * p.taps() + u * kw) * P + (i - i0) * p.out_width;
          if (y < 0 || y >= p.height) {
            for (int64_t v = 0; v < kw; ++v) std::fill(w + v * P, w + v * P + p.out_width, T(0));
            continue;
          }
          const T* x = rows + (g * cg * band + y - first) * row;
          for (int64_t j0 = 0; j0 < p.out_width; j0 += L) {
            const int64_t lanes = std::min<int64_t>(L, p.out_width - j0);
            PhaseOffsets tap(p, length);
            for_blocks(kw, [&](int64_t v0, auto block) {
              constexpr int B = decltype(block)::value;
              int64_t offset[B];
              for (int b = 0; b < B; ++b, tap.next()) offset[b] = tap.offset();
              with_full(lanes == L, [&](auto full_vector) {
                V acc[B] = {};
                for (int64_t c = 0; c < cg; ++c) {
                  const T* gp = go_row + c * go_channel + j0;
                  V grad;
                  if constexpr (decltype(full_vector)::value) {
                    grad = S::load(gp);
                  } else {
                    grad = load_upto(gp, lanes, go_end);
                  }
                  const T* xc = x + c * band * row + j0;
                  for (int b = 0; b < B; ++b) acc[b] += grad * S::load(xc + offset[b]);
                }
                for (int b = 0; b < B; ++b) S::store(w + (v0 + b) * P + j0, acc[b], lanes);
              });
            });
          }
        }
      }
    }
    for (int64_t m = 0; m < M; ++m) a.grad_bias[m] += sum(dW + m * P, P);
    // grad_hidden = S^T dW (this tile's pixels) and the partial grad_span
    // += dW h^T, transposes as strided views.
    if (!p.channels_last) {
      const int64_t offset = n * ch * p.out_plane() + i0 * p.out_width;
      a.matmul(ch, P, M, a.span, 1, ch, dW, P, 1, a.out + offset, p.out_plane(), false);
      a.matmul(M, ch, P, dW, P, 1, a.hidden + offset, 1, p.out_plane(), a.grad_span, ch, true);
    } else {
      const int64_t offset = (n * p.out_plane() + i0 * p.out_width) * ch;
      a.matmul(P, ch, M, dW, 1, P, a.span, ch, 1, a.out + offset, ch, false);
      a.matmul(M, ch, P, dW, P, 1, a.hidden + offset, ch, 1, a.grad_span, ch, true);
    }
  }
};

template <typename T>
constexpr FusedKernels<T> fused_kernels() {
  return {&Fused<T>::forward, &Fused<T>::grad_input, &Fused<T>::grad_span};
}
