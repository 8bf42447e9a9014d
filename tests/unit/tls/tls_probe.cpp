// tls_probe: a test-only TLS client/server on plain blocking sockets, driving
// tls::Engine exactly as a socket loop must (read → feed → read_plaintext;
// write_plaintext → take_ciphertext → write). Used by
// tests/integration/test_tls_engine.py against real peers (mosquitto, Python's
// ssl module). One line per event on stdout; exit 0 on success, 1 on failure.
//
//   tls_probe connect PORT [--host H] [--sni NAME] [--ca F] [--no-verify]
//             [--cert F --key F] [--send HEX] [--expect N] [--repeat K]
//     connects K times (resuming the previous session from the 2nd on),
//     sends HEX, waits for N plaintext bytes, prints them, closes with close_notify.
//   tls_probe serve PORT --cert F --key F [--ca F --verify-client none|optional|required]
//     accepts connections one at a time on 127.0.0.1 and echoes plaintext.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "tls/context.hpp"
#include "tls/engine.hpp"

namespace {

using Clock = std::chrono::steady_clock;

std::string hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

std::string unhex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2)
    out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  return out;
}

bool write_all(int fd, const std::vector<uint8_t>& buf) {
  size_t off = 0;
  while (off < buf.size()) {
    ssize_t n = ::write(fd, buf.data() + off, buf.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Sends whatever ciphertext the engine has pending.
bool flush(tls::Engine& e, int fd) {
  std::vector<uint8_t> out;
  if (e.take_ciphertext(out) == 0) return true;
  return write_all(fd, out);
}

// Runs the socket ↔ engine loop until done() or failure/EOF/deadline.
// Plaintext read is appended to app. Returns "" on success, else the reason.
std::string run_until(tls::Engine& e, int fd, std::string& app, const std::function<bool()>& done,
                      Clock::time_point deadline) {
  uint8_t net[16384], plain[16384];
  for (;;) {
    if (!flush(e, fd)) return "socket write failed";
    if (e.failed()) return e.error();
    if (done()) return "";
    if (e.peer_closed()) return "peer sent close_notify";
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return "timed out";
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;  // the deadline check above ends the loop
    ssize_t n = ::read(fd, net, sizeof net);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return e.failed() ? e.error() : "connection closed by peer (no close_notify)";
    if (n < 0) return std::string("socket read failed: ") + std::strerror(errno);
    size_t off = 0;
    while (off < static_cast<size_t>(n) && !e.failed()) {
      size_t k =
          e.feed_ciphertext(std::span<const uint8_t>(net + off, static_cast<size_t>(n) - off));
      off += k;
      size_t got = 0;
      while (size_t m = e.read_plaintext(plain)) {
        app.append(reinterpret_cast<char*>(plain), m);
        got += m;
      }
      if (k == 0 && got == 0 && !e.failed()) return "engine stuck";
    }
  }
}

bool send_all(tls::Engine& e, int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    off += e.write_plaintext(std::span<const uint8_t>(
        reinterpret_cast<const uint8_t*>(data.data()) + off, data.size() - off));
    if (e.failed() || !flush(e, fd)) return false;
  }
  return flush(e, fd);
}

int tcp_connect(const std::string& host, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (fd < 0 || inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

struct Args {
  std::string mode, host = "127.0.0.1", sni, ca, cert, key, send, verify_client = "none";
  int port = 0, repeat = 1;
  size_t expect = 0;
  bool verify = true;
};

int do_connect(const Args& a) {
  tls::ClientOptions o;
  o.ca = a.ca;
  o.verify = a.verify;
  o.cert = a.cert;
  o.key = a.key;
  std::string err;
  auto ctx = tls::Context::client(o, err);
  if (!ctx) {
    std::printf("error: %s\n", err.c_str());
    return 1;
  }
  tls::Session session;
  for (int i = 0; i < a.repeat; ++i) {
    int fd = tcp_connect(a.host, a.port);
    if (fd < 0) {
      std::printf("error: connect: %s\n", std::strerror(errno));
      return 1;
    }
    tls::Engine e(*ctx, tls::Role::Client, a.sni);
    if (session) e.set_session(session);
    auto deadline = Clock::now() + std::chrono::seconds(10);
    std::string app;
    std::string why = run_until(
        e, fd, app, [&] { return e.handshake_done(); }, deadline);
    if (why.empty() && !a.send.empty() && !send_all(e, fd, unhex(a.send))) {
      // The peer may have refused us with an alert and closed (TLS 1.3 servers
      // check client certificates after the client's handshake is done): read
      // what it sent to report its reason rather than our EPIPE.
      why = run_until(
          e, fd, app, [] { return false; }, Clock::now() + std::chrono::seconds(2));
      why = "send failed: " + why;
    }
    if (why.empty())
      why = run_until(
          e, fd, app, [&] { return app.size() >= a.expect; }, deadline);
    if (!why.empty()) {
      std::printf("error: %s\n", why.c_str());
      ::close(fd);
      return 1;
    }
    std::printf("handshake ok protocol=%s reused=%d verified=%d alpn=%s\n", e.protocol().c_str(),
                e.session_reused() ? 1 : 0, e.peer_verified() ? 1 : 0, e.alpn().c_str());
    std::printf("received %s\n", hex(app).c_str());
    session = e.get_session();
    e.shutdown();
    flush(e, fd);
    ::close(fd);
  }
  return 0;
}

int do_serve(const Args& a) {
  conf::ListenerTls cfg;
  cfg.cert = a.cert;
  cfg.key = a.key;
  cfg.ca = a.ca;
  using V = conf::ListenerTls::Verify;
  cfg.verify_client = a.verify_client == "required"   ? V::Required
                      : a.verify_client == "optional" ? V::Optional
                                                      : V::None;
  std::string err;
  auto ctx = tls::Context::server(cfg, err);
  if (!ctx) {
    std::printf("error: %s\n", err.c_str());
    return 1;
  }
  int ls = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(a.port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(ls, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(ls, 16) != 0) {
    std::printf("error: bind: %s\n", std::strerror(errno));
    return 1;
  }
  std::printf("listening on %d\n", a.port);
  std::fflush(stdout);
  for (;;) {
    int fd = ::accept(ls, nullptr, nullptr);
    if (fd < 0) continue;
    tls::Engine e(*ctx, tls::Role::Server);
    auto deadline = Clock::now() + std::chrono::seconds(10);
    std::string app;
    std::string why = run_until(
        e, fd, app, [&] { return e.handshake_done(); }, deadline);
    if (why.empty()) {
      std::printf("handshake ok protocol=%s reused=%d subject=%s\n", e.protocol().c_str(),
                  e.session_reused() ? 1 : 0, e.peer_subject().c_str());
      std::fflush(stdout);
      // Echo until the peer closes: everything read is written back.
      size_t echoed = 0;
      why = run_until(
          e, fd, app,
          [&] {
            if (app.size() > echoed) {
              send_all(e, fd, app.substr(echoed));
              echoed = app.size();
            }
            return false;
          },
          deadline);
      if (e.peer_closed()) why.clear();
    }
    if (why.empty()) {
      std::printf("closed cleanly after %zu bytes\n", app.size());
    } else {
      std::printf("error: %s\n", why.c_str());
    }
    std::fflush(stdout);
    e.shutdown();
    flush(e, fd);
    ::close(fd);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (argc < 3) {
    std::fprintf(stderr, "usage: tls_probe connect|serve PORT [options] (see the source)\n");
    return 2;
  }
  a.mode = argv[1];
  a.port = std::atoi(argv[2]);
  for (int i = 3; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (k == "--host")
      a.host = val();
    else if (k == "--sni")
      a.sni = val();
    else if (k == "--ca")
      a.ca = val();
    else if (k == "--cert")
      a.cert = val();
    else if (k == "--key")
      a.key = val();
    else if (k == "--send")
      a.send = val();
    else if (k == "--expect")
      a.expect = std::stoul(val());
    else if (k == "--repeat")
      a.repeat = std::atoi(val().c_str());
    else if (k == "--verify-client")
      a.verify_client = val();
    else if (k == "--no-verify")
      a.verify = false;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  ::signal(SIGPIPE, SIG_IGN);  // a peer that vanished is an error line, not a crash
  if (a.mode == "connect") return do_connect(a);
  if (a.mode == "serve") return do_serve(a);
  std::fprintf(stderr, "unknown mode %s\n", a.mode.c_str());
  return 2;
}
