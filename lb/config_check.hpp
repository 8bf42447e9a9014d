// Loading a config for the balancer: conf's validation (JSON, types, ranges)
// plus the checks that need the files it names — certificates, keys and CA
// bundles are opened and built into TLS contexts once, so `mqttlb --check`
// and a reload catch an unreadable file, a key that does not match its
// certificate or a bad CA bundle, at the key's JSON pointer. Not on the data
// plane (blocking file reads).
#pragma once

#include <string>

#include "conf/loader.hpp"

namespace lb {

conf::LoadResult load_config(const std::string& path);
// The file checks alone, appended to `errors` ("JSON-POINTER: message").
void check_files(const conf::Config& cfg, std::vector<std::string>& errors);
// The admin API's bearer token from admin.token_file: the content without
// trailing whitespace; "" with `err` set when unreadable or empty.
std::string read_token_file(const std::string& path, std::string& err);

}  // namespace lb
