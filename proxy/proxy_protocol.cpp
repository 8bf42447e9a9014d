// PROXY protocol v1/v2 (HAProxy proxy-protocol.txt). Pure functions; see the header.
#include "proxy/proxy_protocol.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string_view>

namespace proxy {
namespace {

constexpr uint8_t kSigV2[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::string_view kSigV1 = "PROXY ";
constexpr size_t kMaxV1 = 107;  // "worst case" line length, CRLF included (spec 2.1)

// Both addresses as IPv6 when the families differ (v4-mapped), else unchanged.
void normalize(const sockaddr_storage& a, const sockaddr_storage& b, sockaddr_in6& a6,
               sockaddr_in6& b6) {
  auto to6 = [](const sockaddr_storage& s, sockaddr_in6& o) {
    std::memset(&o, 0, sizeof o);
    o.sin6_family = AF_INET6;
    if (s.ss_family == AF_INET6) {
      std::memcpy(&o, &s, sizeof o);
      return;
    }
    const auto& s4 = reinterpret_cast<const sockaddr_in&>(s);
    o.sin6_port = s4.sin_port;
    o.sin6_addr.s6_addr[10] = 0xFF;
    o.sin6_addr.s6_addr[11] = 0xFF;
    std::memcpy(&o.sin6_addr.s6_addr[12], &s4.sin_addr, 4);
  };
  to6(a, a6);
  to6(b, b6);
}

bool both_v4(const sockaddr_storage& a, const sockaddr_storage& b) {
  return a.ss_family == AF_INET && b.ss_family == AF_INET;
}

void put(std::vector<uint8_t>& out, const void* p, size_t n) {
  auto* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}

// Parses a decimal port "0".."65535" without sign or leading garbage.
bool parse_port(std::string_view s, uint16_t& port) {
  if (s.empty() || s.size() > 5) return false;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + uint32_t(c - '0');
  }
  if (v > 65535) return false;
  port = uint16_t(v);
  return true;
}

bool parse_addr(std::string_view s, int family, uint16_t port, sockaddr_storage& out) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (s.empty() || s.size() >= sizeof buf) return false;
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = 0;
  std::memset(&out, 0, sizeof out);
  if (family == AF_INET) {
    auto& a = reinterpret_cast<sockaddr_in&>(out);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    return inet_pton(AF_INET, buf, &a.sin_addr) == 1;
  }
  auto& a = reinterpret_cast<sockaddr_in6&>(out);
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(port);
  return inet_pton(AF_INET6, buf, &a.sin6_addr) == 1;
}

Header fail(Status s) {
  Header h;
  h.status = s;
  return h;
}

Header parse_v1(std::span<const uint8_t> in) {
  const size_t scan = std::min(in.size(), kMaxV1);
  size_t eol = 0;
  bool found = false;
  for (size_t i = 0; i < scan; ++i) {
    if (in[i] == '\r' && i + 1 < scan && in[i + 1] == '\n') {
      eol = i;
      found = true;
      break;
    }
    if (in[i] == '\n' || in[i] == 0) return fail(Status::Error);
  }
  if (!found) return fail(in.size() >= kMaxV1 ? Status::Error : Status::NeedMore);
  std::string_view line(reinterpret_cast<const char*>(in.data()), eol);
  line.remove_prefix(kSigV1.size());
  // Tokens separated by exactly one space.
  std::string_view tok[5];  // protocol, source, destination, source port, destination port
  size_t n = 0;
  while (!line.empty() && n < 5) {
    size_t sp = line.find(' ');
    tok[n++] = line.substr(0, sp);
    if (sp == std::string_view::npos) {
      line = {};
      break;
    }
    line.remove_prefix(sp + 1);
    if (line.empty()) return fail(Status::Error);  // trailing space
  }
  Header h;
  h.length = eol + 2;
  if (n >= 1 && tok[0] == "UNKNOWN") {  // rest of the line is ignored (spec 2.1)
    h.status = Status::Done;
    h.local = true;
    return h;
  }
  if (n != 5 || !line.empty()) return fail(Status::Error);
  int fam;
  if (tok[0] == "TCP4")
    fam = AF_INET;
  else if (tok[0] == "TCP6")
    fam = AF_INET6;
  else
    return fail(Status::Error);
  uint16_t sport, dport;
  if (!parse_port(tok[3], sport) || !parse_port(tok[4], dport)) return fail(Status::Error);
  if (!parse_addr(tok[1], fam, sport, h.src) || !parse_addr(tok[2], fam, dport, h.dst))
    return fail(Status::Error);
  h.status = Status::Done;
  return h;
}

Header parse_v2(std::span<const uint8_t> in) {
  if (in.size() < 16) return fail(Status::NeedMore);
  const uint8_t ver_cmd = in[12], fam = in[13];
  const size_t len = (size_t(in[14]) << 8) | in[15];
  if ((ver_cmd >> 4) != 2) return fail(Status::Error);
  const uint8_t cmd = ver_cmd & 0x0F;
  if (cmd > 1) return fail(Status::Error);
  size_t need = 0;
  if (cmd == 1) {
    if (fam == 0x11)
      need = 12;  // TCP over IPv4
    else if (fam == 0x21)
      need = 36;  // TCP over IPv6
  }
  if (len < need) return fail(Status::Error);
  if (in.size() < 16 + len) return fail(Status::NeedMore);
  Header h;
  h.status = Status::Done;
  h.length = 16 + len;
  // LOCAL, UNSPEC, UDP and UNIX carry no TCP address we can use: the receiver
  // keeps the real connection endpoints (spec 2.2).
  h.local = need == 0;
  const uint8_t* p = in.data() + 16;
  if (need == 12) {
    auto& s = reinterpret_cast<sockaddr_in&>(h.src);
    auto& d = reinterpret_cast<sockaddr_in&>(h.dst);
    s.sin_family = d.sin_family = AF_INET;
    std::memcpy(&s.sin_addr, p, 4);
    std::memcpy(&d.sin_addr, p + 4, 4);
    std::memcpy(&s.sin_port, p + 8, 2);
    std::memcpy(&d.sin_port, p + 10, 2);
  } else if (need == 36) {
    auto& s = reinterpret_cast<sockaddr_in6&>(h.src);
    auto& d = reinterpret_cast<sockaddr_in6&>(h.dst);
    s.sin6_family = d.sin6_family = AF_INET6;
    std::memcpy(&s.sin6_addr, p, 16);
    std::memcpy(&d.sin6_addr, p + 16, 16);
    std::memcpy(&s.sin6_port, p + 32, 2);
    std::memcpy(&d.sin6_port, p + 34, 2);
  }
  return h;
}

}  // namespace

void append_v1(std::vector<uint8_t>& out, const sockaddr_storage& src,
               const sockaddr_storage& dst) {
  char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
  char line[kMaxV1 + 1];
  int n;
  if (both_v4(src, dst)) {
    const auto& s = reinterpret_cast<const sockaddr_in&>(src);
    const auto& d = reinterpret_cast<const sockaddr_in&>(dst);
    inet_ntop(AF_INET, &s.sin_addr, a, sizeof a);
    inet_ntop(AF_INET, &d.sin_addr, b, sizeof b);
    n = std::snprintf(line, sizeof line, "PROXY TCP4 %s %s %u %u\r\n", a, b,
                      unsigned(ntohs(s.sin_port)), unsigned(ntohs(d.sin_port)));
  } else {
    sockaddr_in6 s, d;
    normalize(src, dst, s, d);
    inet_ntop(AF_INET6, &s.sin6_addr, a, sizeof a);
    inet_ntop(AF_INET6, &d.sin6_addr, b, sizeof b);
    n = std::snprintf(line, sizeof line, "PROXY TCP6 %s %s %u %u\r\n", a, b,
                      unsigned(ntohs(s.sin6_port)), unsigned(ntohs(d.sin6_port)));
  }
  if (n > 0) put(out, line, size_t(n));
}

void append_v2(std::vector<uint8_t>& out, const sockaddr_storage& src,
               const sockaddr_storage& dst) {
  put(out, kSigV2, sizeof kSigV2);
  out.push_back(0x21);  // version 2, PROXY command
  if (both_v4(src, dst)) {
    const auto& s = reinterpret_cast<const sockaddr_in&>(src);
    const auto& d = reinterpret_cast<const sockaddr_in&>(dst);
    const uint8_t hdr[3] = {0x11, 0, 12};
    put(out, hdr, 3);
    put(out, &s.sin_addr, 4);
    put(out, &d.sin_addr, 4);
    put(out, &s.sin_port, 2);  // already network order
    put(out, &d.sin_port, 2);
  } else {
    sockaddr_in6 s, d;
    normalize(src, dst, s, d);
    const uint8_t hdr[3] = {0x21, 0, 36};
    put(out, hdr, 3);
    put(out, &s.sin6_addr, 16);
    put(out, &d.sin6_addr, 16);
    put(out, &s.sin6_port, 2);
    put(out, &d.sin6_port, 2);
  }
}

void append_v2(std::vector<uint8_t>& out, const sockaddr_storage& src, const sockaddr_storage& dst,
               const SslInfo& ssl) {
  const size_t start = out.size();
  append_v2(out, src, dst);
  auto tlv = [&out](uint8_t type, const std::string& v) {
    out.push_back(type);
    out.push_back(static_cast<uint8_t>(v.size() >> 8));
    out.push_back(static_cast<uint8_t>(v.size()));
    out.insert(out.end(), v.begin(), v.end());
  };
  std::string cn = ssl.cn.substr(0, 4096), version = ssl.version.substr(0, 64);
  const size_t value = 5 + 3 + version.size() + (cn.empty() ? 0 : 3 + cn.size());
  out.push_back(0x20);  // PP2_TYPE_SSL
  out.push_back(static_cast<uint8_t>(value >> 8));
  out.push_back(static_cast<uint8_t>(value));
  out.push_back(ssl.cert_verified ? 0x03 : 0x01);  // PP2_CLIENT_SSL (| PP2_CLIENT_CERT_CONN)
  const uint8_t verify[4] = {0, 0, 0, 0};
  out.insert(out.end(), verify, verify + 4);
  tlv(0x21, version);
  if (!cn.empty()) tlv(0x22, cn);
  // The header's length field covers the addresses and the TLVs.
  const size_t len = out.size() - start - 16;
  out[start + 14] = static_cast<uint8_t>(len >> 8);
  out[start + 15] = static_cast<uint8_t>(len);
}

std::string ssl_cn(std::span<const uint8_t> h) {
  if (h.size() < 16 || h[12] >> 4 != 2) return {};
  const size_t addr = (h[13] >> 4) == 1 ? 12 : (h[13] >> 4) == 2 ? 36 : 0;
  size_t i = 16 + addr;
  const size_t end = std::min(h.size(), 16 + (size_t{h[14]} << 8 | h[15]));
  while (i + 3 <= end) {
    const uint8_t type = h[i];
    const size_t len = size_t{h[i + 1]} << 8 | h[i + 2];
    if (i + 3 + len > end) return {};
    if (type == 0x20 && len >= 5) {
      size_t j = i + 3 + 5;
      while (j + 3 <= i + 3 + len) {
        const size_t sl = size_t{h[j + 1]} << 8 | h[j + 2];
        if (j + 3 + sl > i + 3 + len) return {};
        if (h[j] == 0x22) return std::string(reinterpret_cast<const char*>(&h[j + 3]), sl);
        j += 3 + sl;
      }
    }
    i += 3 + len;
  }
  return {};
}

Header parse(std::span<const uint8_t> in) {
  if (in.empty()) return fail(Status::NeedMore);
  if (in[0] == kSigV2[0]) {
    const size_t n = std::min(in.size(), sizeof kSigV2);
    if (std::memcmp(in.data(), kSigV2, n) != 0) return fail(Status::NotProxy);
    return n < sizeof kSigV2 ? fail(Status::NeedMore) : parse_v2(in);
  }
  if (in[0] == 'P') {
    const size_t n = std::min(in.size(), kSigV1.size());
    if (std::memcmp(in.data(), kSigV1.data(), n) != 0) return fail(Status::NotProxy);
    return n < kSigV1.size() ? fail(Status::NeedMore) : parse_v1(in);
  }
  return fail(Status::NotProxy);
}

std::string format_address(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    auto& a = reinterpret_cast<const sockaddr_in&>(ss);
    inet_ntop(AF_INET, &a.sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(a.sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
    inet_ntop(AF_INET6, &a.sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(a.sin6_port));
  }
  return "?";
}

}  // namespace proxy
