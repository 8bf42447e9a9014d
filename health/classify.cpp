// The pure parts of the check: failure labels, CONNACK classification, the
// check client id. No sockets; unit-tested directly (tests/unit/health).
#include <cstdio>
#include <string>

#include "health/checker.hpp"

namespace health {

namespace {

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

const char* to_string(FailKind k) {
  switch (k) {
    case FailKind::None:
      return "none";
    case FailKind::Resolve:
      return "resolve";
    case FailKind::Connect:
      return "connect";
    case FailKind::ConnectTimeout:
      return "connect_timeout";
    case FailKind::Tls:
      return "tls";
    case FailKind::ConnackTimeout:
      return "connack_timeout";
    case FailKind::Refused:
      return "refused";
    case FailKind::PingTimeout:
      return "pingresp_timeout";
    case FailKind::Closed:
      return "closed";
    case FailKind::Protocol:
      return "protocol";
  }
  return "unknown";
}

ConnackVerdict classify_connack(uint8_t code, bool v5) {
  if (code == 0) return ConnackVerdict::Accepted;
  if (v5) {
    switch (code) {
      case 0x85:  // Client Identifier not valid
      case 0x86:  // Bad User Name or Password
      case 0x87:  // Not authorized
        return ConnackVerdict::LivenessRefusal;
      default:
        return ConnackVerdict::Failure;
    }
  }
  switch (code) {
    case 0x02:  // Identifier rejected
    case 0x04:  // Bad user name or password
    case 0x05:  // Not authorized
      return ConnackVerdict::LivenessRefusal;
    default:
      return ConnackVerdict::Failure;
  }
}

std::string connack_code_name(uint8_t code, bool v5) {
  const char* n = "unknown code";
  if (v5) {
    switch (code) {
      case 0x00:
        n = "success";
        break;
      case 0x80:
        n = "unspecified error";
        break;
      case 0x81:
        n = "malformed packet";
        break;
      case 0x82:
        n = "protocol error";
        break;
      case 0x83:
        n = "implementation specific error";
        break;
      case 0x84:
        n = "unsupported protocol version";
        break;
      case 0x85:
        n = "client identifier not valid";
        break;
      case 0x86:
        n = "bad user name or password";
        break;
      case 0x87:
        n = "not authorized";
        break;
      case 0x88:
        n = "server unavailable";
        break;
      case 0x89:
        n = "server busy";
        break;
      case 0x8A:
        n = "banned";
        break;
      case 0x8B:
        n = "server shutting down";
        break;
      case 0x8C:
        n = "bad authentication method";
        break;
      case 0x95:
        n = "packet too large";
        break;
      case 0x97:
        n = "quota exceeded";
        break;
      case 0x9C:
        n = "use another server";
        break;
      case 0x9D:
        n = "server moved";
        break;
      case 0x9F:
        n = "connection rate exceeded";
        break;
      default:
        break;
    }
  } else {
    switch (code) {
      case 0x00:
        n = "accepted";
        break;
      case 0x01:
        n = "unacceptable protocol version";
        break;
      case 0x02:
        n = "identifier rejected";
        break;
      case 0x03:
        n = "server unavailable";
        break;
      case 0x04:
        n = "bad user name or password";
        break;
      case 0x05:
        n = "not authorized";
        break;
      default:
        break;
    }
  }
  char b[16];
  std::snprintf(b, sizeof b, "0x%02X ", code);
  return b + std::string(n);
}

std::string make_client_id(std::string_view prefix, std::string_view instance_id,
                           std::string_view backend_name) {
  constexpr size_t kMax = 23;  // [MQTT-3.1.3-5]: servers MUST allow 1..23 bytes
  auto clean = [](std::string_view in) {
    std::string s(in);
    for (char& c : s) {
      bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                c == '-' || c == '_';
      if (!ok) c = '_';
    }
    return s;
  };
  std::string head = clean(prefix) + clean(instance_id) + "-";
  std::string name = clean(backend_name);
  // Keep at least 8 bytes for the backend part, shortening the prefix if needed.
  if (head.size() > kMax - 8) head = head.substr(head.size() - (kMax - 8));
  size_t budget = kMax - head.size();
  if (name.size() <= budget) return head + name;
  // Too long: a leading part of the name + 4 base36 digits of its hash.
  static const char kDigits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  uint64_t h = fnv1a(backend_name);
  std::string tag;
  for (int i = 0; i < 4; ++i) {
    tag += kDigits[h % 36];
    h /= 36;
  }
  return head + name.substr(0, budget - tag.size()) + tag;
}

}  // namespace health
