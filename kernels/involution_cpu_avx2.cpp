// The involution CPU kernels compiled for AVX2 with FMA (8 floats a register, 16 registers).
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
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

namespace mmrednet_cpu {
namespace avx2 {
#define MMREDNET_VECTOR_BYTES 32
#define MMREDNET_PIXEL_BLOCK 4
#define MMREDNET_WEIGHT_ROWS 1
#include "involution_cpu_kernels.h"
#include "involution_fused_kernels.h"
}  // namespace avx2

const Isa kIsaAvx2{"avx2", &avx2::select<float>, &avx2::select<double>};
const FusedIsa kFusedAvx2{"avx2", avx2::fused_kernels<float>(), avx2::fused_kernels<double>()};
}  // namespace mmrednet_cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
