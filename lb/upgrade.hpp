// Binary upgrade without refusing a connection (docs/operations.md
// "Upgrading mqttlb"): the running process (the old generation) starts the
// installed binary with `--upgrade-fd N`, one end of a unix socket pair, and
// hands over on it:
//   1. its listening sockets (SCM_RIGHTS), by listener name — the very same
//      kernel sockets, so a connection waiting in an accept queue is taken by
//      whichever process accepts it: none is refused or reset;
//   2. its affinity table, so devices return to the broker they had.
// The new generation loads the config, runs its first health round, starts
// accepting on those sockets and answers "READY <pid>". Only then does the old
// one stop accepting, move its sessions off at upgrade.evict_rate_per_s (5.0:
// DISCONNECT 0x8B, with jitter) until upgrade.deadline_s, and exit. The pair
// stays open while the old generation lives: the new one refuses a second
// upgrade until it sees the EOF.
//
// Blocking I/O with deadlines, on the main thread only (never a data loop).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lb/affinity.hpp"

namespace lb::upgrade {

struct Handoff {
  std::map<std::string, std::vector<int>> listeners;  // listener name -> sockets
  std::vector<AffinityTable::Entry> affinity;
};

// Old side. Both return false with err set.
bool send_handoff(int sock, const Handoff& h, std::string& err);
// Starts `exe args... --upgrade-fd <child_fd>`; child_fd must not be close-on-exec.
pid_t spawn(const std::string& exe, const std::vector<std::string>& args, int child_fd,
            std::string& err);

// New side: reads what send_handoff sent (fds owned by the caller afterwards).
bool recv_handoff(int sock, Handoff& h, int timeout_ms, std::string& err);
bool send_ready(int sock, std::string& err);
// Old side: "READY <pid>" within timeout_ms? pid of the new generation, or -1
// (err: it exited, or was too slow).
pid_t wait_ready(int sock, int timeout_ms, std::string& err);

// systemd's notify protocol (NOTIFY_SOCKET), without libsystemd: "READY=1",
// "MAINPID=N\nREADY=1", ... No-op when not started by systemd.
void sd_notify(const std::string& state);

// The binary to start for an upgrade: the path this process was started from
// (resolved at start, so a package upgrade that replaced the file is picked up).
std::string self_exe();

}  // namespace lb::upgrade
