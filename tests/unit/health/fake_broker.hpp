// A scriptable MQTT broker for checker tests: one thread, blocking sockets
// driven by poll() with short timeouts, on a free 127.0.0.1 port. It answers
// CONNECT with a chosen CONNACK code (or garbage, or nothing) and PINGREQ with
// PINGRESP (unless told to go quiet), and records what the checker sent.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mqtt/codec.hpp"
#include "mqtt/connect.hpp"
#include "mqtt/frame.hpp"
#include "proxy/proxy_protocol.hpp"

class FakeBroker {
 public:
  enum class Mode { Answer, Silent, Garbage };

  std::atomic<Mode> mode{Mode::Answer};
  std::atomic<uint8_t> connack_code{0};
  std::atomic<bool> v5{false};
  std::atomic<bool> answer_ping{true};
  std::atomic<bool> expect_proxy{false};
  // When non-zero: PINGREQ is answered with a 5.0 DISCONNECT carrying this reason.
  std::atomic<uint8_t> disconnect_on_ping{0};
  std::atomic<uint16_t> server_keep_alive{0};  // 5.0 CONNACK property when non-zero

  FakeBroker() {
    lfd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(lfd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(lfd_, 64);
    socklen_t len = sizeof a;
    ::getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~FakeBroker() {
    stop_ = true;
    thread_.join();
    for (auto& c : clients_) ::close(c.fd);
    ::close(lfd_);
  }
  uint16_t port() const { return port_; }

  // Counters observed so far (thread-safe snapshots).
  int connections() {
    std::lock_guard<std::mutex> l(mu_);
    return connections_;
  }
  int connects() {
    std::lock_guard<std::mutex> l(mu_);
    return connects_;
  }
  int pingreqs() {
    std::lock_guard<std::mutex> l(mu_);
    return pingreqs_;
  }
  int disconnects() {
    std::lock_guard<std::mutex> l(mu_);
    return disconnects_;
  }
  int proxy_headers() {
    std::lock_guard<std::mutex> l(mu_);
    return proxy_headers_;
  }
  int open_clients() {
    std::lock_guard<std::mutex> l(mu_);
    return static_cast<int>(clients_.size());
  }
  std::vector<mqtt::ConnectInfo> connect_infos() {
    std::lock_guard<std::mutex> l(mu_);
    return infos_;
  }
  // Closes every accepted connection (as a crashing broker would).
  void drop_all() { drop_ = true; }

 private:
  struct Client {
    int fd;
    std::vector<uint8_t> buf;
    bool proxy_done = false;
  };

  void run() {
    while (!stop_) {
      std::vector<pollfd> pfds;
      pfds.push_back({lfd_, POLLIN, 0});
      for (auto& c : clients_) pfds.push_back({c.fd, POLLIN, 0});
      ::poll(pfds.data(), pfds.size(), 20);
      if (drop_.exchange(false)) {
        std::lock_guard<std::mutex> l(mu_);
        for (auto& c : clients_) ::close(c.fd);
        clients_.clear();
        continue;
      }
      if (pfds[0].revents & POLLIN) {
        int fd = ::accept(lfd_, nullptr, nullptr);
        if (fd >= 0) {
          std::lock_guard<std::mutex> l(mu_);
          clients_.push_back({fd, {}, false});
          ++connections_;
        }
      }
      for (size_t i = 1; i < pfds.size(); ++i) {
        if (!(pfds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        int fd = pfds[i].fd;
        uint8_t tmp[4096];
        ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
        std::lock_guard<std::mutex> l(mu_);
        auto it = clients_.begin();
        while (it != clients_.end() && it->fd != fd) ++it;
        if (it == clients_.end()) continue;
        if (n <= 0 || !handle(*it, tmp, static_cast<size_t>(n))) {
          ::close(fd);
          clients_.erase(it);
        }
      }
    }
  }

  // Called with mu_ held. Returns false to close the connection.
  bool handle(Client& c, const uint8_t* p, size_t n) {
    c.buf.insert(c.buf.end(), p, p + n);
    if (expect_proxy && !c.proxy_done) {
      proxy::Header h = proxy::parse(c.buf);
      if (h.status == proxy::Status::NeedMore) return true;
      if (h.status != proxy::Status::Done) return false;
      ++proxy_headers_;
      c.buf.erase(c.buf.begin(), c.buf.begin() + static_cast<ptrdiff_t>(h.length));
      c.proxy_done = true;
    }
    for (;;) {
      auto fr = mqtt::peek_frame(c.buf);
      if (fr.status == mqtt::DecodeStatus::Malformed) return false;
      if (fr.status == mqtt::DecodeStatus::NeedMore) return true;
      size_t total = fr.header.total_length();
      if (c.buf.size() < total) return true;
      std::vector<uint8_t> pkt(c.buf.begin(), c.buf.begin() + static_cast<ptrdiff_t>(total));
      c.buf.erase(c.buf.begin(), c.buf.begin() + static_cast<ptrdiff_t>(total));
      std::vector<uint8_t> out;
      switch (fr.header.type()) {
        case 1: {  // CONNECT
          ++connects_;
          auto r = mqtt::parse_connect(pkt);
          if (r.status == mqtt::ParseStatus::Done) infos_.push_back(r.info);
          if (mode == Mode::Silent) break;
          if (mode == Mode::Garbage) {
            const char g[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
            out.assign(g, g + sizeof g - 1);
            break;
          }
          mqtt::Connack ack;
          ack.code = connack_code;
          if (server_keep_alive != 0) ack.properties.server_keep_alive = server_keep_alive;
          mqtt::encode_connack(ack, v5 ? mqtt::Version::V5 : mqtt::Version::V311, out);
          break;
        }
        case 12:  // PINGREQ
          ++pingreqs_;
          if (disconnect_on_ping != 0) {
            mqtt::Disconnect d;
            d.reason = disconnect_on_ping;
            mqtt::encode_disconnect(d, mqtt::Version::V5, out);
          } else if (answer_ping && mode == Mode::Answer) {
            mqtt::encode_pingresp(out);
          }
          break;
        case 14:  // DISCONNECT
          ++disconnects_;
          return false;
        default:
          return false;
      }
      if (!out.empty() && ::send(c.fd, out.data(), out.size(), MSG_NOSIGNAL) < 0) return false;
    }
  }

  int lfd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> drop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<Client> clients_;
  std::vector<mqtt::ConnectInfo> infos_;
  int connections_ = 0, connects_ = 0, pingreqs_ = 0, disconnects_ = 0, proxy_headers_ = 0;
};
