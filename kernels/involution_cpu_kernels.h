// The involution CPU kernels, written once and compiled per instruction set.
//
// Included by involution_cpu_{avx512,avx2,baseline}.cpp inside a namespace of
// their own, after the standard headers (<algorithm>, <cstdint>, <cstring>,
// <type_traits>, <utility>) and after the pragma that selects the instruction
// set. They define MMREDNET_VECTOR_BYTES (register width), MMREDNET_PIXEL_BLOCK
// (output pixels accumulated at once) and MMREDNET_WEIGHT_ROWS (output rows
// grad_weight computes at once), both bounded by the register count.
//
// The op moves about 5 bytes per multiply-add (the generated kernel is read
// once and used for the 16 channels of its group), so it is bound by memory
// traffic; the kernels aim at one pass over each tensor, with compute fast
// enough to hide behind it:
// - A task is a band of rows of one (sample, group) block. The rows of the
//   input it reads pass through small ring buffers (a kernel's height of rows)
//   that stay in cache, zero padded so that the hot loops have no bounds checks.
//   The generated kernel (N, G, Kh, Kw, Ho, Wo), the biggest tensor, is read
//   (and its gradient written) through a band buffer, a band of rows tap by tap,
//   so that memory sees long sequential runs; the NCHW tensors are read and
//   written in place, whole rows at a time.
// - forward and grad_input put the group's channels in the vector lanes (the
//   ring holds rows transposed to pixel-major order): each multiply-add takes
//   one kernel value, broadcast, and one aligned vector of channels, and the
//   accumulators of a block of pixels stay in registers across all taps. The
//   results are transposed back to NCHW rows through a staging row.
// - grad_weight sums over the channels, so it puts output columns in the lanes:
//   for a block of columns, one accumulator per tap of a kernel row and per
//   output row (two rows share each input row they both read); each tap's
//   shifted input comes from two aligned loads and a lane shift when the
//   geometry is known at compile time.
// - grad_input is a gather (each input pixel sums the outputs that read it),
//   so tasks write disjoint rows: no atomics, and the result does not depend
//   on the number of threads.

template <typename T>
struct Simd {
  static constexpr int kBytes = MMREDNET_VECTOR_BYTES;
  static constexpr int kLanes = kBytes / sizeof(T);
  // Elements that keep a buffer start aligned to a cache line and a vector.
  static constexpr int64_t kAlign = (kBytes > 64 ? kBytes : 64) / sizeof(T);
  typedef T Vec __attribute__((vector_size(kBytes)));
  using Index = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  typedef Index Mask __attribute__((vector_size(kBytes)));

  static Vec load(const T* p) {
    Vec v;
    std::memcpy(&v, p, sizeof(Vec));
    return v;
  }
  static void store(T* p, const Vec& v) { std::memcpy(p, &v, sizeof(Vec)); }
  // The first `lanes` lanes of v: a spill and a few fixed-size copies.
  static void store(T* p, const Vec& v, int64_t lanes) {
    if (lanes == kLanes) {
      store(p, v);
    } else {
      T lane[kLanes];
      std::memcpy(lane, &v, sizeof(Vec));
      store_lanes<kLanes / 2>(p, lane, lanes);
    }
  }
  template <int N>
  static void store_lanes(T* p, const T* lane, int64_t lanes) {
    if (lanes & N) {
      std::memcpy(p, lane, N * sizeof(T));
      p += N;
      lane += N;
    }
    if constexpr (N > 1) store_lanes<N / 2>(p, lane, lanes);
  }

  template <typename F, size_t... I>
  static constexpr Mask make_mask(F f, std::index_sequence<I...>) {
    return Mask{static_cast<Index>(f(static_cast<int>(I)))...};
  }
  static Mask lane_index() {
    return make_mask([](int l) { return l; }, std::make_index_sequence<kLanes>());
  }
  // Lanes S .. S + kLanes - 1 of the concatenation lo:hi.
  template <int S>
  static Vec shifted(const Vec& lo, const Vec& hi) {
    if constexpr (S == 0) {
      return lo;
    } else {
      constexpr Mask mask =
          make_mask([](int l) { return S + l; }, std::make_index_sequence<kLanes>());
      return __builtin_shuffle(lo, hi, mask);
    }
  }
  // One stage of the recursive transpose: swaps the off-diagonal H x H blocks.
  template <int H>
  static void transpose_stage(Vec* rows) {
    constexpr Mask first = make_mask([](int l) { return l & H ? kLanes + l - H : l; },
                                     std::make_index_sequence<kLanes>());
    constexpr Mask second = make_mask([](int l) { return l & H ? kLanes + l : l + H; },
                                      std::make_index_sequence<kLanes>());
    for (int i = 0; i < kLanes; ++i) {
      if (!(i & H)) {
        const Vec a = rows[i], b = rows[i + H];
        rows[i] = __builtin_shuffle(a, b, first);
        rows[i + H] = __builtin_shuffle(a, b, second);
      }
    }
    if constexpr (H > 1) transpose_stage<H / 2>(rows);
  }
  // In-register transpose of a kLanes x kLanes tile.
  static void transpose(Vec* rows) { transpose_stage<kLanes / 2>(rows); }
};

inline int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -(-a / b); }
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// The generated kernel (and its gradient) is read (written) through a band
// buffer of this size, a band of rows copied tap by tap: memory then sees a
// few dozen long sequential runs instead of one short run per tap and row,
// which the hardware prefetchers cannot follow (measured: ~15% faster forward).
constexpr int64_t kBandBytes = 1 << 20;

// Rows of a band of the kernel tensor of one block, at most kBandBytes, a
// multiple of `multiple`.
inline int64_t kernel_band_rows(const Problem& p, int64_t element_size, int64_t multiple) {
  const int64_t rows = kBandBytes / (p.taps() * p.out_width * element_size);
  return std::clamp<int64_t>(rows / multiple * multiple, multiple, round_up(p.out_height, multiple));
}

// Writes a row of `width` values (a multiple of the vector length): zeros, and
// src[0 .. count) from value `left` on; whole vectors only (the last source
// vector with its lanes past `count` zeroed), reading past the source row where
// that stays before `src_end`.
template <typename T>
inline void copy_padded_row(T* dst, int64_t width, int64_t left, const T* src, int64_t count,
                            const T* src_end) {
  using S = Simd<T>;
  constexpr int L = S::kLanes;
  for (int64_t q = 0; q < width; q += L) S::store(dst + q, typename S::Vec{});
  count = std::min(count, width - left);
  for (int64_t k = 0; k < count; k += L) {
    const int64_t n = std::min<int64_t>(L, count - k);
    if (src + k + L > src_end) {
      std::memcpy(dst + left + k, src + k, n * sizeof(T));
      continue;
    }
    typename S::Vec v = S::load(src + k);
    if (n < L) v = S::lane_index() < static_cast<typename S::Index>(n) ? v : typename S::Vec{};
    S::store(dst + left + k, v, left + k + L <= width ? L : n);
  }
}

// Transposes a kLanes x kLanes tile: source rows k < rows (src + k * src_stride,
// kLanes values each; zero for k >= rows) become vectors k < cols of dst
// (dst + k * dst_stride), of which lanes [0, lanes) are stored. A source row
// may be read past its valid values, but never past `src_end`.
template <typename T>
inline void transpose_tile(const T* src, int64_t src_stride, int64_t rows, T* dst,
                           int64_t dst_stride, int64_t cols, int64_t lanes, const T* src_end) {
  using S = Simd<T>;
  constexpr int L = S::kLanes;
  typename S::Vec tile[L];
  if (rows == L && src + (L - 1) * src_stride + L <= src_end) {
#pragma GCC unroll 64
    for (int k = 0; k < L; ++k) tile[k] = S::load(src + k * src_stride);
  } else {
    for (int k = 0; k < L; ++k) {
      tile[k] = typename S::Vec{};
      const T* row = src + k * src_stride;
      if (k >= rows) continue;
      if (row + L <= src_end) {
        tile[k] = S::load(row);
      } else {
        for (int64_t l = 0; l < std::min<int64_t>(L, src_end - row); ++l) tile[k][l] = row[l];
      }
    }
  }
  S::transpose(tile);
  for (int64_t k = 0; k < cols; ++k) S::store(dst + k * dst_stride, tile[k], lanes);
}

// NCHW input rows of one group's channels, transposed to pixel-major order, in
// a ring of `slots` rows. Pixel q of row r holds source column q - left of row
// r, as `vectors` vectors of channels (lanes beyond `channels` and pixels
// outside the source are zero); rows must be filled in ascending order.
template <typename T>
struct PixelRing {
  static constexpr int L = Simd<T>::kLanes;

  static int64_t vectors_for(int64_t channels) { return ceil_div(channels, L); }
  static int64_t elements(int64_t slots, int64_t width, int64_t channels) {
    return slots * width * vectors_for(channels) * L;
  }

  PixelRing(const T* src, const T* src_end, int64_t channels, int64_t height, int64_t width,
            int64_t left, int64_t ring_width, int64_t slots, T* data)
      : src(src), src_end(src_end), channels(channels), src_height(height), src_width(width),
        left(left), width(ring_width), slots(slots), vectors(vectors_for(channels)),
        pixel(vectors * L), data(data) {}

  const T* row(int64_t r) const { return data + (r % slots) * width * pixel; }

  void fill(int64_t first, int64_t last) {
    for (next = std::max(next, first); next <= last; ++next) {
      T* dst = data + (next % slots) * width * pixel;
      const int64_t begin = std::clamp<int64_t>(left, 0, width);
      const int64_t end = std::clamp<int64_t>(left + src_width, 0, width);
      std::fill(dst, dst + begin * pixel, T(0));
      std::fill(dst + end * pixel, dst + width * pixel, T(0));
      for (int64_t h = 0; h < vectors; ++h) {
        const int64_t c0 = h * L;
        for (int64_t q0 = begin; q0 < end; q0 += L) {
          transpose_tile(src + (c0 * src_height + next) * src_width + q0 - left,
                         src_height * src_width, std::min<int64_t>(L, channels - c0),
                         dst + q0 * pixel + c0, pixel, std::min<int64_t>(L, end - q0), L,
                         src_end);
        }
      }
    }
  }

  const T* src;
  const T* src_end;
  int64_t channels, src_height, src_width, left, width, slots, vectors, pixel;
  T* data;
  int64_t next = 0;
};

// Channels-last rows (src_width pixels of `pixel` values each) with `left` zero
// pixels before them and zeros after, `width` pixels a ring row, in a ring of
// `slots` rows; rows must be filled in ascending order.
template <typename T>
struct RowRing {
  static int64_t elements(int64_t slots, int64_t width, int64_t pixel) {
    // Slack: a vector of the last channels of a pixel may read past the ring.
    return slots * width * pixel + Simd<T>::kLanes;
  }

  RowRing(const T* src, int64_t src_width, int64_t pixel, int64_t left, int64_t width,
          int64_t slots, T* data)
      : src(src), src_width(src_width), pixel(pixel), left(left), width(width), slots(slots),
        data(data) {}

  const T* row(int64_t r) const { return data + (r % slots) * width * pixel; }

  void fill(int64_t first, int64_t last) {
    const int64_t begin = std::clamp<int64_t>(left, 0, width);
    const int64_t end = std::clamp<int64_t>(left + src_width, 0, width);
    for (next = std::max(next, first); next <= last; ++next) {
      T* dst = data + (next % slots) * width * pixel;
      std::fill(dst, dst + begin * pixel, T(0));
      std::memcpy(dst + begin * pixel, src + (next * src_width + begin - left) * pixel,
                  (end - begin) * pixel * sizeof(T));
      std::fill(dst + end * pixel, dst + width * pixel, T(0));
    }
  }

  const T* src;
  int64_t src_width, pixel, left, width, slots;
  T* data;
  int64_t next = 0;
};

// Channel-major rows with zero padding, in a ring: slot (r % slots) holds, per
// channel, `phases` runs of `length` values; value m of phase f is source
// column m * phases + f - left (zero outside the source), so that a tap at
// column offset q of output column j reads phase q % phases at m = j + q / phases.
// The source is NCHW (a block's channel planes) or channels-last (a sample's
// pixel rows, transposed here).
template <typename T>
struct ChannelRing {
  static int64_t elements(int64_t slots, int64_t channels, int64_t phases, int64_t length) {
    return slots * channels * phases * length;
  }

  ChannelRing(const T* src, const T* src_end, bool channels_last, int64_t channels,
              int64_t height, int64_t width, int64_t left, int64_t phases, int64_t length,
              int64_t slots, T* data)
      : src(src), src_end(src_end), channels_last(channels_last), channels(channels),
        src_height(height), src_width(width), left(left), phases(phases), length(length),
        row_size(phases * length), slots(slots), data(data) {}

  const T* row(int64_t r) const { return data + (r % slots) * channels * row_size; }

  void fill(int64_t first, int64_t last) {
    for (next = std::max(next, first); next <= last; ++next) {
      T* dst = data + (next % slots) * channels * row_size;
      if (!channels_last) {
        for (int64_t c = 0; c < channels; ++c) {
          const T* s = src + (c * src_height + next) * src_width;
          if (phases == 1) {
            copy_padded_row(dst + c * row_size, length, std::min(left, length), s, src_width,
                            src_end);
          } else {
            fill_phases(dst + c * row_size, s, 1);
          }
        }
      } else if (phases == 1) {
        constexpr int L = Simd<T>::kLanes;
        std::fill(dst, dst + channels * row_size, T(0));
        const T* s = src + next * src_width * channels;
        const int64_t count = std::min(src_width, length - left);
        for (int64_t c0 = 0; c0 < channels; c0 += L) {
          for (int64_t q0 = 0; q0 < count; q0 += L) {
            const int64_t n = std::min<int64_t>(L, count - q0);
            transpose_tile(s + q0 * channels + c0, channels, n, dst + c0 * row_size + left + q0,
                           row_size, std::min<int64_t>(L, channels - c0), n, src_end);
          }
        }
      } else {
        for (int64_t c = 0; c < channels; ++c) {
          fill_phases(dst + c * row_size, src + next * src_width * channels + c, channels);
        }
      }
    }
  }

  // One channel's row split into phases, from values `step` apart.
  void fill_phases(T* d, const T* s, int64_t step) const {
    std::fill(d, d + row_size, T(0));
    for (int64_t col = 0; col < src_width; ++col) {
      const int64_t q = col + left, m = q / phases;
      if (m < length) d[(q % phases) * length + m] = s[col * step];
    }
  }

  const T* src;
  const T* src_end;
  bool channels_last;
  int64_t channels, src_height, src_width, left, phases, length, row_size, slots;
  T* data;
  int64_t next = 0;
};

// NCHW kernel rows of one block with zero padding, in a ring of output rows,
// for the gather form of grad_input: value q of tap t of row i is w[t][i][q - left].
// Rows come in bands of `band` rows, copied tap by tap (see kBandBytes); the
// ring holds a band beyond the `window` rows in use.
template <typename T>
struct TapRing {
  TapRing(const T* weight, const Problem& p, int64_t left, int64_t width, int64_t band,
          int64_t window, T* data)
      : weight(weight), p(p), left(left), width(width), band(band), slots(slots_for(band, window)),
        data(data) {}

  static int64_t slots_for(int64_t band, int64_t window) { return band + window + 1; }
  static int64_t elements(const Problem& p, int64_t width, int64_t band, int64_t window) {
    return slots_for(band, window) * p.taps() * width;
  }

  const T* tap(int64_t i, int64_t t) const { return data + (t * slots + i % slots) * width; }

  void fill(int64_t first, int64_t last) {
    next = std::max(next, first);
    if (last < next) return;
    const int64_t stop = std::min(p.out_height, std::max(last + 1, next + band));
    const T* end = weight + p.taps() * p.out_plane();
    for (int64_t t = 0; t < p.taps(); ++t) {
      for (int64_t i = next; i < stop; ++i) {
        copy_padded_row(data + (t * slots + i % slots) * width, width, std::min(left, width),
                        weight + (t * p.out_height + i) * p.out_width, p.out_width, end);
      }
    }
    next = stop;
  }

  const T* weight;
  const Problem& p;
  int64_t left, width, band, slots;
  T* data;
  int64_t next = 0;
};

// Writes `pixels` pixel vectors of a staging row (pixel-major, `vectors`
// vectors per pixel) to the channel rows dst + c * plane (c < channels).
template <typename T>
inline void store_channel_rows(const T* staging, int64_t vectors, int64_t pixels,
                               int64_t channels, T* dst, int64_t plane) {
  constexpr int L = Simd<T>::kLanes;
  const T* end = staging + round_up(pixels, L) * vectors * L;
  for (int64_t h = 0; h < vectors; ++h) {
    for (int64_t p0 = 0; p0 < pixels; p0 += L) {
      transpose_tile(staging + (p0 * vectors + h) * L, vectors * L, L, dst + h * L * plane + p0,
                     plane, std::min<int64_t>(L, channels - h * L),
                     std::min<int64_t>(L, pixels - p0), end);
    }
  }
}

// The kernels for a kernel width KW and column stride SW known at compile time
// (0: read from the problem; the compile-time ones also require dilation_w 1),
// so that the common RedNet geometries get fully unrolled tap loops. Each pass
// has an NCHW form (a task: rows of one (sample, group) block; the kernel
// tensor (N, G, Kh, Kw, Ho, Wo)) and a channels-last form (a task: rows of one
// sample, all groups; the kernel pixel-major, (N, Ho, Wo, G, Kh, Kw) in memory),
// sharing the arithmetic.
template <typename T, int KW, int SW>
struct Kernels {
  using S = Simd<T>;
  using V = typename S::Vec;
  static constexpr int L = S::kLanes;
  static constexpr int J = MMREDNET_PIXEL_BLOCK;   // pixels accumulated at once
  static constexpr int R = MMREDNET_WEIGHT_ROWS;   // grad_weight output rows at once
  static constexpr int kTapChunk = KW > 0 ? KW : 4;  // grad_weight accumulators per row

  static int64_t kernel_w(const Problem& p) { return KW > 0 ? KW : p.kernel_w; }
  static int64_t stride_w(const Problem& p) { return SW > 0 ? SW : p.stride_w; }
  static int64_t dilation_w(const Problem& p) { return KW > 0 ? 1 : p.dilation_w; }

  // The kernel rows [u_lo, u_hi) of output row i that read inside the input.
  static void tap_rows(const Problem& p, int64_t i, int64_t* top, int64_t* u_lo, int64_t* u_hi) {
    *top = i * p.stride_h - p.pad_h;
    *u_lo = *top >= 0 ? 0 : ceil_div(-*top, p.dilation_h);
    *u_hi = std::min(p.kernel_h, floor_div(p.height - 1 - *top, p.dilation_h) + 1);
  }

  // The first input row to fill into a ring for an output row whose taps
  // start at row `top`: the first row it reads (top + u_lo * dilation) is not
  // monotonic in the output row when the padding is not a multiple of the
  // dilation (a later row may read an earlier input row), and rings fill in
  // ascending order, so fill from the top of its window instead.
  static int64_t fill_start(int64_t top) { return std::max<int64_t>(top, 0); }

  // The output rows [*i_lo, *i_hi] whose taps read input row y.
  static void reading_rows(const Problem& p, int64_t y, int64_t* i_lo, int64_t* i_hi) {
    const int64_t level = y + p.pad_h;
    *i_lo = std::max<int64_t>(0, ceil_div(level - (p.kernel_h - 1) * p.dilation_h, p.stride_h));
    *i_hi = std::min(p.out_height - 1, floor_div(level, p.stride_h));
  }

  // The (output row, kernel row) pairs whose taps read input row y, output
  // rows descending (kernel rows ascending); at most kernel_h of them.
  static int64_t reading_taps(const Problem& p, int64_t y, int64_t* rows, int64_t* taps) {
    int64_t i_lo, i_hi, count = 0;
    reading_rows(p, y, &i_lo, &i_hi);
    for (int64_t i = i_hi; i >= i_lo; --i) {
      const int64_t num = y + p.pad_h - i * p.stride_h;  // = u * dilation_h
      if (num % p.dilation_h) continue;
      rows[count] = i;
      taps[count++] = num / p.dilation_h;
    }
    return count;
  }

  // The output rows whose taps read an input row, with their grad_output row
  // and kernel row (tap (u, 0)) in the gather's rings.
  struct Readers {
    explicit Readers(const Problem& p)
        : rows(p.kernel_h), taps(p.kernel_h), go(p.kernel_h), w(p.kernel_h) {}

    // For input row y: fills the rings and returns how many rows read it.
    template <typename GoRing, typename WRing, typename WRow>
    int64_t update(const Problem& p, int64_t y, GoRing& go_ring, WRing& w_ring, WRow w_row) {
      const int64_t count = reading_taps(p, y, rows.data(), taps.data());
      if (count > 0) {
        // From the first output row that can read y, not the first that does:
        // with dilation, the latter is not monotonic in y (rings fill ascending).
        int64_t i_lo, i_hi;
        reading_rows(p, y, &i_lo, &i_hi);
        go_ring.fill(i_lo, rows[0]);
        w_ring.fill(i_lo, rows[0]);
      }
      for (int64_t k = 0; k < count; ++k) {
        go[k] = go_ring.row(rows[k]);
        w[k] = w_row(rows[k], taps[k]);
      }
      return count;
    }

    std::vector<int64_t> rows, taps;
    std::vector<const T*> go, w;
  };

  static int64_t first_channel(const Problem& p, int64_t block) {
    return block / p.groups * p.channels + block % p.groups * p.group_channels;
  }

  // Pixels of an input ring row that J-pixel blocks of output columns read.
  static int64_t input_ring_width(const Problem& p) {
    return (ceil_div(p.out_width, J) * J - 1) * stride_w(p) + (kernel_w(p) - 1) * dilation_w(p) +
           1;
  }

  // ---------------------------------------------------------- forward arithmetic
  // acc[k] += sum over kernel rows [u_lo, u_hi) and taps v of
  // w(u, v, pixel k) * x(input row top + u * dilation_h, pixel k * stride + v * dilation),
  // for J output pixels of one channel vector. `offset` locates the block's
  // first input pixel and channel vector in a ring row, `pixel` is the ring's
  // pixel stride; w points at tap (0, 0) of the block's first output pixel, with
  // kernel values w_tap apart between taps and w_pixel (1 when PIXEL1) between pixels.
  template <bool PIXEL1, typename Ring>
  static void forward_pixels(const Problem& p, const Ring& ring, int64_t offset, int64_t pixel,
                             const T* w, int64_t w_tap, int64_t w_pixel, int64_t top,
                             int64_t u_lo, int64_t u_hi, V* acc) {
    const int64_t kw = kernel_w(p), sw = stride_w(p), dw = dilation_w(p);
    const int64_t wp = PIXEL1 ? 1 : w_pixel;
    for (int64_t u = u_lo; u < u_hi; ++u) {
      const T* x = ring.row(top + u * p.dilation_h) + offset;
      const T* wu = w + u * kw * w_tap;
      if constexpr (KW > 0) {  // the row's input pixels once in registers, for all taps
        constexpr int kPixels = (J - 1) * SW + KW;
        V xs[kPixels];
#pragma GCC unroll 32
        for (int q = 0; q < kPixels; ++q) xs[q] = S::load(x + q * pixel);
#pragma GCC unroll 8
        for (int v = 0; v < KW; ++v) {
#pragma GCC unroll 16
          // A scalar times a vector broadcasts the scalar (Vec{} + scalar would add -0.0).
          for (int k = 0; k < J; ++k) acc[k] += wu[v * w_tap + k * wp] * xs[k * SW + v];
        }
      } else {
        for (int64_t v = 0; v < kw; ++v) {
          for (int k = 0; k < J; ++k) {
            acc[k] += wu[v * w_tap + k * wp] * S::load(x + (k * sw + v * dw) * pixel);
          }
        }
      }
    }
  }

  // ------------------------------------------------------- grad_input arithmetic
  // The taps v = PAR, PAR + SW, ... of one kernel row (those whose outputs land
  // on this phase of input columns when PAR = (phase + pad_w) % SW), with the
  // grad_output pixels they read loaded once into registers: tap PAR + SW * n
  // reads pixel k + shift - n for pixel k, shift = (phase + pad_w - PAR) / SW.
  template <int PAR, bool PIXEL1>
  static void grad_input_taps(const Problem& p, const T* go, int64_t pixel, const T* w,
                              int64_t w_tap, int64_t w_pixel, int64_t phase, V* acc) {
    constexpr int kTaps = PAR < KW ? (KW - 1 - PAR) / SW + 1 : 0;
    constexpr int kPixels = J + kTaps - 1;
    const int64_t shift = (phase + p.pad_w - PAR) / SW;
    const T* first = go + (shift - (kTaps - 1)) * pixel;
    V xs[kPixels];
#pragma GCC unroll 32
    for (int q = 0; q < kPixels; ++q) xs[q] = S::load(first + q * pixel);
    if constexpr (PIXEL1) {
#pragma GCC unroll 8
      for (int n = 0; n < kTaps; ++n) {
        const T* wv = w + (PAR + SW * n) * w_tap + (shift - n);
#pragma GCC unroll 16
        for (int k = 0; k < J; ++k) acc[k] += wv[k] * xs[k + kTaps - 1 - n];
      }
    } else {
      // Pixel-major kernel (w_tap == 1): walk the grad_output pixels, whose
      // kernel values for every tap then lie at fixed offsets from one pointer
      // (a tap-major walk needs a register per tap and pixel, and spills).
      const T* wq = w + PAR + (shift - (kTaps - 1)) * w_pixel;
#pragma GCC unroll 32
      for (int q = 0; q < kPixels; ++q, wq += w_pixel) {
#pragma GCC unroll 8
        for (int n = 0; n < kTaps; ++n) {
          const int k = q - (kTaps - 1) + n;  // the input pixel tap n of grad_output pixel q feeds
          if (k >= 0 && k < J) acc[k] += wq[SW * n] * xs[q];
        }
      }
    }
  }

  // acc[k] += the contributions of one kernel row to J input pixels (column
  // (m0 + k) * stride_w + phase) of one channel vector: go points at pixel m0
  // of the output row in a zero-padded ring (pixel stride `pixel`), w at tap
  // (u, 0) of the same pixel (zero padded too).
  template <bool PIXEL1>
  static void grad_input_row(const Problem& p, const T* go, int64_t pixel, const T* w,
                             int64_t w_tap, int64_t w_pixel, int64_t phase, V* acc) {
    if constexpr (KW > 0) {
      if (SW == 1 || (phase + p.pad_w) % SW == 0) {
        grad_input_taps<0, PIXEL1>(p, go, pixel, w, w_tap, w_pixel, phase, acc);
      } else if constexpr (SW > 1) {
        grad_input_taps<1, PIXEL1>(p, go, pixel, w, w_tap, w_pixel, phase, acc);
      }
    } else {
      const int64_t kw = kernel_w(p), sw = stride_w(p), dw = dilation_w(p);
      const int64_t wp = PIXEL1 ? 1 : w_pixel;
      for (int64_t v = 0; v < kw; ++v) {
        const int64_t col = phase + p.pad_w - v * dw;  // = j * stride_w
        if (col % sw) continue;
        const int64_t shift = floor_div(col, sw);
        const T* wv = w + v * w_tap + shift * wp;
        for (int k = 0; k < J; ++k) acc[k] += wv[k * wp] * S::load(go + (k + shift) * pixel);
      }
    }
  }

  // Geometry of the gather: output pixels needed left of input pixel 0.
  static int64_t gather_left(const Problem& p) {
    const int64_t span = (kernel_w(p) - 1) * dilation_w(p);
    return std::max<int64_t>(0, ceil_div(span - p.pad_w, stride_w(p)));
  }
  static int64_t gather_blocks(const Problem& p) {  // J-pixel blocks of the widest phase
    return ceil_div(ceil_div(p.width, stride_w(p)), J);
  }
  static int64_t gather_width(const Problem& p) {
    return gather_left(p) + gather_blocks(p) * J + (stride_w(p) - 1 + p.pad_w) / stride_w(p) + 1;
  }
  static int64_t gather_slots(const Problem& p) {
    return (p.kernel_h - 1) * p.dilation_h / p.stride_h + 2;
  }

  // ------------------------------------------------------ grad_weight arithmetic
  // The input vectors of taps v0 .. v0 + kTapChunk - 1 for the output columns
  // whose first one `row` points at (in the ring row of one channel).
  static void tap_inputs(const Problem& p, const ChannelRing<T>& ring, const T* row, int64_t v0,
                         V* xs) {
    if constexpr (KW > 0) {  // aligned loads and lane shifts
      V vecs[SW][kVectors];
      for (int f = 0; f < SW; ++f) {
        for (int k = 0; k < kVectors; ++k) vecs[f][k] = S::load(row + f * ring.length + k * L);
      }
      shift_taps(vecs, xs, std::make_index_sequence<KW>());
    } else {
      const int64_t sw = stride_w(p), dw = dilation_w(p);
      for (int t = 0; t < kTapChunk; ++t) {
        const int64_t q = std::min(v0 + t, p.kernel_w - 1) * dw;
        xs[t] = S::load(row + (q % sw) * ring.length + q / sw);
      }
    }
  }

  // Tap v reads phase v % SW from lane v / SW on: lanes of two consecutive vectors.
  static constexpr int kStride = SW > 0 ? SW : 1;
  static constexpr int kVectors = (KW > 0 ? (KW - 1) / kStride : 0) / L + 2;

  template <size_t... V_>
  static void shift_taps(const V (*vecs)[kVectors], V* xs, std::index_sequence<V_...>) {
    ((xs[V_] = S::template shifted<(V_ / kStride) % L>(vecs[V_ % kStride][V_ / kStride / L],
                                                       vecs[V_ % kStride][V_ / kStride / L + 1])),
     ...);
  }

  // Sums over one group's channels for NQ output rows that all read input row
  // r: row q[n] (of the R rows being computed) with kernel row u[n], output
  // columns j0 ... Channel c of the group is ring channel channel0 + c, and of
  // grad_output go_rows[q] + c * go_channel; results go to
  // gw + tap * tap_stride + q * row_stride.
  template <int NQ>
  static void grad_weight_row(const Problem& p, const ChannelRing<T>& ring, int64_t channel0,
                              const T* const* go_rows, int64_t go_channel, const int64_t* q,
                              const int64_t* u, int64_t r, int64_t j0, int64_t lanes, T* gw,
                              int64_t tap_stride, int64_t row_stride) {
    const int64_t kw = kernel_w(p);
    const T* x_row = ring.row(r) + channel0 * ring.row_size + j0;
    for (int64_t v0 = 0; v0 < kw; v0 += kTapChunk) {
      const int64_t taps = std::min<int64_t>(kTapChunk, kw - v0);
      V acc[NQ][kTapChunk] = {};
      for (int64_t c = 0; c < p.group_channels; ++c) {
        V g[NQ], xs[kTapChunk];
        for (int n = 0; n < NQ; ++n) g[n] = S::load(go_rows[q[n]] + c * go_channel + j0);
        tap_inputs(p, ring, x_row + c * ring.row_size, v0, xs);
        for (int n = 0; n < NQ; ++n) {
          for (int t = 0; t < kTapChunk; ++t) acc[n][t] += g[n] * xs[t];
        }
      }
      for (int n = 0; n < NQ; ++n) {
        for (int64_t t = 0; t < taps; ++t) {
          S::store(gw + (u[n] * kw + v0 + t) * tap_stride + q[n] * row_stride, acc[n][t], lanes);
        }
      }
    }
  }

  // The rows i0 .. i0 + rows - 1 of grad_weight for one group: zeros for the
  // kernel rows that read padding only, sums for the others.
  static void grad_weight_group(const Problem& p, const ChannelRing<T>& ring, int64_t channel0,
                                const T* const* go_rows, int64_t go_channel, int64_t i0,
                                int64_t rows, T* gw, int64_t tap_stride, int64_t row_stride) {
    const int64_t kw = kernel_w(p);
    int64_t top[R], u_lo[R], u_hi[R], first = INT64_MAX, last = INT64_MIN;
    for (int64_t q = 0; q < rows; ++q) {
      tap_rows(p, i0 + q, &top[q], &u_lo[q], &u_hi[q]);
      for (int64_t u = 0; u < p.kernel_h; ++u) {
        if (u >= u_lo[q] && u < u_hi[q]) continue;
        for (int64_t v = 0; v < kw; ++v) {
          T* dst = gw + (u * kw + v) * tap_stride + q * row_stride;
          std::fill(dst, dst + p.out_width, T(0));
        }
      }
      if (u_hi[q] > u_lo[q]) {
        first = std::min(first, top[q] + u_lo[q] * p.dilation_h);
        last = std::max(last, top[q] + (u_hi[q] - 1) * p.dilation_h);
      }
    }
    for (int64_t j0 = 0; j0 < p.out_width; j0 += L) {
      const int64_t lanes = std::min<int64_t>(L, p.out_width - j0);
      for (int64_t r = first; r <= last; ++r) {
        int64_t q[R], u[R], n = 0;
        for (int64_t k = 0; k < rows; ++k) {
          const int64_t num = r - top[k];
          if (num % p.dilation_h) continue;
          const int64_t uk = num / p.dilation_h;
          if (uk < u_lo[k] || uk >= u_hi[k]) continue;
          q[n] = k;
          u[n++] = uk;
        }
        if (n == 2 && R >= 2) {
          grad_weight_row<(R >= 2 ? 2 : 1)>(p, ring, channel0, go_rows, go_channel, q, u, r, j0,
                                            lanes, gw + j0, tap_stride, row_stride);
        } else {
          for (int64_t k = 0; k < n; ++k) {
            grad_weight_row<1>(p, ring, channel0, go_rows, go_channel, &q[k], &u[k], r, j0,
                               lanes, gw + j0, tap_stride, row_stride);
          }
        }
      }
    }
  }

  // The input rows the output rows i0 .. i0 + rows - 1 read.
  static void weight_input_rows(const Problem& p, int64_t i0, int64_t rows, int64_t* first,
                                int64_t* last) {
    *first = INT64_MAX;
    *last = INT64_MIN;
    for (int64_t q = 0; q < rows; ++q) {
      int64_t top, u_lo, u_hi;
      tap_rows(p, i0 + q, &top, &u_lo, &u_hi);
      if (u_hi > u_lo) {
        *first = std::min(*first, fill_start(top));
        *last = std::max(*last, top + (u_hi - 1) * p.dilation_h);
      }
    }
  }

  // Ring geometry of grad_weight: whole vectors from every aligned column
  // block, plus the next vectors for the lane shifts.
  static int64_t weight_ring_length(const Problem& p) {
    return round_up(ceil_div(p.out_width, L) * L +
                        (kernel_w(p) - 1) * dilation_w(p) / stride_w(p) + 1, L) + L;
  }
  static int64_t weight_ring_slots(const Problem& p) {
    return (p.kernel_h - 1) * p.dilation_h + R * p.stride_h;
  }

  // =============================================================== NCHW passes
  struct ForwardLayout {
    int64_t blocks_w, ring_width, slots, vectors, band_rows, band_stride;
    int64_t ring, staging, band, elements;  // offsets in the scratch
    explicit ForwardLayout(const Problem& p) {
      blocks_w = ceil_div(p.out_width, J);
      ring_width = input_ring_width(p);
      slots = (p.kernel_h - 1) * p.dilation_h + p.stride_h;
      vectors = PixelRing<T>::vectors_for(p.group_channels);
      ring = 0;
      staging = round_up(PixelRing<T>::elements(slots, ring_width, p.group_channels), S::kAlign);
      band = staging + round_up(round_up(blocks_w * J, L) * vectors * L, S::kAlign);
      band_rows = kernel_band_rows(p, sizeof(T), 1);
      band_stride = band_rows * p.out_width + J;  // J: reads of the last block past the row
      elements = round_up(band + p.taps() * band_stride, S::kAlign);
    }
  };

  static void forward(const Problem& p, const T* input, const T* weight, T* out, int64_t block,
                      int64_t begin, int64_t end, T* scratch) {
    const ForwardLayout lay(p);
    const int64_t plane = p.out_plane(), c0 = first_channel(p, block), sw = stride_w(p);
    const T* w_block = weight + block * p.taps() * plane;
    PixelRing<T> ring(input + c0 * p.plane(), input + p.batch * p.channels * p.plane(),
                      p.group_channels, p.height, p.width, p.pad_w, lay.ring_width, lay.slots,
                      scratch + lay.ring);
    T* staging = scratch + lay.staging;
    T* band = scratch + lay.band;
    int64_t band_first = begin;
    for (int64_t i = begin; i < end; ++i) {
      int64_t top, u_lo, u_hi;
      tap_rows(p, i, &top, &u_lo, &u_hi);
      if (u_hi > u_lo) ring.fill(fill_start(top), top + (u_hi - 1) * p.dilation_h);
      if ((i - begin) % lay.band_rows == 0) {  // the kernel rows of the next band, tap by tap
        band_first = i;
        const int64_t rows = std::min(lay.band_rows, end - i);
        for (int64_t t = 0; t < p.taps(); ++t) {
          std::memcpy(band + t * lay.band_stride, w_block + t * plane + i * p.out_width,
                      rows * p.out_width * sizeof(T));
        }
      }
      for (int64_t b = 0; b < lay.blocks_w; ++b) {
        const int64_t j0 = b * J;
        const T* w = band + (i - band_first) * p.out_width + j0;
        for (int64_t h = 0; h < lay.vectors; ++h) {
          V acc[J] = {};
          forward_pixels<true>(p, ring, j0 * sw * ring.pixel + h * L, ring.pixel, w,
                               lay.band_stride, 1, top, u_lo, u_hi, acc);
          for (int k = 0; k < J; ++k) S::store(staging + ((j0 + k) * lay.vectors + h) * L, acc[k]);
        }
      }
      store_channel_rows(staging, lay.vectors, p.out_width, p.group_channels,
                         out + c0 * plane + i * p.out_width, plane);
    }
  }

  struct GradInputLayout {
    int64_t left, ring_width, tap_width, slots, vectors, band;
    int64_t go_ring, tap_ring, staging, elements;
    explicit GradInputLayout(const Problem& p) {
      left = gather_left(p);
      ring_width = gather_width(p);
      slots = gather_slots(p);
      vectors = PixelRing<T>::vectors_for(p.group_channels);
      go_ring = 0;
      tap_ring = round_up(PixelRing<T>::elements(slots, ring_width, p.group_channels), S::kAlign);
      band = kernel_band_rows(p, sizeof(T), 1);
      tap_width = round_up(std::max(ring_width, left + round_up(p.out_width, L)), L);
      staging = tap_ring + round_up(TapRing<T>::elements(p, tap_width, band, slots), S::kAlign);
      const int64_t staging_width = round_up(gather_blocks(p) * J * stride_w(p), L);
      elements = round_up(staging + staging_width * vectors * L, S::kAlign);
    }
  };

  static void grad_input(const Problem& p, const T* grad_output, const T* weight, T* grad_in,
                         int64_t block, int64_t begin, int64_t end, T* scratch) {
    const GradInputLayout lay(p);
    const int64_t sw = stride_w(p), kw = kernel_w(p), c0 = first_channel(p, block);
    PixelRing<T> go_ring(grad_output + c0 * p.out_plane(),
                         grad_output + p.batch * p.channels * p.out_plane(), p.group_channels,
                         p.out_height, p.out_width, lay.left, lay.ring_width, lay.slots,
                         scratch + lay.go_ring);
    TapRing<T> tap_ring(weight + block * p.taps() * p.out_plane(), p, lay.left, lay.tap_width,
                        lay.band, lay.slots, scratch + lay.tap_ring);
    const int64_t w_tap = tap_ring.slots * tap_ring.width, pixel = go_ring.pixel;
    T* staging = scratch + lay.staging;
    Readers reading(p);
    for (int64_t y = begin; y < end; ++y) {
      const int64_t readers = reading.update(
          p, y, go_ring, tap_ring, [&](int64_t i, int64_t u) { return tap_ring.tap(i, u * kw); });
      for (int64_t phase = 0; phase < std::min(sw, p.width); ++phase) {
        const int64_t count = ceil_div(p.width - phase, sw);  // input columns of this phase
        for (int64_t m0 = 0; m0 < count; m0 += J) {
          for (int64_t h = 0; h < lay.vectors; ++h) {
            V acc[J] = {};
            for (int64_t k = 0; k < readers; ++k) {
              grad_input_row<true>(p, reading.go[k] + (lay.left + m0) * pixel + h * L, pixel,
                                   reading.w[k] + lay.left + m0, w_tap, 1, phase, acc);
            }
            for (int k = 0; k < J; ++k) {
              S::store(staging + (((m0 + k) * sw + phase) * lay.vectors + h) * L, acc[k]);
            }
          }
        }
      }
      store_channel_rows(staging, lay.vectors, p.width, p.group_channels,
                         grad_in + c0 * p.plane() + y * p.width, p.plane());
    }
  }

  struct GradWeightLayout {
    int64_t length, slots, go_length, band_rows, band_stride;
    int64_t ring, go_ring, band, elements;
    explicit GradWeightLayout(const Problem& p, int64_t channels) {
      length = weight_ring_length(p);
      slots = weight_ring_slots(p);
      go_length = round_up(p.out_width, L);
      ring = 0;
      go_ring = round_up(ChannelRing<T>::elements(slots, channels, stride_w(p), length),
                         S::kAlign);
      band = go_ring + round_up(ChannelRing<T>::elements(R, channels, 1, go_length), S::kAlign);
      band_rows = kernel_band_rows(p, sizeof(T), R);
      band_stride = band_rows * p.out_width;
      elements = round_up(band + p.taps() * band_stride, S::kAlign);
    }
  };

  static void grad_weight(const Problem& p, const T* grad_output, const T* input, T* grad_w,
                          int64_t block, int64_t begin, int64_t end, T* scratch) {
    const GradWeightLayout lay(p, p.group_channels);
    const int64_t plane = p.out_plane(), cg = p.group_channels, c0 = first_channel(p, block);
    ChannelRing<T> ring(input + c0 * p.plane(), input + p.batch * p.channels * p.plane(), false,
                        cg, p.height, p.width, p.pad_w, stride_w(p), lay.length, lay.slots,
                        scratch + lay.ring);
    ChannelRing<T> go_ring(grad_output + c0 * plane, grad_output + p.batch * p.channels * plane,
                           false, cg, p.out_height, p.out_width, 0, 1, lay.go_length, R,
                           scratch + lay.go_ring);
    T* gw_block = grad_w + block * p.taps() * plane;
    // Rows are written to a band buffer and copied out tap by tap (see kBandBytes).
    T* band = scratch + lay.band;
    int64_t band_first = begin;
    const auto flush = [&](int64_t stop) {
      for (int64_t t = 0; t < p.taps() && stop > band_first; ++t) {
        std::memcpy(gw_block + t * plane + band_first * p.out_width, band + t * lay.band_stride,
                    (stop - band_first) * p.out_width * sizeof(T));
      }
      band_first = stop;
    };
    for (int64_t i0 = begin; i0 < end; i0 += R) {
      if (i0 - band_first == lay.band_rows) flush(i0);
      const int64_t rows = std::min<int64_t>(R, end - i0);
      int64_t first, last;
      weight_input_rows(p, i0, rows, &first, &last);
      if (first <= last) ring.fill(first, last);
      go_ring.fill(i0, i0 + rows - 1);
      const T* go_rows[R];
      for (int64_t q = 0; q < rows; ++q) go_rows[q] = go_ring.row(i0 + q);
      grad_weight_group(p, ring, 0, go_rows, go_ring.row_size, i0, rows,
                        band + (i0 - band_first) * p.out_width, lay.band_stride, p.out_width);
    }
    flush(end);
  }

  // ====================================================== channels-last passes
  // Input and output (N, H, W, C) in memory, the kernel (N, Ho, Wo, G, Kh, Kw).
  static int64_t kernel_pixel(const Problem& p) { return p.groups * p.taps(); }

  struct ForwardLayoutCL {
    int64_t ring_width, slots, ring, tail, elements;
    explicit ForwardLayoutCL(const Problem& p) {
      ring_width = input_ring_width(p);
      slots = (p.kernel_h - 1) * p.dilation_h + p.stride_h;
      ring = 0;
      tail = round_up(RowRing<T>::elements(slots, ring_width, p.channels), S::kAlign);
      elements = round_up(tail + J * kernel_pixel(p), S::kAlign);
    }
  };

  static void forward_cl(const Problem& p, const T* input, const T* weight, T* out, int64_t n,
                         int64_t begin, int64_t end, T* scratch) {
    const ForwardLayoutCL lay(p);
    const int64_t C = p.channels, cg = p.group_channels, sw = stride_w(p);
    const int64_t pixel_w = kernel_pixel(p), row_w = p.out_width * pixel_w;
    const T* w_end = weight + p.batch * p.out_height * row_w;
    RowRing<T> ring(input + n * p.plane() * C, p.width, C, p.pad_w, lay.ring_width, lay.slots,
                    scratch + lay.ring);
    T* w_tail = scratch + lay.tail;
    for (int64_t i = begin; i < end; ++i) {
      int64_t top, u_lo, u_hi;
      tap_rows(p, i, &top, &u_lo, &u_hi);
      if (u_hi > u_lo) ring.fill(fill_start(top), top + (u_hi - 1) * p.dilation_h);
      const T* w_row = weight + (n * p.out_height + i) * row_w;
      T* out_row = out + (n * p.out_height + i) * p.out_width * C;
      for (int64_t j0 = 0; j0 < p.out_width; j0 += J) {
        const int64_t pixels = std::min<int64_t>(J, p.out_width - j0);
        const T* w = w_row + j0 * pixel_w;
        if (w + J * pixel_w > w_end) {  // the very end of the kernel tensor: padded copy
          std::fill(w_tail, w_tail + J * pixel_w, T(0));
          std::memcpy(w_tail, w, pixels * pixel_w * sizeof(T));
          w = w_tail;
        }
        for (int64_t g = 0; g < p.groups; ++g) {
          for (int64_t c = 0; c < cg; c += L) {
            V acc[J] = {};
            forward_pixels<false>(p, ring, j0 * sw * C + g * cg + c, C, w + g * p.taps(), 1,
                                  pixel_w, top, u_lo, u_hi, acc);
            const int64_t lanes = std::min<int64_t>(L, cg - c);
            for (int64_t k = 0; k < pixels; ++k) {
              S::store(out_row + (j0 + k) * C + g * cg + c, acc[k], lanes);
            }
          }
        }
      }
    }
  }

  struct GradInputLayoutCL {
    int64_t left, ring_width, slots, go_ring, w_ring, elements;
    explicit GradInputLayoutCL(const Problem& p) {
      left = gather_left(p);
      ring_width = gather_width(p);
      slots = gather_slots(p);
      go_ring = 0;
      w_ring = round_up(RowRing<T>::elements(slots, ring_width, p.channels), S::kAlign);
      elements = round_up(w_ring + RowRing<T>::elements(slots, ring_width, kernel_pixel(p)),
                          S::kAlign);
    }
  };

  static void grad_input_cl(const Problem& p, const T* grad_output, const T* weight, T* grad_in,
                            int64_t n, int64_t begin, int64_t end, T* scratch) {
    const GradInputLayoutCL lay(p);
    const int64_t C = p.channels, cg = p.group_channels, sw = stride_w(p), kw = kernel_w(p);
    const int64_t pixel_w = kernel_pixel(p);
    RowRing<T> go_ring(grad_output + n * p.out_plane() * C, p.out_width, C, lay.left,
                       lay.ring_width, lay.slots, scratch + lay.go_ring);
    RowRing<T> w_ring(weight + n * p.out_plane() * pixel_w, p.out_width, pixel_w, lay.left,
                      lay.ring_width, lay.slots, scratch + lay.w_ring);
    Readers reading(p);
    for (int64_t y = begin; y < end; ++y) {
      const int64_t readers =  // kernel rows: tap (u, 0) of group 0
          reading.update(p, y, go_ring, w_ring,
                         [&](int64_t i, int64_t u) { return w_ring.row(i) + u * kw; });
      T* gi_row = grad_in + (n * p.height + y) * p.width * C;
      for (int64_t phase = 0; phase < std::min(sw, p.width); ++phase) {
        const int64_t count = ceil_div(p.width - phase, sw);  // input columns of this phase
        for (int64_t m0 = 0; m0 < count; m0 += J) {
          const int64_t pixels = std::min<int64_t>(J, count - m0);
          for (int64_t g = 0; g < p.groups; ++g) {
            for (int64_t c = 0; c < cg; c += L) {
              V acc[J] = {};
              for (int64_t k = 0; k < readers; ++k) {
                grad_input_row<false>(p, reading.go[k] + (lay.left + m0) * C + g * cg + c, C,
                                      reading.w[k] + (lay.left + m0) * pixel_w + g * p.taps(),
                                      1, pixel_w, phase, acc);
              }
              const int64_t lanes = std::min<int64_t>(L, cg - c);
              for (int64_t k = 0; k < pixels; ++k) {
                S::store(gi_row + ((m0 + k) * sw + phase) * C + g * cg + c, acc[k], lanes);
              }
            }
          }
        }
      }
    }
  }

  struct GradWeightLayoutCL {
    GradWeightLayout base;
    int64_t stage_width, stage, row, elements;
    explicit GradWeightLayoutCL(const Problem& p) : base(p, p.channels) {
      stage_width = round_up(p.out_width, L);
      // One row's sums of every group, tap-major (taps rounded up to a tile).
      stage = base.band;
      row = round_up(stage + R * p.groups * round_up(p.taps(), L) * stage_width, S::kAlign);
      elements = round_up(row + p.out_width * kernel_pixel(p) + L, S::kAlign);
    }
  };

  static void grad_weight_cl(const Problem& p, const T* grad_output, const T* input, T* grad_w,
                             int64_t n, int64_t begin, int64_t end, T* scratch) {
    const GradWeightLayoutCL lay(p);
    const int64_t C = p.channels, cg = p.group_channels, taps = p.taps();
    const int64_t tile_taps = round_up(taps, L), pixel_w = kernel_pixel(p);
    const int64_t group_stride = tile_taps * lay.stage_width;  // in the stage
    ChannelRing<T> ring(input + n * p.plane() * C, input + p.batch * p.plane() * C, true, C,
                        p.height, p.width, p.pad_w, stride_w(p), lay.base.length, lay.base.slots,
                        scratch + lay.base.ring);
    ChannelRing<T> go_ring(grad_output + n * p.out_plane() * C,
                           grad_output + p.batch * p.out_plane() * C, true, C, p.out_height,
                           p.out_width, 0, 1, lay.base.go_length, R, scratch + lay.base.go_ring);
    T* stage = scratch + lay.stage;
    const T* stage_end = stage + R * p.groups * group_stride;
    for (int64_t i0 = begin; i0 < end; i0 += R) {
      const int64_t rows = std::min<int64_t>(R, end - i0);
      int64_t first, last;
      weight_input_rows(p, i0, rows, &first, &last);
      if (first <= last) ring.fill(first, last);
      go_ring.fill(i0, i0 + rows - 1);
      for (int64_t g = 0; g < p.groups; ++g) {
        const T* go_rows[R];
        for (int64_t q = 0; q < rows; ++q) {
          go_rows[q] = go_ring.row(i0 + q) + g * cg * go_ring.row_size;
        }
        grad_weight_group(p, ring, g * cg, go_rows, go_ring.row_size, i0, rows,
                          stage + g * group_stride, lay.stage_width, p.groups * group_stride);
      }
      // Tap-major sums to pixel-major rows of grad_weight, (pixels, groups, taps),
      // assembled in cache and then written in one sequential run.
      for (int64_t q = 0; q < rows; ++q) {
        T* gw_row = scratch + lay.row;
        for (int64_t g = 0; g < p.groups; ++g) {
          const T* sums = stage + (q * p.groups + g) * group_stride;
          for (int64_t t0 = 0; t0 < taps; t0 += L) {
            if (4 * (taps - t0) <= L) {  // a few last taps: plain copies beat a transpose
              for (int64_t t = t0; t < taps; ++t) {
                for (int64_t j = 0; j < p.out_width; ++j) {
                  gw_row[j * pixel_w + g * taps + t] = sums[t * lay.stage_width + j];
                }
              }
              continue;
            }
            for (int64_t j0 = 0; j0 < p.out_width; j0 += L) {
              transpose_tile(sums + t0 * lay.stage_width + j0, lay.stage_width,
                             std::min<int64_t>(L, taps - t0),
                             gw_row + j0 * pixel_w + g * taps + t0, pixel_w,
                             std::min<int64_t>(L, p.out_width - j0),
                             std::min<int64_t>(L, taps - t0), stage_end);
            }
          }
        }
        std::memcpy(grad_w + (n * p.out_height + i0 + q) * p.out_width * pixel_w, gw_row,
                    p.out_width * pixel_w * sizeof(T));
      }
    }
  }
};

template <typename T, int KW, int SW>
Pass<T> make_pass(const Problem& p, PassId id) {
  using K = Kernels<T, KW, SW>;
  if (p.channels_last) {
    switch (id) {
      case kForward: return {&K::forward_cl, typename K::ForwardLayoutCL(p).elements};
      case kGradInput: return {&K::grad_input_cl, typename K::GradInputLayoutCL(p).elements};
      default: return {&K::grad_weight_cl, typename K::GradWeightLayoutCL(p).elements};
    }
  }
  switch (id) {
    case kForward: return {&K::forward, typename K::ForwardLayout(p).elements};
    case kGradInput: return {&K::grad_input, typename K::GradInputLayout(p).elements};
    default:
      return {&K::grad_weight, typename K::GradWeightLayout(p, p.group_channels).elements};
  }
}

// The kernels for a problem: unrolled for the RedNet geometries (kernel width
// 3 or 7, column stride 1 or 2, column dilation 1), general otherwise.
template <typename T>
Pass<T> select(const Problem& p, PassId id) {
  const int64_t k = p.kernel_w, s = p.stride_w;
  if (p.dilation_w == 1) {
    if (k == 7 && s == 1) return make_pass<T, 7, 1>(p, id);
    if (k == 7 && s == 2) return make_pass<T, 7, 2>(p, id);
    if (k == 3 && s == 1) return make_pass<T, 3, 1>(p, id);
    if (k == 3 && s == 2) return make_pass<T, 3, 2>(p, id);
  }
  return make_pass<T, 0, 0>(p, id);
}
