// Test-only PKI: runs tests/certs.sh once per test process into a temp dir
// that is removed at exit. cert("ca.crt") → absolute path of that file.
#pragma once

#include <string>

namespace tls_test {
std::string cert(const std::string& name);
std::string pki_dir();
}  // namespace tls_test
