// The admin API over HTTP (docs/admin-api.md): GNU libmicrohttpd on a
// listening socket we create ourselves (TCP, or AF_UNIX for "unix:PATH"),
// served by its own threads — one per connection, at most kMaxConnections —
// never by a data loop. Paths map onto AdminOps (lb/admin_route.hpp); JSON in
// and out; the bearer token, the body cap and the audit line are applied
// here, the operations themselves are AdminOps'.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "conf/config.hpp"
#include "lb/admin_ops.hpp"
#include "lb/admin_route.hpp"

struct MHD_Daemon;
struct MHD_Connection;

namespace lb {

class AdminServer {
 public:
  static constexpr size_t kMaxBody = 64 * 1024;  // larger request bodies: 413
  static constexpr unsigned kMaxConnections = 32;
  static constexpr unsigned kIdleTimeoutS = 30;

  // Binds cfg's address (unix: a stale socket file is replaced, a live one is
  // an error; mode 0660), reads the token file, starts serving. Null with
  // `err` set on failure. inherited_fd >= 0: serve that listening socket
  // instead of binding (binary upgrade).
  static std::unique_ptr<AdminServer> start(const conf::Admin& cfg, AdminOps& ops, std::string& err,
                                            int inherited_fd = -1);
  // Stops accepting and closes the listening socket at once, lets the
  // requests in progress finish (up to max_wait_ms), then stops the threads
  // (idle keep-alive connections are closed) and removes the unix socket file
  // unless another server replaced it. Idempotent; the destructor calls it
  // with 5 s.
  void stop(uint32_t max_wait_ms);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // A reload changed only the token file (same address): read it again.
  // False (the old token stays) when the file is missing or empty.
  bool reload_token(const std::string& token_file, std::string& err);
  // "http://127.0.0.1:9101" or "unix:/run/mqttlb/admin.sock".
  const std::string& where() const { return where_; }

  struct Request;  // one request in progress (admin_http.cpp)
  struct Answer;   // status, headers, body

 private:
  AdminServer(AdminOps& ops) : ops_(ops) {}

  friend struct AdminGlue;  // libmicrohttpd's callbacks (its threads), admin_http.cpp

  // The answer before any body is read (auth, path, method, size), if any.
  bool precheck(MHD_Connection* c, Request& req, Answer& out) const;
  Answer dispatch(const AdminRoute& r, const std::string& method, const std::string& body);
  bool authorized(MHD_Connection* c, bool page) const;
  void audit(MHD_Connection* c, const Request& req, int status) const;

  AdminOps& ops_;
  MHD_Daemon* daemon_ = nullptr;
  std::string where_;
  std::string unix_path_;  // removed at stop when still ours (same inode)
  uint64_t unix_ino_ = 0;
  std::mutex flight_mu_;  // guards in_flight_
  std::condition_variable flight_cv_;
  int in_flight_ = 0;  // requests from their headers to their completion
  mutable std::mutex token_mu_;
  std::string token_;  // empty: no token required
};

// The admin server of the running process across reloads and binary
// upgrades (main thread). A new address gets a new server first; only when it
// runs is the old one retired; if it cannot start, the old one stays. A
// retired server is stopped on a helper thread: the reload or upgrade may
// have been asked over it, and stopping waits for that request to finish.
class AdminHost {
 public:
  explicit AdminHost(AdminOps& ops) : ops_(ops) {}
  ~AdminHost();  // stops every server, joins the helper threads

  // Brings the API to what cfg asks for: starts it, moves it, re-reads the
  // token (same address), or stops it (no admin section). True when it now
  // runs as asked (or is off as asked); false when a server could not start
  // (`err` set if given; logged unless quiet; the previous server stays).
  bool apply(const conf::Admin& cfg, bool quiet, std::string* err = nullptr);
  // The old generation of a binary upgrade hands over: the server stops (the
  // new generation takes the address) and apply() does nothing any more.
  void release();

 private:
  void retire(std::unique_ptr<AdminServer> s);

  AdminOps& ops_;
  bool released_ = false;
  std::unique_ptr<AdminServer> server_;
  struct Retiring {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Retiring> retiring_;
};

// The status page (GET /): one self-contained HTML document (lb/admin_page.cpp).
const char* admin_status_page();

}  // namespace lb
