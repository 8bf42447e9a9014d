// libFuzzer target: the WebSocket frame decoder (net/ws_frame.hpp), both
// roles. The input is decoded whole and cut into input-chosen reads.
// Properties: the decoder takes every byte it is given until it finishes;
// the data, the control events and the final Close/Error are the same
// whatever the cut; no event carries more payload than the input had; a
// Data event is at most kMaxChunk; between frames it holds no buffer.
#include <string>
#include <vector>

#include "fuzz_check.hpp"
#include "net/ws_frame.hpp"

namespace {

struct Out {
  std::string data;
  std::vector<int> events;
  uint16_t code = 0;
  int error = 0;
};

Out decode(net::ws::Role role, const uint8_t* d, size_t size, unsigned long long cuts) {
  net::ws::FrameDecoder dec(role);
  Out o;
  size_t pos = 0;
  while (pos < size && !dec.finished()) {
    size_t n = cuts ? 1 + cuts % 300 : size;
    cuts = cuts * 6364136223846793005ull + 1442695040888963407ull;
    if (n > size - pos) n = size - pos;
    std::span<const uint8_t> in(d + pos, n);
    for (;;) {
      net::ws::Event ev = dec.next(in);
      if (ev.kind == net::ws::Event::Kind::NeedMore) break;
      if (ev.kind == net::ws::Event::Kind::Data) {
        FUZZ_CHECK(ev.len > 0 && ev.len <= net::ws::FrameDecoder::kMaxChunk);
        o.data.append(reinterpret_cast<const char*>(ev.data), ev.len);
        continue;
      }
      FUZZ_CHECK(ev.len <= 125);
      o.events.push_back(static_cast<int>(ev.kind));
      if (ev.kind == net::ws::Event::Kind::Close || ev.kind == net::ws::Event::Kind::Error) {
        o.code = ev.code;
        o.error = static_cast<int>(ev.error);
      }
    }
    FUZZ_CHECK(in.empty() || dec.finished());
    pos += n - in.size();
    if (!in.empty()) break;
  }
  FUZZ_CHECK(o.data.size() <= size);
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const unsigned long long cuts = fuzz_hash(data, size) | 1;
  for (auto role : {net::ws::Role::Server, net::ws::Role::Client}) {
    Out a = decode(role, data, size, 0);
    Out b = decode(role, data, size, cuts);
    FUZZ_CHECK(a.data == b.data);
    FUZZ_CHECK(a.events == b.events);
    FUZZ_CHECK(a.code == b.code && a.error == b.error);
  }
  return 0;
}
