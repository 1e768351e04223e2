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

// Rows of a (channels, height, width) source transposed to pixel-major order,
// in a ring of `slots` rows. Pixel q of row r holds source column q - left of
// row r, as `vectors` vectors of channels (lanes beyond `channels` and pixels
// outside the source are zero); rows must be filled in ascending order.
template <typename T>
struct PixelRing {
  using S = Simd<T>;
  static constexpr int L = S::kLanes;

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
    for (next = std::max(next, first); next <= last; ++next) fill_row(next);
  }

  void fill_row(int64_t r) {
    T* dst = data + (r % slots) * width * pixel;
    const int64_t begin = std::clamp<int64_t>(left, 0, width);
    const int64_t end = std::clamp<int64_t>(left + src_width, 0, width);
    std::fill(dst, dst + begin * pixel, T(0));
    std::fill(dst + end * pixel, dst + width * pixel, T(0));
    typename S::Vec tile[L];
    for (int64_t h = 0; h < vectors; ++h) {
      const int64_t c0 = h * L, nc = std::min<int64_t>(L, channels - c0);
      for (int64_t q0 = begin; q0 < end; q0 += L) {
        const int64_t n = std::min<int64_t>(L, end - q0), col = q0 - left;
        const T* s = src + (c0 * src_height + r) * src_width + col;
        const int64_t channel_stride = src_height * src_width;
        if (nc == L && (n == L || s + (L - 1) * channel_stride + L <= src_end)) {
#pragma GCC unroll 64
          for (int k = 0; k < L; ++k) tile[k] = S::load(s + k * channel_stride);
        } else {  // the last channels of a group, or the very end of the source
          for (int k = 0; k < L; ++k) {
            tile[k] = typename S::Vec{};
            if (k >= nc) continue;
            const T* c = s + k * channel_stride;
            if (c + L <= src_end) {
              tile[k] = S::load(c);  // values past the row land in pixels not stored
            } else {
              for (int64_t l = 0; l < n; ++l) tile[k][l] = c[l];
            }
          }
        }
        S::transpose(tile);
        for (int64_t k = 0; k < n; ++k) S::store(dst + (q0 + k) * pixel + h * L, tile[k]);
      }
    }
  }

  const T* src;
  const T* src_end;
  int64_t channels, src_height, src_width, left, width, slots, vectors, pixel;
  T* data;
  int64_t next = 0;
};

// Channel-major rows with zero padding, in a ring: slot (r % slots) holds, per
// channel, `phases` runs of `length` values; value m of phase f is source
// column m * phases + f - left (zero outside the source), so that a tap at
// column offset q of output column j reads phase q % phases at m = j + q / phases.
template <typename T>
struct ChannelRing {
  ChannelRing(const T* src, const T* src_end, int64_t channels, int64_t height, int64_t width,
              int64_t left, int64_t phases, int64_t length, int64_t slots, T* data)
      : src(src), src_end(src_end), channels(channels), src_height(height), src_width(width), left(left),
        phases(phases), length(length), row_size(phases * length), slots(slots), data(data) {}

  static int64_t elements(int64_t slots, int64_t channels, int64_t phases, int64_t length) {
    return slots * channels * phases * length;
  }

  const T* row(int64_t r) const { return data + (r % slots) * channels * row_size; }

  void fill(int64_t first, int64_t last) {
    for (next = std::max(next, first); next <= last; ++next) {
      T* dst = data + (next % slots) * channels * row_size;
      for (int64_t c = 0; c < channels; ++c) {
        const T* s = src + (c * src_height + next) * src_width;
        T* d = dst + c * row_size;
        if (phases == 1) {
          copy_padded_row(d, length, std::min(left, length), s, src_width, src_end);
        } else {
          std::fill(d, d + row_size, T(0));
          for (int64_t col = 0; col < src_width; ++col) {
            const int64_t q = col + left, m = q / phases;
            if (m < length) d[(q % phases) * length + m] = s[col];
          }
        }
      }
    }
  }

  const T* src;
  const T* src_end;
  int64_t channels, src_height, src_width, left, phases, length, row_size, slots;
  T* data;
  int64_t next = 0;
};

// Rows of the kernel taps with zero padding, in a ring of output rows, for the
// gather form of grad_input: value q of tap t of row i is w[t][i][q - left].
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
  using S = Simd<T>;
  constexpr int L = S::kLanes;
  typename S::Vec tile[L];
  for (int64_t h = 0; h < vectors; ++h) {
    const int64_t nc = std::min<int64_t>(L, channels - h * L);
    for (int64_t p0 = 0; p0 < pixels; p0 += L) {
      const int64_t n = std::min<int64_t>(L, pixels - p0);
#pragma GCC unroll 64
      for (int k = 0; k < L; ++k) tile[k] = S::load(staging + ((p0 + k) * vectors + h) * L);
      S::transpose(tile);
      for (int64_t k = 0; k < nc; ++k) S::store(dst + (h * L + k) * plane + p0, tile[k], n);
    }
  }
}

// The kernels for a kernel width KW and column stride SW known at compile time
// (0: read from the problem; the compile-time ones also require dilation_w 1),
// so that the common RedNet geometries get fully unrolled tap loops.
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

  static int64_t first_channel(const Problem& p, int64_t block) {
    return block / p.groups * p.channels + block % p.groups * p.group_channels;
  }

  // ------------------------------------------------------------------ forward
  struct ForwardLayout {
    int64_t blocks_w, ring_width, slots, vectors, staging_width, band_rows, band_stride;
    int64_t ring, staging, band;  // offsets in the scratch
    int64_t elements;
    explicit ForwardLayout(const Problem& p) {
      blocks_w = ceil_div(p.out_width, J);
      ring_width = (blocks_w * J - 1) * stride_w(p) + (kernel_w(p) - 1) * dilation_w(p) + 1;
      slots = (p.kernel_h - 1) * p.dilation_h + p.stride_h;
      vectors = PixelRing<T>::vectors_for(p.group_channels);
      staging_width = round_up(blocks_w * J, L);
      ring = 0;
      staging = round_up(PixelRing<T>::elements(slots, ring_width, p.group_channels), S::kAlign);
      band = staging + round_up(staging_width * vectors * L, S::kAlign);
      band_rows = kernel_band_rows(p, sizeof(T), 1);
      band_stride = band_rows * p.out_width + J;  // J: reads of the last block past the row
      elements = round_up(band + p.taps() * band_stride, S::kAlign);
    }
  };

  static int64_t forward_scratch(const Problem& p) { return ForwardLayout(p).elements; }

  // J output pixels of one channel vector: acc[k] over the taps of rows [u_lo, u_hi).
  static void forward_pixels(const Problem& p, const PixelRing<T>& ring, const T* w,
                             int64_t w_stride, int64_t top, int64_t u_lo, int64_t u_hi,
                             int64_t j0, int64_t h, T* staging) {
    const int64_t kw = kernel_w(p), sw = stride_w(p), dw = dilation_w(p), pixel = ring.pixel;
    V acc[J] = {};
    for (int64_t u = u_lo; u < u_hi; ++u) {
      const T* x = ring.row(top + u * p.dilation_h) + j0 * sw * pixel + h * L;
      const T* wu = w + u * kw * w_stride;
      if constexpr (KW > 0) {  // the row's input pixels once in registers, for all taps
        constexpr int kPixels = (J - 1) * SW + KW;
        V xs[kPixels];
#pragma GCC unroll 32
        for (int q = 0; q < kPixels; ++q) xs[q] = S::load(x + q * pixel);
#pragma GCC unroll 8
        for (int v = 0; v < KW; ++v) {
#pragma GCC unroll 16
          for (int k = 0; k < J; ++k) acc[k] += wu[v * w_stride + k] * xs[k * SW + v];
        }
      } else {
        for (int64_t v = 0; v < kw; ++v) {
          for (int k = 0; k < J; ++k) {
            // A scalar times a vector broadcasts the scalar (Vec{} + scalar would add -0.0).
            acc[k] += wu[v * w_stride + k] * S::load(x + (k * sw + v * dw) * pixel);
          }
        }
      }
    }
    for (int k = 0; k < J; ++k) S::store(staging + ((j0 + k) * ring.vectors + h) * L, acc[k]);
  }

  static void forward(const Problem& p, const T* input, const T* weight, T* out, int64_t block,
                      int64_t begin, int64_t end, T* scratch) {
    const ForwardLayout lay(p);
    const int64_t plane = p.out_plane(), c0 = first_channel(p, block);
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
      if (u_hi > u_lo) ring.fill(top + u_lo * p.dilation_h, top + (u_hi - 1) * p.dilation_h);
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
        const int64_t w_stride = lay.band_stride;
        for (int64_t h = 0; h < lay.vectors; ++h) {
          forward_pixels(p, ring, w, w_stride, top, u_lo, u_hi, j0, h, staging);
        }
      }
      store_channel_rows(staging, lay.vectors, p.out_width, p.group_channels,
                         out + c0 * plane + i * p.out_width, plane);
    }
  }

  // -------------------------------------------------------------- grad_input
  struct GradInputLayout {
    int64_t left, blocks, ring_width, tap_width, slots, vectors, staging_width, band;
    int64_t go_ring, tap_ring, staging, elements;
    explicit GradInputLayout(const Problem& p) {
      const int64_t sw = stride_w(p), span = (kernel_w(p) - 1) * dilation_w(p);
      left = std::max<int64_t>(0, ceil_div(span - p.pad_w, sw));
      blocks = ceil_div(ceil_div(p.width, sw), J);  // pixel blocks of the widest phase
      ring_width = left + blocks * J + (sw - 1 + p.pad_w) / sw + 1;
      slots = (p.kernel_h - 1) * p.dilation_h / p.stride_h + 2;
      vectors = PixelRing<T>::vectors_for(p.group_channels);
      staging_width = round_up((blocks * J - 1) * sw + sw, L);
      go_ring = 0;
      tap_ring = round_up(PixelRing<T>::elements(slots, ring_width, p.group_channels), S::kAlign);
      band = kernel_band_rows(p, sizeof(T), 1);
      tap_width = round_up(std::max(ring_width, left + round_up(p.out_width, L)), L);
      staging = tap_ring + round_up(TapRing<T>::elements(p, tap_width, band, slots), S::kAlign);
      elements = round_up(staging + staging_width * vectors * L, S::kAlign);
    }
  };

  static int64_t grad_input_scratch(const Problem& p) { return GradInputLayout(p).elements; }

  // The taps v = PAR, PAR + SW, ... of one kernel row (those whose outputs land
  // on this phase of input columns when PAR = (phase + pad_w) % SW), with the
  // grad_output pixels they read loaded once into registers: tap PAR + SW * n
  // reads pixel k + shift - n for pixel k, shift = (phase + pad_w - PAR) / SW.
  template <int PAR>
  static void grad_input_taps(const Problem& p, const T* go, const T* w, int64_t tap_stride,
                              int64_t phase, int64_t pixel, V* acc) {
    constexpr int kTaps = PAR < KW ? (KW - 1 - PAR) / SW + 1 : 0;
    constexpr int kPixels = J + kTaps - 1;
    const int64_t shift = (phase + p.pad_w - PAR) / SW;
    const T* first = go + (shift - (kTaps - 1)) * pixel;
    V xs[kPixels];
#pragma GCC unroll 32
    for (int q = 0; q < kPixels; ++q) xs[q] = S::load(first + q * pixel);
#pragma GCC unroll 8
    for (int n = 0; n < kTaps; ++n) {
      const T* wv = w + (PAR + SW * n) * tap_stride + shift - n;
#pragma GCC unroll 16
      for (int k = 0; k < J; ++k) acc[k] += wv[k] * xs[k + kTaps - 1 - n];
    }
  }

  // J input pixels (column (m0 + k) * stride_w + phase) of one channel vector.
  static void grad_input_pixels(const Problem& p, const PixelRing<T>& go_ring,
                                const TapRing<T>& tap_ring, int64_t y, int64_t phase, int64_t m0,
                                int64_t h, T* staging) {
    const int64_t kw = kernel_w(p), sw = stride_w(p), dw = dilation_w(p), pixel = go_ring.pixel;
    const int64_t level = y + p.pad_h;  // = i * stride_h + u * dilation_h
    V acc[J] = {};
    for (int64_t u = 0; u < p.kernel_h; ++u) {
      const int64_t num = level - u * p.dilation_h;
      if (num < 0) break;  // and for every later u
      if (num % p.stride_h || num / p.stride_h >= p.out_height) continue;
      const int64_t i = num / p.stride_h;
      const T* go = go_ring.row(i) + (go_ring.left + m0) * pixel + h * L;
      const T* w = tap_ring.tap(i, u * kw) + tap_ring.left + m0;  // tap (u, 0)
      if constexpr (KW > 0) {
        if constexpr (SW == 1) {
          grad_input_taps<0>(p, go, w, tap_ring.slots * tap_ring.width, phase, pixel, acc);
        } else {
          if ((phase + p.pad_w) % SW == 0) {
            grad_input_taps<0>(p, go, w, tap_ring.slots * tap_ring.width, phase, pixel, acc);
          } else {
            grad_input_taps<1>(p, go, w, tap_ring.slots * tap_ring.width, phase, pixel, acc);
          }
        }
        continue;
      }
      for (int64_t v = 0; v < kw; ++v) {
        const int64_t col = phase + p.pad_w - v * dw;  // = j * stride_w
        if (col % sw) continue;
        const int64_t shift = floor_div(col, sw);
        const T* wv = w + v * tap_ring.slots * tap_ring.width + shift;
        for (int k = 0; k < J; ++k) acc[k] += wv[k] * S::load(go + (k + shift) * pixel);
      }
    }
    for (int k = 0; k < J; ++k) {
      S::store(staging + (((m0 + k) * sw + phase) * go_ring.vectors + h) * L, acc[k]);
    }
  }

  static void grad_input(const Problem& p, const T* grad_output, const T* weight, T* grad_in,
                         int64_t block, int64_t begin, int64_t end, T* scratch) {
    const GradInputLayout lay(p);
    const int64_t sw = stride_w(p), c0 = first_channel(p, block);
    PixelRing<T> go_ring(grad_output + c0 * p.out_plane(),
                         grad_output + p.batch * p.channels * p.out_plane(), p.group_channels,
                         p.out_height, p.out_width, lay.left, lay.ring_width, lay.slots,
                         scratch + lay.go_ring);
    TapRing<T> tap_ring(weight + block * p.taps() * p.out_plane(), p, lay.left, lay.tap_width,
                        lay.band, lay.slots, scratch + lay.tap_ring);
    T* staging = scratch + lay.staging;
    for (int64_t y = begin; y < end; ++y) {
      const int64_t level = y + p.pad_h;
      const int64_t i_lo =
          std::max<int64_t>(0, ceil_div(level - (p.kernel_h - 1) * p.dilation_h, p.stride_h));
      const int64_t i_hi = std::min(p.out_height - 1, floor_div(level, p.stride_h));
      if (i_hi >= i_lo) {
        go_ring.fill(i_lo, i_hi);
        tap_ring.fill(i_lo, i_hi);
      }
      for (int64_t phase = 0; phase < std::min(sw, p.width); ++phase) {
        const int64_t count = ceil_div(p.width - phase, sw);  // input columns of this phase
        for (int64_t m0 = 0; m0 < count; m0 += J) {
          for (int64_t h = 0; h < lay.vectors; ++h) {
            grad_input_pixels(p, go_ring, tap_ring, y, phase, m0, h, staging);
          }
        }
      }
      store_channel_rows(staging, lay.vectors, p.width, p.group_channels,
                         grad_in + c0 * p.plane() + y * p.width, p.plane());
    }
  }

  // ------------------------------------------------------------- grad_weight
  struct GradWeightLayout {
    int64_t length, slots, band_rows, band_stride, ring, tail, band, elements;
    explicit GradWeightLayout(const Problem& p) {
      const int64_t sw = stride_w(p);
      // Whole vectors from every aligned column block, plus the next vector for the shifts.
      length = round_up(ceil_div(p.out_width, L) * L + (kernel_w(p) - 1) * dilation_w(p) / sw + 1,
                        L) + L;
      slots = (p.kernel_h - 1) * p.dilation_h + R * p.stride_h;
      ring = 0;
      tail = round_up(ChannelRing<T>::elements(slots, p.group_channels, sw, length), S::kAlign);
      band = round_up(tail + R * p.group_channels * L, S::kAlign);
      band_rows = kernel_band_rows(p, sizeof(T), R);
      band_stride = band_rows * p.out_width;
      elements = round_up(band + p.taps() * band_stride, S::kAlign);
    }
  };

  static int64_t grad_weight_scratch(const Problem& p) { return GradWeightLayout(p).elements; }

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

  // Sums over the channels for NQ output rows that all read input row r: row q
  // (of rows i0 .. i0 + R - 1) with kernel row u[q].
  template <int NQ>
  static void grad_weight_row(const Problem& p, const ChannelRing<T>& ring, const T* go,
                              int64_t go_stride, const int64_t* q, const int64_t* u, int64_t r,
                              int64_t j0, int64_t lanes, T* gw, int64_t tap_stride) {
    const int64_t kw = kernel_w(p);
    const T* x_row = ring.row(r) + j0;
    for (int64_t v0 = 0; v0 < kw; v0 += kTapChunk) {
      const int64_t taps = std::min<int64_t>(kTapChunk, kw - v0);
      V acc[NQ][kTapChunk] = {};
      for (int64_t c = 0; c < p.group_channels; ++c) {
        V g[NQ], xs[kTapChunk];
        for (int n = 0; n < NQ; ++n) g[n] = S::load(go + c * go_stride + q[n] * p.out_width);
        tap_inputs(p, ring, x_row + c * ring.row_size, v0, xs);
        for (int n = 0; n < NQ; ++n) {
          for (int t = 0; t < kTapChunk; ++t) acc[n][t] += g[n] * xs[t];
        }
      }
      for (int n = 0; n < NQ; ++n) {
        for (int64_t t = 0; t < taps; ++t) {
          S::store(gw + (u[n] * kw + v0 + t) * tap_stride + q[n] * p.out_width, acc[n][t], lanes);
        }
      }
    }
  }

  static void grad_weight(const Problem& p, const T* grad_output, const T* input, T* grad_w,
                          int64_t block, int64_t begin, int64_t end, T* scratch) {
    const GradWeightLayout lay(p);
    const int64_t kw = kernel_w(p), plane = p.out_plane(), cg = p.group_channels;
    const int64_t c0 = first_channel(p, block);
    ChannelRing<T> ring(input + c0 * p.plane(), input + p.batch * p.channels * p.plane(), cg, p.height, p.width, p.pad_w, stride_w(p),
                        lay.length, lay.slots, scratch + lay.ring);
    const T* go_end = grad_output + p.batch * p.channels * plane;
    T* go_tail = scratch + lay.tail;  // R rows x channels x L
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
      T* gw_rows = band + (i0 - band_first) * p.out_width;  // tap stride lay.band_stride
      const int64_t rows = std::min<int64_t>(R, end - i0);
      int64_t top[R], u_lo[R], u_hi[R], first = INT64_MAX, last = INT64_MIN;
      for (int64_t q = 0; q < rows; ++q) {
        tap_rows(p, i0 + q, &top[q], &u_lo[q], &u_hi[q]);
        for (int64_t u = 0; u < p.kernel_h; ++u) {  // kernel rows reading padding only
          if (u >= u_lo[q] && u < u_hi[q]) continue;
          for (int64_t v = 0; v < kw; ++v) {
            T* dst = gw_rows + (u * kw + v) * lay.band_stride + q * p.out_width;
            std::fill(dst, dst + p.out_width, T(0));
          }
        }
        if (u_hi[q] > u_lo[q]) {
          first = std::min(first, top[q] + u_lo[q] * p.dilation_h);
          last = std::max(last, top[q] + (u_hi[q] - 1) * p.dilation_h);
        }
      }
      if (first > last) continue;
      ring.fill(first, last);
      for (int64_t j0 = 0; j0 < p.out_width; j0 += L) {
        const int64_t lanes = std::min<int64_t>(L, p.out_width - j0);
        const T* go = grad_output + c0 * plane + i0 * p.out_width + j0;
        int64_t go_stride = plane;
        if (go + (cg - 1) * plane + (rows - 1) * p.out_width + L > go_end) {
          for (int64_t q = 0; q < rows; ++q) {  // the very end of grad_output: padded copy
            for (int64_t c = 0; c < cg; ++c) {
              T* d = go_tail + (q * cg + c) * L;
              std::fill(d, d + L, T(0));
              std::memcpy(d, go + c * plane + q * p.out_width, lanes * sizeof(T));
            }
          }
          go = go_tail;
          go_stride = L;
        }
        // go_tail rows are cg * L apart, tensor rows out_width apart.
        const bool tail = go == go_tail;
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
          T* gw = gw_rows + j0;
          if (tail) {  // one row at a time from the padded copy
            for (int64_t k = 0; k < n; ++k) {
              const int64_t zero = 0;
              grad_weight_row<1>(p, ring, go_tail + q[k] * cg * L, L, &zero, &u[k], r, j0,
                                 lanes, gw + q[k] * p.out_width, lay.band_stride);
            }
          } else if (n == 2 && R >= 2) {
            grad_weight_row<(R >= 2 ? 2 : 1)>(p, ring, go, go_stride, q, u, r, j0, lanes, gw,
                                              lay.band_stride);
          } else {
            for (int64_t k = 0; k < n; ++k) {
              grad_weight_row<1>(p, ring, go, go_stride, &q[k], &u[k], r, j0, lanes, gw,
                                 lay.band_stride);
            }
          }
        }
      }
    }
    flush(end);
  }
};

template <typename T, int KW, int SW>
Pass<T> make_pass(const Problem& p, PassId id) {
  using K = Kernels<T, KW, SW>;
  switch (id) {
    case kForward: return {&K::forward, K::forward_scratch(p)};
    case kGradInput: return {&K::grad_input, K::grad_input_scratch(p)};
    default: return {&K::grad_weight, K::grad_weight_scratch(p)};
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
