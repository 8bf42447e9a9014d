// libFuzzer target for the CONNECT parser (mqtt/connect.hpp).
// Asserts, for any input:
//  - no crash / sanitizer report; Done implies 2 <= packet_length <= size and
//    packet_length <= the cap;
//  - the cap only matters for TooLarge: with the 1 MiB cap the result is the
//    same unless the default cap said TooLarge;
//  - split invariance: a prefix whose parse is not NeedMore gives exactly the
//    whole-buffer result (prefix length chosen from the input's hash, plus
//    the packet's exact length and one byte less when Done);
//  - bytes after the CONNECT are not read: when Done, the packet alone parses
//    the same;
//  - encode_connect() of a Done result parses back to an equal ConnectInfo.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "mqtt/codec.hpp"
#include "mqtt/connect.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace {

using mqtt::ConnectInfo;
using mqtt::ConnectResult;
using mqtt::ParseStatus;

bool same_will(const std::optional<mqtt::WillMessage>& a,
               const std::optional<mqtt::WillMessage>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a) return true;
  return a->qos == b->qos && a->retain == b->retain && a->topic == b->topic &&
         a->payload == b->payload && a->properties == b->properties;
}

bool same_info(const ConnectInfo& x, const ConnectInfo& y, bool with_length) {
  return x.version == y.version && x.protocol_level == y.protocol_level &&
         x.clean_start == y.clean_start && x.keep_alive == y.keep_alive &&
         x.client_id == y.client_id && x.username == y.username && x.password == y.password &&
         same_will(x.will, y.will) && x.properties == y.properties &&
         (!with_length || x.packet_length == y.packet_length);
}

bool same(const ConnectResult& a, const ConnectResult& b) {
  return a.status == b.status && a.error == b.error && same_info(a.info, b.info, true);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  const ConnectResult whole = mqtt::parse_connect(in);

  if (whole.status == ParseStatus::Done) {
    FUZZ_CHECK(whole.error == mqtt::ConnectError::None);
    FUZZ_CHECK(whole.info.packet_length >= 2);
    FUZZ_CHECK(whole.info.packet_length <= size);
    FUZZ_CHECK(whole.info.packet_length <= mqtt::kDefaultMaxConnectBytes);
    FUZZ_CHECK(whole.info.protocol_level == static_cast<uint8_t>(whole.info.version));
  } else if (whole.status == ParseStatus::Error) {
    FUZZ_CHECK(whole.error != mqtt::ConnectError::None);
  } else {
    FUZZ_CHECK(whole.error == mqtt::ConnectError::None);
  }

  // The cap: a bigger one changes nothing but TooLarge.
  const ConnectResult big = mqtt::parse_connect(in, mqtt::kMaxMaxConnectBytes);
  if (whole.error != mqtt::ConnectError::TooLarge) FUZZ_CHECK(same(whole, big));

  // Split invariance at an input-chosen point.
  const size_t k = size == 0 ? 0 : static_cast<size_t>(fuzz_hash(data, size) % (size + 1));
  const ConnectResult pre = mqtt::parse_connect(in.first(k));
  if (pre.status != ParseStatus::NeedMore) FUZZ_CHECK(same(pre, whole));
  if (whole.status == ParseStatus::NeedMore) FUZZ_CHECK(pre.status == ParseStatus::NeedMore);

  if (whole.status != ParseStatus::Done) return 0;
  const size_t len = whole.info.packet_length;
  // Exactly the packet: same result; one byte less: NeedMore.
  FUZZ_CHECK(same(mqtt::parse_connect(in.first(len)), whole));
  FUZZ_CHECK(mqtt::parse_connect(in.first(len - 1)).status == ParseStatus::NeedMore);

  // Re-encode and parse back. Lengths may differ (the input may use
  // non-minimal varints); everything else must survive.
  std::vector<uint8_t> out;
  mqtt::encode_connect(whole.info, out);
  const ConnectResult again =
      mqtt::parse_connect(std::span<const uint8_t>(out), mqtt::kMaxMaxConnectBytes);
  FUZZ_CHECK(again.status == ParseStatus::Done);
  FUZZ_CHECK(again.info.packet_length == out.size());
  FUZZ_CHECK(out.size() <= len);
  FUZZ_CHECK(same_info(again.info, whole.info, false));
  return 0;
}
