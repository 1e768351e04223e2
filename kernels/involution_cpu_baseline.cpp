// The involution CPU kernels for any CPU: 16-byte vectors (SSE2 on x86-64, NEON on arm64).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "involution_cpu.h"
#include "involution_fused.h"

namespace mmrednet_cpu {
namespace baseline {
#define MMREDNET_VECTOR_BYTES 16
#define MMREDNET_PIXEL_BLOCK 4
#define MMREDNET_WEIGHT_ROWS 1
#include "involution_cpu_kernels.h"
#include "involution_fused_kernels.h"
}  // namespace baseline

const Isa kIsaBaseline{"baseline", &baseline::select<float>, &baseline::select<double>};
const FusedIsa kFusedBaseline{"baseline", baseline::fused_kernels<float>(), baseline::fused_kernels<double>()};
}  // namespace mmrednet_cpu
