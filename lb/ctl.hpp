// `mqttlb ctl`: the command-line client of the admin API (docs/admin-api.md
// "mqttlb ctl"). HTTP through libcurl, over TCP or the unix socket.
//
// Exit codes (scripts rely on them):
//   0  the server did it (2xx)
//   1  the server refused or failed (4xx/5xx; its error is printed)
//   2  usage error, or no admin address known (no admin section, config unreadable)
//   3  the admin API cannot be reached (no connection, timeout, not its answer)
#pragma once

namespace lb::ctl {

constexpr const char* kDefaultConfig = "/etc/mqttlb/mqttlb.json";

// argv[0] is "ctl".
int run(int argc, char** argv);

}  // namespace lb::ctl
