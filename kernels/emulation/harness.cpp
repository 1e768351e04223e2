// Host emulation of the CUDA kernels of kernels/involution_cuda.cu: a standalone
// executable, built and driven by mmrednet/testing/emulation.py (plain, under
// AddressSanitizer + UndefinedBehaviorSanitizer, or under ThreadSanitizer).
//
// Why running the kernels on the host is faithful: they use no shared memory, no
// barriers, no atomics and no warp intrinsics. A GPU thread walks its work items
// in a grid-stride loop and depends on nothing but its indices, so executing each
// (block, thread) on the host runs exactly the device's index arithmetic, loads and
// stores, with the host paths of the 16-bit conversions (see the kernel source).
//
// Two ways to run a launch:
//  * sequential (workers = 0): the GPU threads one after another;
//  * threaded (workers = W > 0): W host threads run the GPU threads concurrently,
//    with no synchronisation between them inside a launch, so ThreadSanitizer sees
//    every pair of GPU threads placed on different host threads. Pass k puts GPU
//    thread t on host thread (t / W^k) % W; two different GPU threads differ in some
//    base-W digit, so over the ceil(log_W(threads)) passes every pair runs
//    concurrently at least once.
//
// Memory: every tensor gets its own heap allocation of exactly its size, so a read
// or write one element past any buffer lands in AddressSanitizer's redzone. A
// request can make one buffer one element short on purpose (the planted fault of
// the tests), and can run every GPU thread twice at once (the planted data race).
//
// Protocol, one request a line on stdin, raw little-endian payloads after it:
//   launch ENTRY BLOCKS THREADS ELEMENT_BYTES NA NB NRESULT SHORT WORKERS DUPLICATE G0..G15
//     + NA elements of a, NB elements of b
//     -> "ok LOADS_A LOADS_B\n" + NRESULT elements of the result (elements no thread
//        wrote keep all-ones bytes, a NaN in every float format); LOADS_* count the
//        kernel's loads from a and b (sequential runs only, else -1)
//   convert KIND COUNT + COUNT inputs  -> "ok\n" + COUNT outputs
//     KIND: f16_to_f32, bf16_to_f32 (uint16 in, float out), f32_to_f16, f32_to_bf16
//   quit (or end of input)
// SHORT is -, a, b or result; errors are one line "error: ..." and exit status 2.
#include "cuda_host.h"
#include "involution_cuda.cu"
#include "harness_runtime.h"

#include <dlfcn.h>

namespace {

using namespace emulation;

typedef void (*entry_t)(const void*, const void*, void*, long long, long long, long long,
                        long long, long long, long long, long long, long long, long long,
                        long long, long long, long long, long long, long long, long long,
                        long long);

// Loads counted in sequential runs (one host thread), by the buffer they read.
const Buffer* counted_a = nullptr;
const Buffer* counted_b = nullptr;
long long loads_a = 0, loads_b = 0;

bool inside(const Buffer* buffer, const void* p) {
  const unsigned char* q = static_cast<const unsigned char*>(p);
  return q >= buffer->data.get() && q < buffer->data.get() + buffer->bytes;
}

void count_load(const void* p) {
  if (inside(counted_a, p)) ++loads_a;
  else if (inside(counted_b, p)) ++loads_b;
}

void launch(entry_t entry, unsigned int blocks, unsigned int threads, const Buffer& a,
            const Buffer& b, Buffer& result, const long long* g, int workers, bool duplicate) {
  auto gpu_thread = [&](unsigned int) {
    entry(a.data.get(), b.data.get(), result.data.get(), g[0], g[1], g[2], g[3], g[4], g[5],
          g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
  };
  if (workers == 0) {
    counted_a = &a;
    counted_b = &b;
    loads_a = loads_b = 0;
    emulated_load_hook = count_load;
    run_grid(blocks, threads, 0, false, gpu_thread);
    emulated_load_hook = nullptr;
    return;
  }
  loads_a = loads_b = -1;
  run_grid(blocks, threads, workers, duplicate, gpu_thread);
}

void handle_launch(std::istringstream& line) {
  std::string name, shortened;
  unsigned int blocks = 0, threads = 0;
  size_t element_bytes = 0;
  long long na = 0, nb = 0, nresult = 0;
  int workers = 0, duplicate = 0;
  long long g[16];
  line >> name >> blocks >> threads >> element_bytes >> na >> nb >> nresult >> shortened >>
      workers >> duplicate;
  for (long long& v : g) line >> v;
  if (!line || blocks == 0 || threads == 0 || workers < 0) fail("malformed launch request");
  entry_t entry = reinterpret_cast<entry_t>(dlsym(RTLD_DEFAULT, name.c_str()));
  if (entry == nullptr) fail("no entry point " + name);
  Buffer a(na, element_bytes, missing_from(shortened, "a"), true);
  Buffer b(nb, element_bytes, missing_from(shortened, "b"), true);
  Buffer result(nresult, element_bytes, missing_from(shortened, "result"), false);
  launch(entry, blocks, threads, a, b, result, g, workers, duplicate != 0);
  std::fprintf(stdout, "ok %lld %lld\n", loads_a, loads_b);
  write_exact(result.data.get(), result.bytes);
  std::vector<unsigned char> padding((size_t)nresult * element_bytes - result.bytes, 0xff);
  write_exact(padding.data(), padding.size());
}

template <typename In, typename Out>
void convert(long long count, Out (*function)(In)) {
  std::vector<In> in((size_t)count);
  read_exact(in.data(), in.size() * sizeof(In));
  std::vector<Out> out((size_t)count);
  for (size_t i = 0; i < in.size(); ++i) out[i] = function(in[i]);
  std::fputs("ok\n", stdout);
  write_exact(out.data(), out.size() * sizeof(Out));
}

void handle_convert(std::istringstream& line) {
  std::string kind;
  long long count = -1;
  line >> kind >> count;
  if (!line || count < 0) fail("malformed convert request");
  if (kind == "f16_to_f32") {
    convert<unsigned short, float>(count, mmrednet::half_to_float);
  } else if (kind == "bf16_to_f32") {
    convert<unsigned short, float>(count, mmrednet::bfloat16_to_float);
  } else if (kind == "f32_to_f16") {
    convert<float, unsigned short>(count, mmrednet::float_to_half);
  } else if (kind == "f32_to_bf16") {
    convert<float, unsigned short>(count, mmrednet::float_to_bfloat16);
  } else {
    fail("unknown conversion " + kind);
  }
}

}  // namespace

// A planted race for the tests (not a kernel): GPU thread t writes a float to
// result[t % modulus]. Threads t and t + modulus collide; with a modulus that is a
// multiple of the worker count they share a worker in the first pass and run
// concurrently only in a later one, which is what the passes are for.
extern "C" void emulation_planted_race(const void*, const void*, void* result, long long modulus,
                                       long long, long long, long long, long long, long long,
                                       long long, long long, long long, long long, long long,
                                       long long, long long, long long, long long, long long) {
  const unsigned int t = blockIdx.x * blockDim.x + threadIdx.x;
  static_cast<float*>(result)[t % modulus] = (float)t;
}

int main() {
  char text[1024];
  while (std::fgets(text, sizeof text, stdin) != nullptr) {
    std::istringstream line(text);
    std::string command;
    line >> command;
    if (command == "launch") {
      handle_launch(line);
    } else if (command == "convert") {
      handle_convert(line);
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
