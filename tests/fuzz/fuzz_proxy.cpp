// libFuzzer target: the PROXY protocol v1/v2 parser (proxy::parse), which the
// reference broker runs on bytes from whoever connects to it.
//  - any input: no crash, no read outside it; Done means 0 < length <= size;
//  - incremental: every proper prefix of a complete header is NeedMore, and
//    bytes after the header do not change the result;
//  - round trip: headers we encode from fuzzer-chosen addresses parse back to
//    the same addresses (v1 and v2, IPv4 and IPv6).
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "fuzz_check.hpp"
#include "proxy/proxy_protocol.hpp"

namespace {

bool same_addr(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET) {
    auto &x = reinterpret_cast<const sockaddr_in&>(a), &y = reinterpret_cast<const sockaddr_in&>(b);
    return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
  }
  auto &x = reinterpret_cast<const sockaddr_in6&>(a), &y = reinterpret_cast<const sockaddr_in6&>(b);
  return x.sin6_port == y.sin6_port && std::memcmp(&x.sin6_addr, &y.sin6_addr, 16) == 0;
}

sockaddr_storage addr_from(const uint8_t* d, bool v6) {
  sockaddr_storage ss{};
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    std::memcpy(&a->sin6_addr, d, 16);
    std::memcpy(&a->sin6_port, d + 16, 2);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    std::memcpy(&a->sin_addr, d, 4);
    std::memcpy(&a->sin_port, d + 4, 2);
  }
  return ss;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  proxy::Header h = proxy::parse(in);
  if (h.status == proxy::Status::Done) {
    FUZZ_CHECK(h.length > 0 && h.length <= size);
    size_t cut = static_cast<size_t>(fuzz_hash(data, size) % h.length);
    FUZZ_CHECK(proxy::parse(in.first(cut)).status == proxy::Status::NeedMore);
    std::vector<uint8_t> longer(data, data + size);
    longer.push_back(0x10);
    proxy::Header again = proxy::parse(longer);
    FUZZ_CHECK(again.status == proxy::Status::Done && again.length == h.length);
  }
  if (h.status == proxy::Status::NotProxy || h.status == proxy::Status::Error) {
    std::vector<uint8_t> longer(data, data + size);
    longer.push_back(static_cast<uint8_t>(size));
    FUZZ_CHECK(proxy::parse(longer).status == h.status);
  }
  // Round trip from fuzzer-chosen addresses.
  if (size >= 37) {  // two addresses of 18 bytes after the family byte
    bool v6 = data[0] & 1;
    sockaddr_storage src = addr_from(data + 1, v6), dst = addr_from(data + 19, v6);
    for (int version = 1; version <= 2; ++version) {
      std::vector<uint8_t> out;
      if (version == 1)
        proxy::append_v1(out, src, dst);
      else
        proxy::append_v2(out, src, dst);
      proxy::Header r = proxy::parse(out);
      FUZZ_CHECK(r.status == proxy::Status::Done && r.length == out.size() && !r.local);
      FUZZ_CHECK(same_addr(r.src, src) && same_addr(r.dst, dst));
    }
    // v2 with the SSL TLV: still one complete header, the CN comes back out.
    proxy::SslInfo ssl{
        "TLSv1.3",
        std::string(reinterpret_cast<const char*>(data) + 37, std::min<size_t>(size - 37, 300)),
        (data[0] & 1) != 0};
    std::vector<uint8_t> out;
    proxy::append_v2(out, src, dst, ssl);
    proxy::Header r = proxy::parse(out);
    FUZZ_CHECK(r.status == proxy::Status::Done && r.length == out.size());
    FUZZ_CHECK(same_addr(r.src, src) && same_addr(r.dst, dst));
    FUZZ_CHECK(proxy::ssl_cn(out) == ssl.cn);
  }
  return 0;
}
