#include "tls/errors.hpp"

#include <openssl/err.h>

#include <cstdio>
#include <system_error>
#include <vector>

namespace tls::detail {

std::string drain_errors() {
  // The queue holds the root cause first and the callers' wrappers after it
  // (e.g. "No such file or directory", then "system lib"); generic wrapper
  // reasons add nothing and are dropped.
  std::vector<std::string> items;
  for (;;) {
    const char* data = nullptr;
    int flags = 0;
    unsigned long e = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags);
    if (e == 0) break;
    std::string item;
    if (ERR_SYSTEM_ERROR(e)) {  // errno, e.g. "No such file or directory"
      item = std::generic_category().message(ERR_GET_REASON(e));
    } else if (const char* r = ERR_reason_error_string(e)) {
      item = r;
    } else {
      char buf[64];
      std::snprintf(buf, sizeof buf, "OpenSSL error %lx", e);
      item = buf;
    }
    if (item == "system lib" && !items.empty()) continue;
    if ((flags & ERR_TXT_STRING) && data && *data) item += std::string(" (") + data + ")";
    bool dup = false;
    for (const auto& i : items) dup = dup || i == item;
    if (!dup) items.push_back(std::move(item));
  }
  std::string out;
  for (const auto& i : items) {
    if (!out.empty()) out += ": ";
    out += i;
  }
  return out;
}

}  // namespace tls::detail
