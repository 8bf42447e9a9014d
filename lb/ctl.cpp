// `mqttlb ctl`: arguments, where the admin API is, one HTTP request through
// libcurl, and the exit code. The human-readable output is in ctl_print.cpp.
#include "lb/ctl.hpp"

#include <curl/curl.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "lb/ctl_print.hpp"

namespace lb::ctl {

using json = nlohmann::json;

namespace {

constexpr int kOk = 0, kRefused = 1, kUsage = 2, kUnreachable = 3;

int usage(const char* why = nullptr) {
  if (why) std::fprintf(stderr, "mqttlb ctl: %s\n", why);
  std::fprintf(
      stderr,
      "usage: mqttlb ctl [-c FILE] [--admin ADDR] [--token-file F] [--json] COMMAND [ARGS]\n"
      "commands:\n"
      "  status                       version, uptime, listeners, backends, evacuations, reloads\n"
      "  backends                     every backend: state, admin state, weight, sessions, check\n"
      "  drain NAME | maint NAME | ready NAME\n"
      "                               set a backend's admin state (survives reloads unless the\n"
      "                               file sets \"admin\" for it)\n"
      "  weight NAME N                set a backend's weight (1..256)\n"
      "  evacuate NAME [--rate N] [--deadline S] [--reason "
      "use-another-server|server-shutting-down]\n"
      "                [--server-reference HOST:PORT]\n"
      "                               move NAME's sessions off at N/s, close the rest after S s\n"
      "  cancel-evacuation NAME\n"
      "  client ID | kick ID          show / disconnect a client by its client id\n"
      "  reload                       reload the config file (as SIGHUP); errors as --check\n"
      "  config                       the running config, secrets redacted\n"
      "  upgrade                      start a binary upgrade\n"
      "options:\n"
      "  -c FILE          config to read admin.bind and admin.token_file from (default %s)\n"
      "  --admin ADDR     HOST:PORT or unix:PATH (instead of the config's admin.bind)\n"
      "  --token-file F   bearer token file (instead of the config's admin.token_file)\n"
      "  --json           print the server's JSON reply\n"
      "exit: 0 done, 1 refused by the server (4xx/5xx), 2 usage, 3 admin API unreachable\n",
      kDefaultConfig);
  return kUsage;
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::nullopt;
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Options {
  std::string config = kDefaultConfig;
  bool config_given = false;
  std::string admin, token_file;
  bool as_json = false;
  std::vector<std::string> args;  // the command and its operands
  // evacuate
  std::optional<double> rate;
  std::optional<long> deadline;
  std::string reason, server_reference;
};

// Where the API is and the token, from the options and the config file.
// Only the "admin" section is read, so a config that does not validate (the
// one about to be reloaded) still names it.
bool locate(Options& o, std::string& token, std::string& err) {
  std::optional<std::string> text = read_file(o.config);
  json admin;
  if (text) {
    json cfg = json::parse(*text, nullptr, false);
    if (cfg.is_object() && cfg.contains("admin") && cfg["admin"].is_object()) admin = cfg["admin"];
    if (cfg.is_discarded() && o.admin.empty()) {
      err = o.config + " is not valid JSON; give --admin ADDR";
      return false;
    }
  } else if (o.admin.empty() || o.config_given) {
    err = "cannot read " + o.config + ": " + std::strerror(errno) +
          (o.admin.empty() ? " (give -c FILE or --admin ADDR)" : "");
    return false;
  }
  if (o.admin.empty()) {
    if (!admin.is_object() || !admin.contains("bind") || !admin["bind"].is_string()) {
      err = o.config + " has no admin.bind (the admin API is off); give --admin ADDR";
      return false;
    }
    o.admin = admin["bind"].get<std::string>();
  }
  std::string tf = o.token_file;
  if (tf.empty() && admin.is_object() && admin.contains("token_file") &&
      admin["token_file"].is_string())
    tf = admin["token_file"].get<std::string>();
  if (!tf.empty()) {
    auto t = read_file(tf);
    if (!t) {
      err = "cannot read the token file " + tf + ": " + std::strerror(errno);
      return false;
    }
    token = *t;
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back())))
      token.pop_back();
  }
  return true;
}

struct Reply {
  bool reached = false;
  std::string transport_error;
  long status = 0;
  std::string body;
};

size_t collect(char* p, size_t size, size_t n, void* out) {
  auto* s = static_cast<std::string*>(out);
  if (s->size() + size * n > (64u << 20)) return 0;  // a runaway answer: stop
  s->append(p, size * n);
  return size * n;
}

Reply request(const std::string& admin, const std::string& token, const std::string& method,
              const std::string& path, const std::string& body) {
  Reply r;
  CURL* c = curl_easy_init();
  if (!c) {
    r.transport_error = "curl_easy_init failed";
    return r;
  }
  std::string url;
  if (admin.rfind("unix:", 0) == 0) {
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, admin.c_str() + 5);
    url = "http://localhost" + path;
  } else {
    std::string base = admin.rfind("http://", 0) == 0 ? admin.substr(7) : admin;
    url = "http://" + base + path;
  }
  curl_slist* headers = nullptr;
  std::string auth = "Authorization: Bearer " + token;
  if (!token.empty()) headers = curl_slist_append(headers, auth.c_str());
  headers = curl_slist_append(headers, "Accept: application/json");
  if (!body.empty()) headers = curl_slist_append(headers, "Content-Type: application/json");
  char errbuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method != "GET") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 75000L);  // a reload may take up to 60 s
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");  // never through an http_proxy
  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_OK) {
    r.reached = true;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  } else {
    r.transport_error = errbuf[0] ? errbuf : curl_easy_strerror(rc);
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(c);
  return r;
}

std::string escape(const std::string& s) {
  char* e = curl_easy_escape(nullptr, s.data(), static_cast<int>(s.size()));
  std::string out = e ? e : "";
  curl_free(e);
  return out;
}

bool parse_args(int argc, char** argv, Options& o, std::string& err) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) {
        err = a + " needs a value";
        return false;
      }
      out = argv[++i];
      return true;
    };
    std::string v;
    if (a == "-c" || a == "--config") {
      if (!value(o.config)) return false;
      o.config_given = true;
    } else if (a == "--admin") {
      if (!value(o.admin)) return false;
    } else if (a == "--token-file") {
      if (!value(o.token_file)) return false;
    } else if (a == "--json") {
      o.as_json = true;
    } else if (a == "--rate") {
      if (!value(v)) return false;
      char* end = nullptr;
      double d = std::strtod(v.c_str(), &end);
      if (v.empty() || *end || !(d > 0)) return err = "--rate needs a positive number", false;
      o.rate = d;
    } else if (a == "--deadline") {
      if (!value(v)) return false;
      char* end = nullptr;
      long d = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || d < 1) return err = "--deadline needs whole seconds >= 1", false;
      o.deadline = d;
    } else if (a == "--reason") {
      if (!value(o.reason)) return false;
    } else if (a == "--server-reference") {
      if (!value(o.server_reference)) return false;
    } else if (a == "-h" || a == "--help") {
      return false;
    } else if (a.size() > 1 && a[0] == '-' && o.args.empty()) {
      err = "unknown option " + a;
      return false;
    } else {
      o.args.push_back(a);  // after the command, operands may start with '-' (client ids)
    }
  }
  if (o.args.empty()) err = "no command";
  return !o.args.empty();
}

// The request a command makes: method, path, body; false on bad operands.
struct Call {
  std::string method = "GET", path;
  json body;  // null: none
};

bool to_call(const Options& o, Call& c, std::string& err) {
  const std::string& cmd = o.args[0];
  const size_t n = o.args.size() - 1;
  auto need = [&](size_t k) {
    if (n == k) return true;
    err = cmd + " takes " + std::to_string(k) + " argument" + (k == 1 ? "" : "s");
    return false;
  };
  auto backend = [&](const std::string& suffix = "") {
    return "/api/v1/backends/" + escape(o.args[1]) + suffix;
  };
  if (cmd != "evacuate" &&
      (o.rate || o.deadline || !o.reason.empty() || !o.server_reference.empty())) {
    err = "--rate, --deadline, --reason and --server-reference go with evacuate";
    return false;
  }
  if (cmd == "status" || cmd == "backends" || cmd == "config") {
    c.path = "/api/v1/" + cmd;
    return need(0);
  }
  if (cmd == "drain" || cmd == "maint" || cmd == "ready") {
    if (!need(1)) return false;
    c = {"POST", backend(), {{"state", cmd}}};
    return true;
  }
  if (cmd == "weight") {
    if (!need(2)) return false;
    char* end = nullptr;
    long w = std::strtol(o.args[2].c_str(), &end, 10);
    if (o.args[2].empty() || *end) return err = "weight N: N must be an integer", false;
    c = {"POST", backend(), {{"weight", w}}};
    return true;
  }
  if (cmd == "evacuate") {
    if (!need(1)) return false;
    c = {"POST", backend("/evacuate"), json::object()};
    if (o.rate) c.body["rate_per_s"] = *o.rate;
    if (o.deadline) c.body["deadline_s"] = *o.deadline;
    if (!o.reason.empty()) c.body["reason"] = o.reason;
    if (!o.server_reference.empty()) c.body["server_reference"] = o.server_reference;
    return true;
  }
  if (cmd == "cancel-evacuation") {
    if (!need(1)) return false;
    c = {"DELETE", backend("/evacuate"), nullptr};
    return true;
  }
  if (cmd == "client" || cmd == "kick") {
    if (!need(1)) return false;
    c = {cmd == "kick" ? "DELETE" : "GET", "/api/v1/clients/" + escape(o.args[1]), nullptr};
    return true;
  }
  if (cmd == "reload" || cmd == "upgrade") {
    c = {"POST", "/api/v1/" + cmd, nullptr};
    return need(0);
  }
  err = "unknown command " + cmd;
  return false;
}

}  // namespace

int run(int argc, char** argv) {
  Options o;
  std::string err;
  if (!parse_args(argc, argv, o, err)) return usage(err.empty() ? nullptr : err.c_str());
  Call call;
  if (!to_call(o, call, err)) return usage(err.c_str());
  std::string token;
  if (!locate(o, token, err)) {
    std::fprintf(stderr, "mqttlb ctl: %s\n", err.c_str());
    return kUsage;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  Reply r = request(o.admin, token, call.method, call.path,
                    call.body.is_null() ? std::string() : call.body.dump());
  curl_global_cleanup();
  if (!r.reached) {
    std::fprintf(stderr, "mqttlb ctl: cannot reach the admin API at %s: %s\n", o.admin.c_str(),
                 r.transport_error.c_str());
    return kUnreachable;
  }
  json body = json::parse(r.body, nullptr, false);
  if (body.is_discarded()) {
    std::fprintf(stderr, "mqttlb ctl: %s answered HTTP %ld without the admin API's JSON\n",
                 o.admin.c_str(), r.status);
    return kUnreachable;
  }
  const bool ok = r.status >= 200 && r.status < 300;
  if (o.as_json) {
    std::printf("%s\n", body.dump(2, ' ', false, json::error_handler_t::replace).c_str());
  } else if (ok) {
    print_human(o.args[0], body);
  } else {
    print_error(o.args[0], r.status, body);
  }
  return ok ? kOk : kRefused;
}

}  // namespace lb::ctl
