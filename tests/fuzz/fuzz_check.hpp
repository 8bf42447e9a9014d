// Shared by the fuzz targets: a check that aborts in every build type (the
// replay tests run in Release, where assert() is compiled out), so libFuzzer
// and ctest both see a failure.
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                              \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)

// FNV-1a: a split point or chunk pattern that the fuzzer controls through
// the input bytes without reserving any of them.
inline unsigned long long fuzz_hash(const unsigned char* d, unsigned long n) {
  unsigned long long h = 1469598103934665603ull;
  for (unsigned long i = 0; i < n; ++i) h = (h ^ d[i]) * 1099511628211ull;
  return h;
}
