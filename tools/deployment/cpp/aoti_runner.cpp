// Run an AOTInductor package (.pt2) from C++, without Python: load our op
// library, load the package's graph, run it on a tensor read from a file and
// write its outputs.
//
//   aoti_runner OP_LIBRARY MODEL.pt2 INPUT.pt OUTPUT.pt [--graph model] [--threads N]
//   aoti_runner OP_LIBRARY MODEL.pt2 INPUT.pt --serve [--graph model] [--threads N]
//
// INPUT.pt: one tensor, as torch.save(tensor, path) writes it.
// OUTPUT.pt: the graph's outputs as a tuple of tensors (torch.load(path) reads it).
// --graph: the AOTInductor model to run: `model` (the main graph), or a two-stage
//          detector's `bbox_head` / `mask_head`; packages of format 1 named the main one `main`.
// --serve: read a line from stdin per run, print the run's milliseconds (the
//          benchmark's timing of the C++-loaded package); stops at end of input.
#include <dlfcn.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/serialize.h>

namespace {

int usage() {
  std::cerr << "usage: aoti_runner OP_LIBRARY MODEL.pt2 INPUT.pt (OUTPUT.pt | --serve) "
               "[--graph NAME] [--threads N]\n";
  return 2;
}

std::vector<char> read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot read " + path);
  return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::vector<char>& data) {
  std::ofstream file(path, std::ios::binary);
  file.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!file) throw std::runtime_error("cannot write " + path);
}

at::Tensor read_tensor(const std::string& path) {
  torch::IValue value = torch::pickle_load(read_file(path));
  if (!value.isTensor()) throw std::runtime_error(path + " does not hold one tensor");
  return value.toTensor().contiguous();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) return usage();
  const std::string library = argv[1], package = argv[2], input_path = argv[3];
  const std::string output = argv[4];
  std::string graph = "model";  // the main graph (torch's default model name)
  int threads = 0;
  for (int i = 5; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--graph" && i + 1 < argc) {
      graph = argv[++i];
    } else if (arg == "--threads" && i + 1 < argc) {
      threads = std::stoi(argv[++i]);
    } else {
      return usage();
    }
  }
  // Global symbols: the package's code finds the op's schema through torch's
  // dispatcher, which the library's static registration fills in.
  if (dlopen(library.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    std::cerr << "aoti_runner: cannot load the op library " << library << ": " << dlerror()
              << "\n";
    return 1;
  }
  try {
    if (threads > 0) at::set_num_threads(threads);
    torch::inductor::AOTIModelPackageLoader loader(package, graph);
    const std::vector<at::Tensor> inputs{read_tensor(input_path)};
    if (output != "--serve") {
      const std::vector<at::Tensor> outputs = loader.run(inputs);
      // A tuple, not a c10::List<Tensor>: torch.load(weights_only=True) reads it.
      std::vector<c10::IValue> values(outputs.begin(), outputs.end());
      write_file(output, torch::pickle_save(c10::ivalue::Tuple::create(std::move(values))));
      return 0;
    }
    std::string line;
    while (std::getline(std::cin, line)) {
      const auto start = std::chrono::steady_clock::now();
      loader.run(inputs);
      const std::chrono::duration<double, std::milli> elapsed =
          std::chrono::steady_clock::now() - start;
      std::cout << elapsed.count() << std::endl;
    }
  } catch (const std::exception& error) {
    std::cerr << "aoti_runner: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
