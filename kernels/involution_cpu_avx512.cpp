// The involution CPU kernels compiled for AVX-512 (16 floats a register, 32 registers).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "involution_cpu.h"
#include "involution_fused.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")
#endif

namespace mmrednet_cpu {
namespace avx512 {
#define MMREDNET_VECTOR_BYTES 64
#define MMREDNET_PIXEL_BLOCK 8
#define MMREDNET_WEIGHT_ROWS 2
#include "involution_cpu_kernels.h"
#include "involution_fused_kernels.h"
}  // namespace avx512

const Isa kIsaAvx512{"avx512", &avx512::select<float>, &avx512::select<double>};
const FusedIsa kFusedAvx512{"avx512", avx512::fused_kernels<float>(), avx512::fused_kernels<double>()};
}  // namespace mmrednet_cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
