#include "tls_pki.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace tls_test {
namespace {

struct Pki {
  std::string dir;
  Pki() {
    char tmpl[] = "/tmp/mqttlb-tls-test-XXXXXX";
    if (!mkdtemp(tmpl)) {
      std::perror("mkdtemp");
      std::abort();
    }
    dir = tmpl;
    std::string cmd = std::string("sh '") + MQTTLB_CERTS_SH + "' '" + dir + "'";
    if (std::system(cmd.c_str()) != 0) {
      std::fprintf(stderr, "tests/certs.sh failed: %s\n", cmd.c_str());
      std::abort();  // every test needs these files; fail loudly, not one by one
    }
  }
  ~Pki() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

const Pki& pki() {
  static Pki p;
  return p;
}

}  // namespace

std::string pki_dir() {
  return pki().dir;
}
std::string cert(const std::string& name) {
  return pki().dir + "/" + name;
}

}  // namespace tls_test
