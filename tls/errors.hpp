// Internal: OpenSSL's per-thread error queue → readable strings.
#pragma once

#include <string>

namespace tls::detail {

// Drains this thread's OpenSSL error queue into one line of OpenSSL's reasons
// (with their detail text), most specific first, duplicates removed. Empty if
// the queue was empty. Every failing OpenSSL call site drains the queue, and
// every call site clears it first, so engines on one thread never see each
// other's errors.
std::string drain_errors();

}  // namespace tls::detail
