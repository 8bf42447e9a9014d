// Process limits shared by the executables (mqttlb, mqttlb-bench).
#pragma once

#include <cstdint>

namespace net {

// Raises the soft RLIMIT_NOFILE to the hard limit (a balancer, a load
// generator hold one descriptor per connection). Returns the soft limit now in
// force (1024 if it cannot be read; "unlimited" counts as 1,048,576).
uint64_t raise_nofile_limit();

}  // namespace net
