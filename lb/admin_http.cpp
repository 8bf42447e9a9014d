#include "lb/admin_http.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstring>

#include "lb/config_check.hpp"
#include "lb/log.hpp"
#include "net/address.hpp"

namespace lb {

using json = nlohmann::json;

struct AdminServer::Answer {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

// One request, from its headers to its completion (owned by libmicrohttpd's
// per-connection context; freed in AdminGlue::completed).
struct AdminServer::Request {
  std::string method, path;
  std::string body;
  bool too_large = false;
};

namespace {

AdminServer::Answer json_answer(int status, const json& body);

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

std::string where_of(const conf::Admin& cfg) {
  return cfg.bind ? "http://" + cfg.bind->str() : "unix:" + cfg.unix_path;
}

int open_tcp(const conf::Endpoint& ep, std::string& err) {
  sockaddr_storage addr{};
  if (!net::to_sockaddr(ep.host, ep.port, addr)) {
    err = "admin: bad address " + ep.str();
    return -1;
  }
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    err = errno_text("admin: socket");
    return -1;
  }
  int one = 1;
  // No SO_REUSEPORT: a second mqttlb on the same admin address must fail.
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      ::bind(fd, reinterpret_cast<sockaddr*>(&addr), net::sockaddr_len(addr)) != 0 ||
      ::listen(fd, 64) != 0) {
    err = errno_text("admin: cannot bind " + ep.str());
    ::close(fd);
    return -1;
  }
  return fd;
}

// A unix socket at `path`, mode 0660. A socket file nobody listens on (left
// by a crash) is replaced; a live one or any other file is an error.
int open_unix(const std::string& path, uint64_t& ino, std::string& err) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    err = "admin: unix socket path too long: " + path;
    return -1;
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      err = "admin: unix:" + path + " exists and is not a socket";
      return -1;
    }
    int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live =
        probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    if (probe >= 0) ::close(probe);
    if (live) {
      err = "admin: another process listens on unix:" + path;
      return -1;
    }
    ::unlink(path.c_str());  // stale
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    err = errno_text("admin: socket");
    return -1;
  }
  // Linux creates the file with the socket inode's mode (minus the umask):
  // narrowed before bind, so the file is never more open than 0660.
  ::fchmod(fd, 0660);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::chmod(path.c_str(), 0660) != 0 || ::listen(fd, 64) != 0 || ::stat(path.c_str(), &st) != 0) {
    err = errno_text("admin: cannot bind unix:" + path);
    ::close(fd);
    return -1;
  }
  ino = st.st_ino;
  return fd;
}

void sha256(const std::string& s, unsigned char out[32]) {
  unsigned int n = 32;
  EVP_Digest(s.data(), s.size(), out, &n, EVP_sha256(), nullptr);
}

std::string peer_of(MHD_Connection* c) {
  const MHD_ConnectionInfo* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (!info || !info->client_addr) return "unknown";
  const sockaddr* sa = info->client_addr;
  char ip[INET6_ADDRSTRLEN] = "";
  if (sa->sa_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    return std::string(ip) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    return "[" + std::string(ip) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  return sa->sa_family == AF_UNIX ? "unix" : "unknown";
}

std::string header(MHD_Connection* c, const char* name) {
  const char* v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
  return v ? v : "";
}

AdminServer::Answer json_answer(int status, const json& body) {
  AdminServer::Answer a;
  a.status = status;
  // Client ids and names are bytes: never throw on invalid UTF-8.
  a.body = body.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  return a;
}

AdminServer::Answer error_answer(int status, const std::string& msg) {
  return json_answer(status, {{"error", msg}});
}

}  // namespace

// ---- libmicrohttpd's callbacks ----------------------------------------------------

struct AdminGlue {
  // Called for the headers (ctx null), then once per body chunk, then once
  // with *upload_size == 0 when the request is complete.
  static MHD_Result request(void* cls, MHD_Connection* c, const char* url, const char* method,
                            const char* version, const char* upload, size_t* upload_size,
                            void** ctx) {
    try {
      return handle(cls, c, url, method, version, upload, upload_size, ctx);
    } catch (const std::exception& e) {  // nothing may unwind into libmicrohttpd
      logf(LogLevel::Error, "admin: %s", e.what());
      return MHD_NO;  // the connection is closed
    }
  }

  static MHD_Result handle(void* cls, MHD_Connection* c, const char* url, const char* method,
                           const char*, const char* upload, size_t* upload_size, void** ctx) {
    auto* self = static_cast<AdminServer*>(cls);
    auto* req = static_cast<AdminServer::Request*>(*ctx);
    if (!req) {
      req = new AdminServer::Request;
      *ctx = req;
      {
        std::lock_guard<std::mutex> g(self->flight_mu_);
        ++self->in_flight_;
      }
      req->method = method;
      req->path = url;
      AdminServer::Answer early;
      if (self->precheck(c, *req, early)) return send(self, c, *req, early);
      return MHD_YES;
    }
    if (*upload_size != 0) {  // a body chunk: kept up to the cap, the rest read and dropped
      if (!req->too_large && req->body.size() + *upload_size <= AdminServer::kMaxBody)
        req->body.append(upload, *upload_size);
      else
        req->too_large = true;
      if (req->too_large) req->body.clear();
      *upload_size = 0;
      return MHD_YES;
    }
    if (req->too_large) {
      return send(self, c, *req,
                  error_answer(413, "request body over " + std::to_string(AdminServer::kMaxBody) +
                                        " bytes"));
    }
    AdminRoute r = route_admin(req->method, req->path);
    AdminServer::Answer a;
    try {
      a = self->dispatch(r, req->method, req->body);
    } catch (const std::exception& e) {
      a = error_answer(500, std::string("internal error: ") + e.what());
    }
    return send(self, c, *req, a);
  }

  static MHD_Result send(AdminServer* self, MHD_Connection* c, const AdminServer::Request& req,
                         const AdminServer::Answer& a) {
    MHD_Response* resp = MHD_create_response_from_buffer(
        a.body.size(), const_cast<char*>(a.body.data()), MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", a.content_type.c_str());
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    for (const auto& [k, v] : a.headers) MHD_add_response_header(resp, k.c_str(), v.c_str());
    MHD_Result ok = MHD_queue_response(c, static_cast<unsigned>(a.status), resp);
    MHD_destroy_response(resp);
    if (admin_method_mutates(req.method)) self->audit(c, req, a.status);
    return ok;
  }

  static void completed(void* cls, MHD_Connection*, void** ctx, MHD_RequestTerminationCode) {
    if (!*ctx) return;
    delete static_cast<AdminServer::Request*>(*ctx);
    *ctx = nullptr;
    auto* self = static_cast<AdminServer*>(cls);
    std::lock_guard<std::mutex> g(self->flight_mu_);
    --self->in_flight_;
    self->flight_cv_.notify_all();
  }

  // Paths and query values reach us as sent: admin_route.hpp decodes them
  // (after splitting the path, so an encoded '/' stays inside a client id).
  static size_t keep_escaped(void*, MHD_Connection*, char* s) { return std::strlen(s); }

  static void log(void*, const char* fmt, va_list ap) {
    char buf[512];
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = std::strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = 0;
    logf(LogLevel::Warn, "admin: %s", buf);
  }
};

// ---- the server ------------------------------------------------------------------------

std::unique_ptr<AdminServer> AdminServer::start(const conf::Admin& cfg, AdminOps& ops,
                                                std::string& err, int inherited_fd) {
  std::unique_ptr<AdminServer> s(new AdminServer(ops));
  if (!cfg.token_file.empty()) {
    s->token_ = read_token_file(cfg.token_file, err);
    if (s->token_.empty()) {
      err = "admin: " + err;
      return nullptr;
    }
  }
  s->where_ = where_of(cfg);
  int fd = inherited_fd;
  if (fd < 0 && cfg.bind) fd = open_tcp(*cfg.bind, err);
  if (fd < 0 && !cfg.bind) {
    fd = open_unix(cfg.unix_path, s->unix_ino_, err);
    if (fd >= 0) s->unix_path_ = cfg.unix_path;
  }
  if (fd < 0) return nullptr;
  // One thread per connection: an operation may wait for the worker loops
  // (a reload up to 60 s) without holding up the other requests.
  const unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                         MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
  s->daemon_ = MHD_start_daemon(
      flags, 0, nullptr, nullptr, &AdminGlue::request, s.get(), MHD_OPTION_EXTERNAL_LOGGER,
      &AdminGlue::log, nullptr, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
      kMaxConnections, MHD_OPTION_CONNECTION_TIMEOUT, kIdleTimeoutS, MHD_OPTION_NOTIFY_COMPLETED,
      &AdminGlue::completed, s.get(), MHD_OPTION_UNESCAPE_CALLBACK, &AdminGlue::keep_escaped,
      nullptr, MHD_OPTION_END);
  if (!s->daemon_) {
    err = "admin: cannot start the HTTP server on " + s->where_;
    ::close(fd);
    if (!s->unix_path_.empty()) ::unlink(s->unix_path_.c_str());
    s->unix_path_.clear();
    return nullptr;
  }
  logf(LogLevel::Info, "admin: %s/ (%s)", s->where_.c_str(),
       s->token_.empty() ? "no token" : "bearer token required");
  return s;
}

void AdminServer::stop(uint32_t max_wait_ms) {
  if (!daemon_) return;
  // No new connections from here on; the socket is ours again to close.
  MHD_socket fd = MHD_quiesce_daemon(daemon_);
  if (fd != MHD_INVALID_SOCKET) ::close(fd);
  struct stat st;
  if (!unix_path_.empty() && ::stat(unix_path_.c_str(), &st) == 0 && st.st_ino == unix_ino_)
    ::unlink(unix_path_.c_str());
  {
    // A request in progress (a reload asked over this very server) gets its answer.
    std::unique_lock<std::mutex> lk(flight_mu_);
    flight_cv_.wait_for(lk, std::chrono::milliseconds(max_wait_ms),
                        [this] { return in_flight_ == 0; });
  }
  MHD_stop_daemon(daemon_);  // closes the connections left, joins its threads
  daemon_ = nullptr;
}

AdminServer::~AdminServer() {
  stop(5000);
}

bool AdminServer::reload_token(const std::string& token_file, std::string& err) {
  std::string t;
  if (!token_file.empty()) {
    t = read_token_file(token_file, err);
    if (t.empty()) {
      err = "admin: " + err;
      return false;
    }
  }
  std::lock_guard<std::mutex> g(token_mu_);
  token_ = std::move(t);
  return true;
}

bool AdminServer::authorized(MHD_Connection* c, bool page) const {
  std::string want;
  {
    std::lock_guard<std::mutex> g(token_mu_);
    want = token_;
  }
  if (want.empty()) return true;
  std::string got;
  std::string h = header(c, MHD_HTTP_HEADER_AUTHORIZATION);
  if (h.size() > 7 && strncasecmp(h.c_str(), "Bearer ", 7) == 0) {
    got = h.substr(7);
    while (!got.empty() && got.front() == ' ') got.erase(0, 1);
    while (!got.empty() && got.back() == ' ') got.pop_back();
  } else if (page) {
    // The status page only: a browser cannot send a header when it opens a
    // URL, so GET /?token=... is accepted there (docs/admin-api.md).
    const char* q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");
    if (q) got = percent_decode(q).value_or("");
  }
  if (got.empty()) return false;
  // Constant time in the token's content and length: compare digests.
  unsigned char a[32], b[32];
  sha256(want, a);
  sha256(got, b);
  return CRYPTO_memcmp(a, b, sizeof a) == 0;
}

bool AdminServer::precheck(MHD_Connection* c, Request& req, Answer& out) const {
  if (!admin_path_is_public(req.path) && !authorized(c, req.path == "/")) {
    out = error_answer(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)");
    out.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"mqttlb\"");
    return true;
  }
  AdminRoute r = route_admin(req.method, req.path);
  if (r.error == 404) {
    out = error_answer(404, "no such path: " + percent_escape_for_log(req.path, 200));
    return true;
  }
  if (r.error == 405) {
    out = error_answer(405, req.method + " is not allowed here (allowed: " + r.allow + ")");
    out.headers.emplace_back("Allow", r.allow);
    return true;
  }
  if (r.error) {
    out = error_answer(400, "bad percent-encoding in the path");
    return true;
  }
  std::string len = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (!len.empty() && std::strtoull(len.c_str(), nullptr, 10) > kMaxBody) {
    out = error_answer(413, "request body over " + std::to_string(kMaxBody) + " bytes");
    return true;
  }
  return false;
}

AdminServer::Answer AdminServer::dispatch(const AdminRoute& r, const std::string& method,
                                          const std::string& raw) {
  json body;  // null when the request has none
  if (admin_method_mutates(method) && raw.find_first_not_of(" \t\r\n") != std::string::npos) {
    body = json::parse(raw, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) return error_answer(400, "the request body is not valid JSON");
  }
  auto reply = [](const AdminReply& a) { return json_answer(a.status, a.body); };
  switch (r.op) {
    case AdminOp::Healthz:
      return reply(ops_.healthz());
    case AdminOp::Readyz:
      return reply(ops_.readyz());
    case AdminOp::Status:
      return reply(ops_.status());
    case AdminOp::Backends:
      return reply(ops_.backends());
    case AdminOp::SetBackend:
      return reply(ops_.set_backend(r.arg, body));
    case AdminOp::Evacuate:
      return reply(ops_.evacuate(r.arg, body));
    case AdminOp::CancelEvacuation:
      return reply(ops_.cancel_evacuation(r.arg));
    case AdminOp::Client:
      return reply(ops_.client(r.arg));
    case AdminOp::Kick:
      return reply(ops_.kick(r.arg));
    case AdminOp::Reload:
      return reply(ops_.reload());
    case AdminOp::Config:
      return reply(ops_.config());
    case AdminOp::Upgrade:
      return reply(ops_.upgrade());
    case AdminOp::Metrics: {
      Answer a;
      a.body = ops_.metrics_text();
      a.content_type = "text/plain; version=0.0.4; charset=utf-8";
      return a;
    }
    case AdminOp::Page: {
      Answer a;
      a.body = admin_status_page();
      a.content_type = "text/html; charset=utf-8";
      // Inline script and style only; data from this origin only; the token
      // (in the URL) is never sent on as a Referer.
      a.headers.emplace_back("Content-Security-Policy",
                             "default-src 'none'; script-src 'unsafe-inline'; style-src "
                             "'unsafe-inline'; connect-src 'self'; img-src data:; base-uri "
                             "'none'; form-action 'none'; frame-ancestors 'none'");
      a.headers.emplace_back("Referrer-Policy", "no-referrer");
      return a;
    }
  }
  return error_answer(404, "no such path");
}

void AdminServer::audit(MHD_Connection* c, const Request& req, int status) const {
  std::string line = req.method + " " + percent_escape_for_log(req.path) + " peer=" + peer_of(c) +
                     " status=" + std::to_string(status);
  if (!req.body.empty()) line += " body=\"" + log_escape(req.body, 256) + "\"";
  ops_.audit(line);
}

// ---- AdminHost ----------------------------------------------------------------------------

AdminHost::~AdminHost() {
  server_.reset();
  for (auto& r : retiring_) r.thread.join();
}

void AdminHost::retire(std::unique_ptr<AdminServer> s) {
  if (!s) return;
  for (auto it = retiring_.begin(); it != retiring_.end();) {  // the ones done by now
    if (it->done->load()) {
      it->thread.join();
      it = retiring_.erase(it);
    } else {
      ++it;
    }
  }
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::thread t([s = std::move(s), done]() mutable {
    s->stop(65'000);  // a reload asked over it waits up to 60 s for the main loop
    s.reset();
    done->store(true);
  });
  retiring_.push_back({std::move(t), done});
}

bool AdminHost::apply(const conf::Admin& cfg, bool quiet, std::string* err_out) {
  if (released_) return true;
  std::string err;
  if (!cfg.enabled()) {
    if (server_)
      logf(LogLevel::Info, "admin: %s stopped (no admin section)", server_->where().c_str());
    retire(std::move(server_));
    return true;
  }
  if (server_ && where_of(cfg) == server_->where()) {  // same address: maybe a new token
    // The token file was checked with the config; a failure here is a race
    // with someone editing it: the previous token stays.
    if (!server_->reload_token(cfg.token_file, err))
      logf(LogLevel::Error, "%s; keeping the previous token", err.c_str());
    return true;
  }
  auto next = AdminServer::start(cfg, ops_, err);
  if (!next) {
    std::string stays = server_ ? "on " + server_->where() : "off";
    if (!quiet) logf(LogLevel::Error, "%s; the admin API stays %s", err.c_str(), stays.c_str());
    if (err_out) *err_out = err;
    return false;
  }
  if (server_) logf(LogLevel::Info, "admin: %s stopped (moved)", server_->where().c_str());
  retire(std::move(server_));
  server_ = std::move(next);
  return true;
}

void AdminHost::release() {
  released_ = true;
  if (server_) logf(LogLevel::Info, "admin: %s handed over", server_->where().c_str());
  retire(std::move(server_));
}

}  // namespace lb
