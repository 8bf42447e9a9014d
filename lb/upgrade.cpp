#include "lb/upgrade.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace lb::upgrade {

namespace {

// The pair is SOCK_SEQPACKET: message boundaries (and the descriptors each
// message carries) arrive exactly as sent.
constexpr size_t kFdsPerMessage = 200;
constexpr size_t kEntriesPerMessage = 4096;  // 128 KiB messages
constexpr uint32_t kMagic = 0x4d514c42;      // "MQLB"

enum Kind : uint32_t { kListeners = 1, kAffinity = 2, kEnd = 3, kReady = 4 };

struct Header {
  uint32_t magic;
  uint32_t kind;
  uint32_t count;
  uint32_t bytes;  // payload bytes after the header
};

std::string g_self_exe;

bool wait_fd(int fd, short events, int timeout_ms, std::string& err) {
  pollfd p{fd, events, 0};
  int r;
  do {
    r = ::poll(&p, 1, timeout_ms);
  } while (r < 0 && errno == EINTR);
  if (r == 0) {
    err = "timed out";
    return false;
  }
  if (r < 0) {
    err = std::string("poll: ") + std::strerror(errno);
    return false;
  }
  return true;
}

bool send_msg(int sock, Kind kind, uint32_t count, const std::string& payload, const int* fds,
              size_t nfds, std::string& err) {
  Header h{kMagic, kind, count, static_cast<uint32_t>(payload.size())};
  std::string data(reinterpret_cast<const char*>(&h), sizeof h);
  data += payload;
  iovec iov{data.data(), data.size()};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  std::vector<char> ctrl;
  if (nfds > 0) {
    ctrl.assign(CMSG_SPACE(sizeof(int) * nfds), 0);
    m.msg_control = ctrl.data();
    m.msg_controllen = ctrl.size();
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t r;
  do {
    r = ::sendmsg(sock, &m, MSG_NOSIGNAL);
  } while (r < 0 && errno == EINTR);
  if (r != static_cast<ssize_t>(data.size())) {
    err = std::string("sendmsg: ") + (r < 0 ? std::strerror(errno) : "short write");
    return false;
  }
  return true;
}

// One message: its header, payload and descriptors (close-on-exec set).
bool recv_msg(int sock, Header& h, std::string& payload, std::vector<int>& fds, int timeout_ms,
              std::string& err) {
  if (!wait_fd(sock, POLLIN, timeout_ms, err)) return false;
  std::vector<char> buf(sizeof(Header) + kEntriesPerMessage * sizeof(AffinityTable::Entry) + 65536);
  std::vector<char> ctrl(CMSG_SPACE(sizeof(int) * kFdsPerMessage));
  iovec iov{buf.data(), buf.size()};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctrl.data();
  m.msg_controllen = ctrl.size();
  ssize_t r;
  do {
    r = ::recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
  } while (r < 0 && errno == EINTR);
  if (r <= 0) {
    err = r == 0 ? "the other generation closed the connection" : std::strerror(errno);
    return false;
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const int* p = reinterpret_cast<const int*>(CMSG_DATA(c));
      fds.insert(fds.end(), p, p + n);
    }
  if ((m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || static_cast<size_t>(r) < sizeof(Header)) {
    err = "truncated handoff message";
    return false;
  }
  std::memcpy(&h, buf.data(), sizeof h);
  if (h.magic != kMagic || sizeof(Header) + h.bytes != static_cast<size_t>(r)) {
    err = "not a handoff message";
    return false;
  }
  payload.assign(buf.data() + sizeof h, h.bytes);
  return true;
}

}  // namespace

bool send_handoff(int sock, const Handoff& h, std::string& err) {
  // Listeners: names (NUL-separated) in the payload, their sockets alongside.
  std::vector<std::pair<std::string, int>> flat;
  for (const auto& [name, fds] : h.listeners)
    for (int fd : fds) flat.emplace_back(name, fd);
  for (size_t i = 0; i < flat.size(); i += kFdsPerMessage) {
    size_t n = std::min(kFdsPerMessage, flat.size() - i);
    std::string names;
    std::vector<int> fds;
    for (size_t k = 0; k < n; ++k) {
      names += flat[i + k].first;
      names.push_back('\0');
      fds.push_back(flat[i + k].second);
    }
    if (!send_msg(sock, kListeners, static_cast<uint32_t>(n), names, fds.data(), n, err))
      return false;
  }
  for (size_t i = 0; i < h.affinity.size(); i += kEntriesPerMessage) {
    size_t n = std::min(kEntriesPerMessage, h.affinity.size() - i);
    std::string bytes(reinterpret_cast<const char*>(h.affinity.data() + i),
                      n * sizeof(AffinityTable::Entry));
    if (!send_msg(sock, kAffinity, static_cast<uint32_t>(n), bytes, nullptr, 0, err)) return false;
  }
  return send_msg(sock, kEnd, 0, "", nullptr, 0, err);
}

bool recv_handoff(int sock, Handoff& h, int timeout_ms, std::string& err) {
  for (;;) {
    Header hd{};
    std::string payload;
    std::vector<int> fds;
    if (!recv_msg(sock, hd, payload, fds, timeout_ms, err)) {
      for (int fd : fds) ::close(fd);
      return false;
    }
    if (hd.kind == kEnd) return true;
    if (hd.kind == kListeners) {
      size_t pos = 0;
      size_t k = 0;
      for (; k < fds.size() && pos < payload.size(); ++k) {
        size_t end = payload.find('\0', pos);
        if (end == std::string::npos) break;
        h.listeners[payload.substr(pos, end - pos)].push_back(fds[k]);
        pos = end + 1;
      }
      for (; k < fds.size(); ++k) ::close(fds[k]);  // a name was missing: not ours to use
      continue;
    }
    for (int fd : fds) ::close(fd);
    if (hd.kind == kAffinity && payload.size() == hd.count * sizeof(AffinityTable::Entry)) {
      size_t off = h.affinity.size();
      h.affinity.resize(off + hd.count);
      std::memcpy(h.affinity.data() + off, payload.data(), payload.size());
      continue;
    }
    err = "unexpected handoff message";
    return false;
  }
}

bool send_ready(int sock, std::string& err) {
  return send_msg(sock, kReady, static_cast<uint32_t>(::getpid()), "", nullptr, 0, err);
}

pid_t wait_ready(int sock, int timeout_ms, std::string& err) {
  Header h{};
  std::string payload;
  std::vector<int> fds;
  bool ok = recv_msg(sock, h, payload, fds, timeout_ms, err);
  for (int fd : fds) ::close(fd);
  if (!ok) return -1;
  if (h.kind != kReady) {
    err = "unexpected message instead of READY";
    return -1;
  }
  return static_cast<pid_t>(h.count);
}

pid_t spawn(const std::string& exe, const std::vector<std::string>& args, int child_fd,
            std::string& err) {
  std::vector<std::string> all{exe};
  all.insert(all.end(), args.begin(), args.end());
  all.push_back("--upgrade-fd");
  all.push_back(std::to_string(child_fd));
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    err = std::string("fork: ") + std::strerror(errno);
    return -1;
  }
  if (pid == 0) {
    // The child of a multi-threaded process: only async-signal-safe calls until exec.
    int flags = ::fcntl(child_fd, F_GETFD);
    if (flags >= 0) ::fcntl(child_fd, F_SETFD, flags & ~FD_CLOEXEC);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

void sd_notify(const std::string& state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || !*path) return;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  size_t len = std::strlen(path);
  if (len >= sizeof a.sun_path) return;
  std::memcpy(a.sun_path, path, len);
  if (a.sun_path[0] == '@') a.sun_path[0] = '\0';  // abstract namespace
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  socklen_t alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  (void)!::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&a),
                  alen);
  ::close(fd);
}

std::string self_exe() {
  if (g_self_exe.empty()) {
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) {
      buf[n] = '\0';
      g_self_exe = buf;
      const std::string deleted = " (deleted)";  // the file was replaced since we started
      if (g_self_exe.size() > deleted.size() &&
          g_self_exe.compare(g_self_exe.size() - deleted.size(), deleted.size(), deleted) == 0)
        g_self_exe.resize(g_self_exe.size() - deleted.size());
    }
  }
  return g_self_exe;
}

}  // namespace lb::upgrade
