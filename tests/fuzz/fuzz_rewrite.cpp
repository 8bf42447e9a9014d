// libFuzzer target: mqtt::rewrite_client_id (listener tls.identity
// "rewrite": the only place mqttlb re-encodes a CONNECT).
// For every input that parses as a complete CONNECT, with a new client id
// chosen from the input (valid UTF-8 of 1..300 characters, some multi-byte):
//  - the rewritten packet parses, and everything but the client id (and the
//    packet's length) is what it was;
//  - the bytes after the CONNECT are untouched;
//  - rewriting back to the old id gives back the original bytes exactly.
#include <algorithm>
#include <string>
#include <vector>

#include "fuzz_check.hpp"
#include "mqtt/connect.hpp"
#include "mqtt/frame.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  mqtt::ConnectResult r = mqtt::parse_connect(in, mqtt::kMaxMaxConnectBytes);
  if (r.status != mqtt::ParseStatus::Done) return 0;
  unsigned long long h = fuzz_hash(data, size);
  std::string id;
  size_t n = 1 + h % 300;  // an identity is never empty (mqttlb refuses a certificate without one)
  for (size_t i = 0; i < n; ++i) {
    if ((h >> (i % 60)) & 1)
      id += static_cast<char>('a' + (h + i) % 26);
    else
      id += "\xc3\xa9";  // U+00E9: multi-byte, still valid
  }
  std::vector<uint8_t> out = mqtt::rewrite_client_id(in, r.info, id);
  FUZZ_CHECK(!out.empty());
  mqtt::ConnectResult again = mqtt::parse_connect(out, mqtt::kMaxMaxConnectBytes);
  FUZZ_CHECK(again.status == mqtt::ParseStatus::Done);
  FUZZ_CHECK(again.info.client_id == id);
  mqtt::ConnectInfo a = r.info, b = again.info;
  a.client_id = b.client_id = "";
  a.packet_length = b.packet_length = 0;
  // The offset moves with the Remaining Length's size; relative to the body it stays.
  a.client_id_offset -= mqtt::peek_frame(in).header.header_length;
  b.client_id_offset -= mqtt::peek_frame(out).header.header_length;
  FUZZ_CHECK(a.version == b.version && a.clean_start == b.clean_start &&
             a.keep_alive == b.keep_alive && a.username == b.username && a.password == b.password &&
             a.properties == b.properties && a.client_id_offset == b.client_id_offset);
  FUZZ_CHECK(a.will.has_value() == b.will.has_value());
  if (a.will) FUZZ_CHECK(a.will->topic == b.will->topic && a.will->payload == b.will->payload);
  // The bytes after the CONNECT are the client's, unchanged.
  const size_t tail = size - r.info.packet_length;
  FUZZ_CHECK(out.size() >= tail);
  FUZZ_CHECK(std::equal(in.end() - static_cast<std::ptrdiff_t>(tail), in.end(),
                        out.end() - static_cast<std::ptrdiff_t>(tail)));
  // And back: byte for byte the original (minimal Remaining Length encodings aside).
  std::vector<uint8_t> back = mqtt::rewrite_client_id(out, again.info, r.info.client_id);
  mqtt::FrameResult f = mqtt::peek_frame(in);
  if (f.header.header_length == 1 + mqtt::varint_size(f.header.remaining_length))
    FUZZ_CHECK(back == std::vector<uint8_t>(in.begin(), in.end()));
  return 0;
}
