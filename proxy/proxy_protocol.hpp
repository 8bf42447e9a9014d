// PROXY protocol v1 (text) and v2 (binary) headers, as specified by HAProxy's
// proxy-protocol.txt. Pure: bytes in, result out; no sockets. The balancer
// encodes (lb/), the reference broker decodes (broker/).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace proxy {

// Appends a header announcing a TCP connection from src to dst (both AF_INET,
// or both AF_INET6; mixed families are sent as v4-mapped IPv6).
void append_v1(std::vector<uint8_t>& out, const sockaddr_storage& src, const sockaddr_storage& dst);
void append_v2(std::vector<uint8_t>& out, const sockaddr_storage& src, const sockaddr_storage& dst);

// v2 with a PP2_TYPE_SSL TLV (0x20): the client came over TLS
// (PP2_CLIENT_SSL), with a verified certificate when `cert_verified`
// (| PP2_CLIENT_CERT_CONN; verify = 0 either way: nothing unverified gets
// through a listener that asks for certificates); sub-TLVs
// PP2_SUBTYPE_SSL_VERSION (0x21) and, when not empty, PP2_SUBTYPE_SSL_CN
// (0x22) — the identity brokers may authorize on.
struct SslInfo {
  std::string version;  // "TLSv1.3"
  std::string cn;
  bool cert_verified = false;
};
void append_v2(std::vector<uint8_t>& out, const sockaddr_storage& src, const sockaddr_storage& dst,
               const SslInfo& ssl);
// The CN a v2 header carries in its SSL TLV ("" when none); `header` is the
// complete header parse() accepted.
std::string ssl_cn(std::span<const uint8_t> header);

enum class Status : uint8_t {
  NeedMore,  // a prefix of a valid header; read more (v1 is at most 107 bytes, v2 at most 16+65535)
  Done,      // header complete: `length` bytes to skip
  NotProxy,  // the stream does not start with a PROXY signature
  Error,     // a PROXY signature followed by an invalid header
};

struct Header {
  Status status = Status::NeedMore;
  size_t length = 0;       // bytes of the header when Done
  bool local = false;      // v2 LOCAL command or v1 "UNKNOWN": no address carried
  sockaddr_storage src{};  // valid when Done && !local
  sockaddr_storage dst{};
};

// Parses a v1 or v2 header at the start of `in`.
Header parse(std::span<const uint8_t> in);

// "192.0.2.1:5000", "[2001:db8::1]:40000"; "?" for other families. For logs
// and tests of the addresses a header carries.
std::string format_address(const sockaddr_storage& ss);

}  // namespace proxy
