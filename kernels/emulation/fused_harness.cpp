// Host emulation of the fused op's CUDA kernels (kernels/involution_fused_cuda.cu): a
// standalone executable, built and driven by mmrednet/testing/emulation.py like
// harness.cpp (plain, under AddressSanitizer + UndefinedBehaviorSanitizer, or under
// ThreadSanitizer), faithful for the same reason: the fused kernels use no shared
// memory, barriers, atomics or warp intrinsics either.
//
// Every tensor gets its own exact-size allocation; a tensor sent with no element is
// passed as a null pointer, so an entry point that reads a tensor it must not (see the
// kernel source) crashes under the sanitizers.
//
// Protocol, one request a line on stdin, raw little-endian payloads after it:
//   launch ENTRY BLOCKS THREADS WORKERS DUPLICATE SHORT ELEMENT_BYTES RESULT_BYTES
//          N_INPUT N_HIDDEN N_SPAN N_BIAS N_GRAD_OUTPUT N_RESULT G0..G18
//     + the elements of input, hidden, span, bias and grad_output, in that order
//     -> "ok\n" + N_RESULT elements of RESULT_BYTES each (elements no thread wrote keep
//        all-ones bytes, a NaN in every float format)
//   quit (or end of input)
// SHORT is -, or input, hidden, span, bias, grad_output or result: that buffer is one
// element short (the planted fault of the tests). Errors are one line "error: ..." and
// exit status 2.
#include "cuda_host.h"
#include "involution_fused_cuda.cu"
#include "harness_runtime.h"

#include <dlfcn.h>

namespace {

using namespace emulation;

constexpr int kGeometry = 19;  // int64 geometry arguments of every fused entry point
const char* const kInputs[] = {"input", "hidden", "span", "bias", "grad_output"};

typedef void (*fused_entry_t)(const void*, const void*, const void*, const void*, const void*,
                              void*, long long, long long, long long, long long, long long,
                              long long, long long, long long, long long, long long, long long,
                              long long, long long, long long, long long, long long, long long,
                              long long, long long);

const void* pointer(const Buffer& buffer, long long count) {
  return count > 0 ? buffer.data.get() : nullptr;
}

void handle_launch(std::istringstream& line) {
  std::string name, shortened;
  unsigned int blocks = 0, threads = 0;
  int workers = 0, duplicate = 0;
  size_t element_bytes = 0, result_bytes = 0;
  long long counts[6], g[kGeometry];
  line >> name >> blocks >> threads >> workers >> duplicate >> shortened >> element_bytes >>
      result_bytes;
  for (long long& v : counts) line >> v;
  for (long long& v : g) line >> v;
  if (!line || blocks == 0 || threads == 0 || workers < 0 || element_bytes == 0 ||
      result_bytes == 0)
    fail("malformed launch request");
  for (long long v : counts)
    if (v < 0) fail("malformed launch request: a negative element count");
  fused_entry_t entry = reinterpret_cast<fused_entry_t>(dlsym(RTLD_DEFAULT, name.c_str()));
  if (entry == nullptr) fail("no entry point " + name);
  std::vector<std::unique_ptr<Buffer>> inputs;
  for (int i = 0; i < 5; ++i)
    inputs.emplace_back(new Buffer(counts[i], element_bytes, missing_from(shortened, kInputs[i]),
                                   true));
  Buffer result(counts[5], result_bytes, missing_from(shortened, "result"), false);
  void* out = counts[5] > 0 ? result.data.get() : nullptr;
  run_grid(blocks, threads, workers, duplicate != 0, [&](unsigned int) {
    entry(pointer(*inputs[0], counts[0]), pointer(*inputs[1], counts[1]),
          pointer(*inputs[2], counts[2]), pointer(*inputs[3], counts[3]),
          pointer(*inputs[4], counts[4]), out, g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7],
          g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15], g[16], g[17], g[18]);
  });
  std::fputs("ok\n", stdout);
  write_exact(result.data.get(), result.bytes);
  std::vector<unsigned char> padding((size_t)counts[5] * result_bytes - result.bytes, 0xff);
  write_exact(padding.data(), padding.size());
}

}  // namespace

int main() {
  char text[1024];
  while (std::fgets(text, sizeof text, stdin) != nullptr) {
    std::istringstream line(text);
    std::string command;
    line >> command;
    if (command == "launch") {
      handle_launch(line);
    } else if (command == "quit") {
      break;
    } else {
      fail("unknown request " + command);
    }
    std::fflush(stdout);
  }
  pool.reset();
  return 0;
}
