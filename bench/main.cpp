// mqttlb-bench: the load generator (docs/bench.md). Thin: parse, run, report.
#include <csignal>
#include <cstdio>

#include "bench/options.hpp"
#include "bench/report.hpp"
#include "bench/runner.hpp"

int main(int argc, char** argv) {
  bench::ParseResult p = bench::parse_args(argc, argv);
  if (!p.ok) {
    std::fprintf(stderr, "mqttlb-bench: %s\n", p.error.c_str());
    return 2;
  }
  if (p.opts.help) {
    std::fputs(bench::usage().c_str(), stdout);
    return 0;
  }
  std::signal(SIGPIPE, SIG_IGN);
  bench::Runner r(p.opts);
  int code = r.run();
  if (code == 2 && !r.error().empty()) {
    std::fprintf(stderr, "mqttlb-bench: error: %s\n", r.error().c_str());
    return 2;
  }
  bench::print_report(r, p.opts, code);
  if (!r.error().empty())
    std::fprintf(stderr, "mqttlb-bench: error: %s\n", r.error().c_str());
  else if (code == 1)
    std::fprintf(stderr, "mqttlb-bench: the run finished with failures (see report)\n");
  return code;
}
