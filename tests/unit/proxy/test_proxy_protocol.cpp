// PROXY protocol v1/v2: round trips, byte-exact encodings, every prefix of a
// valid header is NeedMore, and garbage is NotProxy or Error.
#include <arpa/inet.h>
#include <doctest/doctest.h>

#include <cstring>
#include <string>

#include "proxy/proxy_protocol.hpp"

namespace {

sockaddr_storage v4(const char* ip, uint16_t port) {
  sockaddr_storage ss{};
  auto& a = reinterpret_cast<sockaddr_in&>(ss);
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  REQUIRE(inet_pton(AF_INET, ip, &a.sin_addr) == 1);
  return ss;
}

sockaddr_storage v6(const char* ip, uint16_t port) {
  sockaddr_storage ss{};
  auto& a = reinterpret_cast<sockaddr_in6&>(ss);
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(port);
  REQUIRE(inet_pton(AF_INET6, ip, &a.sin6_addr) == 1);
  return ss;
}

std::string str(const sockaddr_storage& ss) {
  return proxy::format_address(ss);
}

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Every strict prefix of a complete header must ask for more bytes.
void check_prefixes(const std::vector<uint8_t>& h) {
  for (size_t n = 0; n < h.size(); ++n) {
    auto r = proxy::parse(std::span(h.data(), n));
    INFO("prefix length " << n);
    CHECK(r.status == proxy::Status::NeedMore);
  }
}

}  // namespace

TEST_CASE("v1 IPv4 encodes the documented line and parses back") {
  std::vector<uint8_t> out;
  proxy::append_v1(out, v4("192.0.2.1", 5000), v4("198.51.100.7", 1883));
  std::string line(out.begin(), out.end());
  CHECK(line == "PROXY TCP4 192.0.2.1 198.51.100.7 5000 1883\r\n");
  out.push_back(0x10);  // the CONNECT that follows must not be consumed
  auto h = proxy::parse(out);
  REQUIRE(h.status == proxy::Status::Done);
  CHECK(h.length == line.size());
  CHECK_FALSE(h.local);
  CHECK(str(h.src) == "192.0.2.1:5000");
  CHECK(str(h.dst) == "198.51.100.7:1883");
  out.pop_back();
  check_prefixes(out);
}

TEST_CASE("v1 IPv6 and mixed families (v4-mapped)") {
  std::vector<uint8_t> out;
  proxy::append_v1(out, v6("2001:db8::1", 40000), v6("::1", 1883));
  CHECK(std::string(out.begin(), out.end()) == "PROXY TCP6 2001:db8::1 ::1 40000 1883\r\n");
  auto h = proxy::parse(out);
  REQUIRE(h.status == proxy::Status::Done);
  CHECK(str(h.src) == "[2001:db8::1]:40000");
  CHECK(str(h.dst) == "[::1]:1883");
  check_prefixes(out);

  out.clear();
  proxy::append_v1(out, v4("10.1.2.3", 1), v6("::1", 2));
  CHECK(std::string(out.begin(), out.end()) == "PROXY TCP6 ::ffff:10.1.2.3 ::1 1 2\r\n");
}

TEST_CASE("v1 UNKNOWN is a local header") {
  auto h = proxy::parse(bytes("PROXY UNKNOWN\r\n"));
  REQUIRE(h.status == proxy::Status::Done);
  CHECK(h.local);
  CHECK(h.length == 15);
  h = proxy::parse(bytes("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nxyz"));
  REQUIRE(h.status == proxy::Status::Done);
  CHECK(h.local);
  CHECK(h.length == 35);
}

TEST_CASE("v1 invalid headers are errors") {
  const char* bad[] = {
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n",       // missing port
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 70000\r\n",  // port out of range
      "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",          // IPv6 in TCP4
      "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",          // IPv4 in TCP6
      "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",      // unknown protocol
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",    // extra field
      "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",     // double space
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",        // LF only
      "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",     // sign
  };
  for (const char* b : bad) {
    INFO(b);
    CHECK(proxy::parse(bytes(b)).status == proxy::Status::Error);
  }
  // No CRLF within the 107-byte maximum.
  std::string longline = "PROXY TCP4 " + std::string(120, '1');
  CHECK(proxy::parse(bytes(longline)).status == proxy::Status::Error);
}

TEST_CASE("v2 IPv4 byte-exact and round trip") {
  std::vector<uint8_t> out;
  proxy::append_v2(out, v4("192.0.2.1", 5000), v4("198.51.100.7", 1883));
  const std::vector<uint8_t> want = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                                     0x55, 0x49, 0x54, 0x0A,  // signature
                                     0x21, 0x11, 0x00, 0x0C,  // v2 PROXY, TCP4, 12
                                     192,  0,    2,    1,    198,  51,   100,  7,  // addresses
                                     0x13, 0x88, 0x07, 0x5B};                      // 5000, 1883
  CHECK(out == want);
  auto h = proxy::parse(out);
  REQUIRE(h.status == proxy::Status::Done);
  CHECK(h.length == 28);
  CHECK_FALSE(h.local);
  CHECK(str(h.src) == "192.0.2.1:5000");
  CHECK(str(h.dst) == "198.51.100.7:1883");
  check_prefixes(out);
}

TEST_CASE("v2 IPv6, mixed families, TLVs after the addresses") {
  std::vector<uint8_t> out;
  proxy::append_v2(out, v6("2001:db8::5", 1234), v4("127.0.0.1", 1883));
  REQUIRE(out.size() == 16 + 36);
  CHECK(out[13] == 0x21);
  auto h = proxy::parse(out);
  REQUIRE(h.status == proxy::Status::Done);
  CHECK(str(h.src) == "[2001:db8::5]:1234");
  CHECK(str(h.dst) == "[::ffff:127.0.0.1]:1883");
  check_prefixes(out);

  // A TLV (type 0x04 NOOP, 3 bytes) extends the announced length; it is skipped.
  std::vector<uint8_t> tlv;
  proxy::append_v2(tlv, v4("1.2.3.4", 1), v4("5.6.7.8", 2));
  tlv[15] = 12 + 6;
  for (uint8_t b : {0x04, 0x00, 0x03, 0x00, 0x00, 0x00}) tlv.push_back(b);
  h = proxy::parse(tlv);
  REQUIRE(h.status == proxy::Status::Done);
  CHECK(h.length == 34);
  CHECK(str(h.src) == "1.2.3.4:1");
}

TEST_CASE("v2 LOCAL and unsupported families carry no address") {
  std::vector<uint8_t> h = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                            0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00};
  auto r = proxy::parse(h);
  REQUIRE(r.status == proxy::Status::Done);
  CHECK(r.local);
  CHECK(r.length == 16);
  h[12] = 0x21;  // PROXY over AF_UNIX stream: 216 bytes of addresses
  h[13] = 0x31;
  h[14] = 0x00;
  h[15] = 216;
  h.resize(16 + 216);
  r = proxy::parse(h);
  REQUIRE(r.status == proxy::Status::Done);
  CHECK(r.local);
  CHECK(r.length == 232);
}

TEST_CASE("v2 invalid headers are errors") {
  std::vector<uint8_t> base;
  proxy::append_v2(base, v4("1.2.3.4", 1), v4("5.6.7.8", 2));
  auto bad = base;
  bad[12] = 0x11;  // version 1 in a v2 signature
  CHECK(proxy::parse(bad).status == proxy::Status::Error);
  bad = base;
  bad[12] = 0x22;  // unknown command
  CHECK(proxy::parse(bad).status == proxy::Status::Error);
  bad = base;
  bad[15] = 4;  // too short for TCP4 addresses
  CHECK(proxy::parse(bad).status == proxy::Status::Error);
  bad = base;
  bad[15] = 200;  // announces more than present: still a valid prefix
  CHECK(proxy::parse(bad).status == proxy::Status::NeedMore);
}

TEST_CASE("streams that are not PROXY") {
  // An MQTT CONNECT, TLS ClientHello, HTTP, and near-misses of both signatures.
  const std::vector<std::vector<uint8_t>> cases = {
      {0x10, 0x0C, 0x00, 0x04, 'M', 'Q', 'T', 'T'},
      {0x16, 0x03, 0x01, 0x00},
      {'G', 'E', 'T', ' ', '/'},
      {'P', 'R', 'O', 'X', 'Z'},
      {'P', 'O', 'S', 'T'},
      {0x0D, 0x0A, 0x0D, 0x0B},
  };
  for (auto& c : cases) CHECK(proxy::parse(c).status == proxy::Status::NotProxy);
  CHECK(proxy::parse({}).status == proxy::Status::NeedMore);
}

TEST_CASE("v2 with the SSL TLV: byte-exact, parsed, and the CN read back") {
  std::vector<uint8_t> out;
  proxy::append_v2(out, v4("192.0.2.1", 5000), v4("198.51.100.7", 8883),
                   {"TLSv1.3", "device-1", true});
  std::vector<uint8_t> want = {
      0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A,        0x51,
      0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0x00,        12 + 3 + 5 + 10 + 11,
      192,  0,    2,    1,    198,  51,   100,         7,
      0x13, 0x88, 0x22, 0xB3, 0x20, 0x00, 5 + 10 + 11,  // PP2_TYPE_SSL
      0x03, 0,    0,    0,    0,                        // SSL | CERT_CONN, verified
      0x21, 0x00, 7,    'T',  'L',  'S',  'v',         '1',
      '.',  '3',  0x22, 0x00, 8,    'd',  'e',         'v',
      'i',  'c',  'e',  '-',  '1'};
  CHECK(out == want);
  auto h = proxy::parse(out);
  REQUIRE(h.status == proxy::Status::Done);
  CHECK(h.length == out.size());
  CHECK(str(h.src) == "192.0.2.1:5000");
  CHECK(proxy::ssl_cn(out) == "device-1");
  check_prefixes(out);

  // TLS without a client certificate: no CERT_CONN, no CN.
  std::vector<uint8_t> anon;
  proxy::append_v2(anon, v4("192.0.2.1", 5000), v4("198.51.100.7", 8883), {"TLSv1.2", "", false});
  REQUIRE(proxy::parse(anon).status == proxy::Status::Done);
  CHECK(anon[16 + 12 + 3] == 0x01);
  CHECK(proxy::ssl_cn(anon).empty());
  std::vector<uint8_t> plain;
  proxy::append_v2(plain, v4("192.0.2.1", 5000), v4("198.51.100.7", 1883));
  CHECK(proxy::ssl_cn(plain).empty());
}
