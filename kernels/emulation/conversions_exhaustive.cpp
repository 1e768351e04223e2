// Every one of the 2^32 floats through the host paths of the kernels' float -> half
// and float -> bfloat16 conversions, and every 16-bit pattern back to float, against
// two oracles:
//  * nearest: the IEEE definition itself. A sorted table of every finite
//    non-negative 16-bit value (and the overflow threshold 2^16 or 2^128 as "inf");
//    the result is the nearer neighbour, ties to the even pattern. Walking the floats
//    in increasing order keeps the neighbours in one pass: no bit tricks shared with
//    the code under test.
//  * torch: c10's own conversions (header-only, -I torch's include directory).
// NaN inputs must give a NaN (payloads are not compared: torch's own CPU paths and
// the PTX differ on them). Built and run by tools/cuda_emulation.py; prints one
// line per check and exits 1 on any mismatch.
#include "cuda_host.h"
#include "involution_cuda.cu"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

namespace {

struct Format {
  const char* name;
  unsigned short (*ours)(float);
  unsigned short (*torch)(float);
  float (*to_float)(unsigned short);  // the kernels' host path
  float (*torch_to_float)(unsigned short);
  unsigned int max_finite;  // largest finite non-negative pattern
  double overflow;          // the value "inf" stands for when rounding
};

unsigned short torch_half(float f) { return c10::detail::fp16_ieee_from_fp32_value(f); }
unsigned short torch_bfloat16(float f) { return c10::detail::round_to_nearest_even(f); }
float torch_half_to_float(unsigned short h) { return c10::detail::fp16_ieee_to_fp32_value(h); }
float torch_bfloat16_to_float(unsigned short b) { return c10::detail::f32_from_bits(b); }

const Format kFormats[] = {
    {"half", mmrednet::float_to_half, torch_half, mmrednet::half_to_float, torch_half_to_float,
     0x7bffu, 65536.0},
    {"bfloat16", mmrednet::float_to_bfloat16, torch_bfloat16, mmrednet::bfloat16_to_float,
     torch_bfloat16_to_float, 0x7f7fu, std::ldexp(1.0, 128)},
};

bool is_nan16(const Format& f, unsigned short bits) {
  return std::isnan(f.torch_to_float(bits));
}

struct Counts {
  std::atomic<unsigned long long> nearest{0}, torch{0}, nan{0};
  std::atomic<unsigned int> first{0xffffffffu};
};

// Floats with magnitude bits [begin, end) (ascending values), both signs.
void sweep_range(const Format& f, const std::vector<double>& table, unsigned int begin,
                 unsigned int end, Counts& counts) {
  // table[k] is the value of pattern k (k <= max_finite) and table[max_finite + 1] the
  // overflow threshold; find the neighbours of the first value by binary search.
  size_t k = 0;
  {
    const double first = (double)__uint_as_float(begin);
    size_t lo = 0, hi = table.size() - 1;
    while (lo < hi) {  // last index with table[index] <= first
      const size_t mid = (lo + hi + 1) / 2;
      if (table[mid] <= first) lo = mid; else hi = mid - 1;
    }
    k = lo;
  }
  for (unsigned int u = begin; u < end; ++u) {
    const float value = __uint_as_float(u);
    const double v = (double)value;
    while (k + 1 < table.size() && table[k + 1] <= v) ++k;
    unsigned int want;
    if (k + 1 == table.size()) {
      want = f.max_finite + 1;  // at or above the overflow threshold: inf
    } else {
      const double below = v - table[k], above = table[k + 1] - v;  // both exact
      want = below < above ? (unsigned int)k
             : above < below ? (unsigned int)k + 1
             : (k % 2 == 0 ? (unsigned int)k : (unsigned int)k + 1);  // tie: even pattern
    }
    for (unsigned int sign = 0; sign < 2; ++sign) {
      const float signed_value = sign ? -value : value;
      const unsigned short expect = (unsigned short)(want | (sign ? 0x8000u : 0u));
      const unsigned short got = f.ours(signed_value);
      if (got != expect) {
        counts.nearest++;
        unsigned int none = 0xffffffffu;
        counts.first.compare_exchange_strong(none, u | (sign << 31));
      }
      if (got != f.torch(signed_value)) counts.torch++;
    }
  }
}

unsigned long long nan_mismatches(const Format& f, unsigned int begin, unsigned int end) {
  unsigned long long bad = 0;
  for (unsigned int u = begin; u < end; ++u)
    for (unsigned int sign = 0; sign < 2; ++sign)
      bad += !is_nan16(f, f.ours(__uint_as_float(u | (sign << 31))));
  return bad;
}

}  // namespace

int main() {
  const unsigned int workers = std::max(1u, std::thread::hardware_concurrency());
  int status = 0;
  for (const Format& f : kFormats) {
    std::vector<double> table;
    for (unsigned int k = 0; k <= f.max_finite; ++k) table.push_back((double)f.torch_to_float(k));
    table.push_back(f.overflow);
    for (size_t k = 1; k < table.size(); ++k)
      if (!(table[k - 1] < table[k])) {
        std::printf("%s: the table of values is not increasing at %zu\n", f.name, k);
        return 1;
      }

    // Finite and infinite floats: magnitudes 0 .. 0x7f800000 inclusive, ascending.
    Counts counts;
    const unsigned int top = 0x7f800001u;
    std::vector<std::thread> threads;
    for (unsigned int w = 0; w < workers; ++w) {
      const unsigned int begin = (unsigned int)((unsigned long long)top * w / workers);
      const unsigned int end = (unsigned int)((unsigned long long)top * (w + 1) / workers);
      threads.emplace_back([&, begin, end] { sweep_range(f, table, begin, end, counts); });
    }
    for (auto& t : threads) t.join();
    const unsigned long long nans = nan_mismatches(f, top, 0x80000000u);
    std::printf("float -> %s: %llu non-NaN floats: %llu differ from the nearest value, %llu from "
                "torch; %llu NaN floats: %llu not NaN\n",
                f.name, 2ull * top, (unsigned long long)counts.nearest,
                (unsigned long long)counts.torch, 2ull * (0x80000000ull - top), nans);
    if (counts.nearest)
      std::printf("  first mismatch: float bits 0x%08x\n", (unsigned int)counts.first);
    status |= counts.nearest || counts.torch || nans;

    unsigned int back = 0;
    for (unsigned int bits = 0; bits < 0x10000u; ++bits) {
      const float ours = f.to_float((unsigned short)bits), theirs = f.torch_to_float(bits);
      const bool same = std::isnan(theirs) ? std::isnan(ours)
                                           : __float_as_uint(ours) == __float_as_uint(theirs);
      back += !same;
    }
    std::printf("%s -> float: 65536 patterns: %u differ from torch\n", f.name, back);
    status |= back != 0;
  }
  return status;
}
