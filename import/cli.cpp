// `mqttlb import-haproxy FILE [-o OUT]`: reads the file and the certificates
// it names, writes the JSON, prints the notes. Exit 0 exact, 1 written with
// notes, 2 could not translate (nothing written).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "import/haproxy_import.hpp"

namespace importer {

namespace {

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::nullopt;
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return std::nullopt;
  return ss.str();
}

std::optional<std::vector<std::string>> list_dir(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return std::nullopt;
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(path, ec))
    if (e.is_regular_file(ec)) v.push_back(e.path().string());
  std::sort(v.begin(), v.end());
  return v;
}

int usage() {
  std::fprintf(stderr,
               "usage: mqttlb import-haproxy HAPROXY.CFG [-o MQTTLB.JSON]\n"
               "  writes the equivalent mqttlb config (stdout without -o) and prints one line per\n"
               "  directive translated approximately or not at all; exit 0 exact, 1 written with\n"
               "  notes, 2 could not translate. See docs/migrating-from-haproxy.md.\n");
  return 2;
}

}  // namespace

int run(int argc, char** argv) {
  std::string in, out;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "-o" || a == "--output") && i + 1 < argc)
      out = argv[++i];
    else if (a == "-h" || a == "--help")
      return usage();
    else if (in.empty() && (a.empty() || a[0] != '-'))
      in = a;
    else
      return usage();
  }
  if (in.empty()) return usage();
  auto text = read_file(in);
  if (!text) {
    std::fprintf(stderr, "%s: cannot read the file\n", in.c_str());
    return 2;
  }
  Options opt;
  opt.env = [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
  opt.read_file = read_file;
  opt.list_dir = list_dir;
  Result r = translate(*text, opt);
  for (const auto& n : r.notes) {
    if (n.line)
      std::fprintf(stderr, "%s:%zu: %s: `%s`: %s\n", in.c_str(), n.line, to_string(n.kind),
                   n.directive.c_str(), n.message.c_str());
    else
      std::fprintf(stderr, "%s: %s: %s\n", in.c_str(), to_string(n.kind), n.message.c_str());
  }
  if (r.exit_code == 2) {
    std::fprintf(stderr, "%s: %s; nothing written\n", in.c_str(), r.summary.c_str());
    return 2;
  }
  const std::string json = r.config.dump(2) + "\n";
  if (out.empty()) {
    std::fwrite(json.data(), 1, json.size(), stdout);
  } else {
    std::ofstream f(out, std::ios::binary | std::ios::trunc);
    f << json;
    f.close();
    if (!f) {
      std::fprintf(stderr, "%s: cannot write\n", out.c_str());
      return 2;
    }
  }
  std::fprintf(stderr, "%s: wrote %s: %s\n", in.c_str(), out.empty() ? "stdout" : out.c_str(),
               r.summary.c_str());
  return r.exit_code;
}

}  // namespace importer
