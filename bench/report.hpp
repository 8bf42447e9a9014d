// Final results of a run: human-readable text or one JSON object.
#pragma once

#include <string>

#include "bench/runner.hpp"

namespace bench {

// Prints the report to stdout. `exit_code` and the runner's error are included.
void print_report(const Runner& r, const Options& o, int exit_code);

}  // namespace bench
