#include "lb/config_check.hpp"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "tls/context.hpp"

namespace lb {

std::string read_token_file(const std::string& path, std::string& err) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    err = "cannot read token file " + path + ": " + std::strerror(errno);
    return "";
  }
  std::stringstream ss;
  ss << f.rdbuf();
  std::string t = ss.str();
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
  if (t.empty()) err = "token file " + path + " is empty";
  return t;
}

void check_files(const conf::Config& cfg, std::vector<std::string>& errors) {
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    const auto& l = cfg.listeners[i];
    if (!l.tls) continue;
    std::string err;
    if (tls::Context::server(*l.tls, err)) continue;
    std::string at = "/listeners/" + std::to_string(i) + "/tls/";
    bool ca = err.rfind("client CA", 0) == 0 || err.rfind("verify_client", 0) == 0;
    errors.push_back(at + (ca ? "ca" : "cert") + ": " + err);
  }
  for (size_t i = 0; i < cfg.backends.size(); ++i) {
    const auto& b = cfg.backends[i];
    if (!b.tls || b.tls->cert.empty() != b.tls->key.empty()) continue;
    std::string err;
    if (tls::Context::client(tls::client_options(*b.tls), err)) continue;
    std::string at = "/backends/" + std::to_string(i) + "/tls/";
    errors.push_back(at + (err.rfind("CA ", 0) == 0 ? "ca" : "cert") + ": " + err);
  }
  // Discovered backends connect with their entry's template (docs/scale-out.md).
  for (size_t i = 0; i < cfg.discovery.size(); ++i) {
    const auto& t = cfg.discovery[i].templ.tls;
    if (!t || t->cert.empty() != t->key.empty()) continue;
    std::string err;
    if (tls::Context::client(tls::client_options(*t), err)) continue;
    std::string at = "/discovery/" + std::to_string(i) + "/template/tls/";
    errors.push_back(at + (err.rfind("CA ", 0) == 0 ? "ca" : "cert") + ": " + err);
  }
  if (cfg.admin.enabled() && !cfg.admin.token_file.empty()) {
    std::string err;
    if (read_token_file(cfg.admin.token_file, err).empty())
      errors.push_back("/admin/token_file: " + err);
  }
}

conf::LoadResult load_config(const std::string& path) {
  conf::LoadResult r = conf::load_file(path);
  check_files(r.parsed, r.errors);  // every error at once, the JSON ones and the files
  if (!r.errors.empty()) r.config.reset();
  return r;
}

}  // namespace lb
