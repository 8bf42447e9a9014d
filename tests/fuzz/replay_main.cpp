// Replays a fuzz target's corpus with an ordinary compiler: calls
// LLVMFuzzerTestOneInput on every file of every directory (or file) given on
// the command line. A failed check aborts (tests/fuzz/fuzz_check.hpp); an
// empty corpus is a failure too, so a lost corpus cannot pass silently.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
    return 2;
  }
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    std::error_code ec;
    fs::path p(argv[i]);
    if (fs::is_directory(p, ec)) {
      for (const auto& ent : fs::directory_iterator(p, ec))
        if (ent.is_regular_file()) files.push_back(ent.path());
    } else if (fs::is_regular_file(p, ec)) {
      files.push_back(p);
    } else {
      std::fprintf(stderr, "%s: not found\n", argv[i]);
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "no corpus files\n");
    return 1;
  }
  for (const auto& f : files) {
    std::ifstream is(f, std::ios::binary);
    std::vector<uint8_t> buf((std::istreambuf_iterator<char>(is)),
                             std::istreambuf_iterator<char>());
    if (!is.eof() && is.fail()) {
      std::fprintf(stderr, "%s: read error\n", f.c_str());
      return 2;
    }
    // A copy of exactly the file's size, so ASan flags any read past the end.
    std::vector<uint8_t> exact(buf.begin(), buf.end());
    LLVMFuzzerTestOneInput(exact.data(), exact.size());
  }
  std::printf("replayed %zu inputs\n", files.size());
  return 0;
}
