#include "broker/peer_proto.hpp"

#include <algorithm>

#include "mqtt/codec.hpp"

namespace broker::peer {
namespace {

// Appends one frame: length placeholder, type; close() patches the length.
struct Writer {
  std::vector<uint8_t>& o;
  size_t start;
  Writer(std::vector<uint8_t>& out, Type t) : o(out), start(out.size()) {
    o.insert(o.end(), 4, 0);
    o.push_back(uint8_t(t));
  }
  ~Writer() {
    const uint32_t n = uint32_t(o.size() - start - 4);
    for (int i = 0; i < 4; ++i) o[start + size_t(i)] = uint8_t(n >> (24 - 8 * i));
  }
  void u8(uint8_t v) { o.push_back(v); }
  void u16(uint16_t v) { put(v, 2); }
  void u32(uint32_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  void put(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) o.push_back(uint8_t(v >> (8 * i)));
  }
  // Callers keep str16 values within 65535 bytes (topics, filters, ids, names).
  void str16(std::string_view s) {
    u16(uint16_t(s.size()));
    o.insert(o.end(), s.begin(), s.end());
  }
  void str32(std::string_view s) {
    u32(uint32_t(s.size()));
    o.insert(o.end(), s.begin(), s.end());
  }
};

// Bounds-checked cursor: any short read sets `bad` and returns zero values,
// so a structure is read whole and checked once.
struct Reader {
  std::span<const uint8_t> in;
  size_t pos = 0;
  bool bad = false;

  bool has(size_t n) {
    if (in.size() - pos < n) bad = true;
    return !bad;
  }
  uint64_t get(int n) {
    if (!has(size_t(n))) return 0;
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = v << 8 | in[pos++];
    return v;
  }
  uint8_t u8() { return uint8_t(get(1)); }
  uint16_t u16() { return uint16_t(get(2)); }
  uint32_t u32() { return uint32_t(get(4)); }
  uint64_t u64() { return get(8); }
  bool flag() {  // a boolean byte: 0 or 1
    const uint8_t v = u8();
    if (v > 1) bad = true;
    return v == 1;
  }
  std::string bytes(size_t n) {
    if (!has(n)) return {};
    std::string s(reinterpret_cast<const char*>(in.data() + pos), n);
    pos += n;
    return s;
  }
  std::string str16() { return bytes(u16()); }
  std::string str32() { return bytes(u32()); }
  // Ends the decode: true when nothing is left over and nothing was short.
  bool done() const { return !bad && pos == in.size(); }
};

// One message (inside Publish and session deliveries).
void write_msg(Writer& w, std::string_view topic, std::string_view payload,
               const mqtt::Properties* props, uint32_t expiry, uint64_t seq, uint8_t qos,
               bool retain) {
  w.u8(qos);
  w.u8(retain ? 1 : 0);
  w.u64(seq);
  w.u32(expiry);
  w.str16(topic);
  w.str32(payload);
  static const mqtt::Properties kNone;
  mqtt::append_properties(w.o, props ? *props : kNone);
}

void read_msg(Reader& r, WireMessage& m) {
  m.qos = r.u8();
  if (m.qos > 2) r.bad = true;
  m.retain = r.flag();
  m.seq = r.u64();
  m.expiry_left_ms = r.u32();
  m.topic = r.str16();
  m.payload = r.str32();
  if (r.bad) return;
  const mqtt::Result pr = mqtt::decode_properties(r.in, r.pos, mqtt::PropContext::Publish, m.props);
  if (!pr.ok) r.bad = true;
}

void write_sub(Writer& w, const WireSub& s) {
  w.str16(s.filter);
  w.u8(s.qos);
  w.u8(uint8_t((s.no_local ? 1 : 0) | (s.retain_as_published ? 2 : 0) | s.retain_handling << 2));
  w.u32(s.sub_id);
}

void read_sub(Reader& r, WireSub& s) {
  s.filter = r.str16();
  s.qos = r.u8();
  const uint8_t f = r.u8();
  s.no_local = f & 1;
  s.retain_as_published = f & 2;
  s.retain_handling = uint8_t(f >> 2);
  s.sub_id = r.u32();
  if (s.filter.empty() || s.qos > 2 || s.retain_handling > 2 || s.sub_id > 268435455) r.bad = true;
}

void write_delivery(Writer& w, const WireDelivery& d) {
  w.u16(d.pid);
  w.u8(d.qos);
  w.u8(d.state);
  w.u8(d.retain ? 1 : 0);
  w.u8(d.has_msg ? 1 : 0);
  const size_t n = std::min<size_t>(d.sub_ids.size(), 255);  // more is not worth a wider field
  w.u8(uint8_t(n));
  for (size_t i = 0; i < n; ++i) w.u32(d.sub_ids[i]);
  w.str16(d.origin);
  if (d.has_msg) {
    const WireMessage& m = d.msg;
    write_msg(w, m.topic, m.payload, &m.props, m.expiry_left_ms, m.seq, m.qos, m.retain);
  }
}

void read_delivery(Reader& r, WireDelivery& d) {
  d.pid = r.u16();
  d.qos = r.u8();
  d.state = r.u8();
  d.retain = r.flag();
  d.has_msg = r.flag();
  const uint8_t n = r.u8();
  for (uint8_t i = 0; i < n && !r.bad; ++i) d.sub_ids.push_back(r.u32());
  d.origin = r.str16();
  if (d.qos > 2 || d.state > 3) r.bad = true;
  if (d.has_msg && !r.bad) read_msg(r, d.msg);
}

template <typename T, typename F>
void read_list32(Reader& r, std::vector<T>& out, F&& read_one) {
  const uint32_t n = r.u32();
  // Every element takes at least one byte: a count beyond the rest is bad.
  if (n > r.in.size() - r.pos) r.bad = true;
  for (uint32_t i = 0; i < n && !r.bad; ++i) {
    out.emplace_back();
    read_one(out.back());
  }
}

}  // namespace

Frame next_frame(std::span<const uint8_t> in, uint32_t max_len) {
  Frame f;
  if (in.size() < 4) return f;
  const uint32_t n = uint32_t(in[0]) << 24 | uint32_t(in[1]) << 16 | uint32_t(in[2]) << 8 | in[3];
  if (n == 0 || n > max_len) {
    f.status = Status::Error;
    return f;
  }
  if (in.size() >= 5) {
    const uint8_t t = in[4];
    const bool known = (t >= 1 && t <= 4) || (t >= 10 && t <= 12) || (t >= 20 && t <= 26);
    if (!known) {
      f.status = Status::Error;
      return f;
    }
    f.type = Type(t);
  }
  if (in.size() - 4 < n) return f;
  f.status = Status::Done;
  f.body = in.subspan(5, n - 1);
  f.size = size_t(n) + 4;
  return f;
}

// ---- encoders

void encode(std::vector<uint8_t>& out, const Hello& h) {
  Writer w(out, Type::Hello);
  w.u8(h.version);
  w.str16(h.name);
  w.u64(h.incarnation);
  out.insert(out.end(), h.nonce.begin(), h.nonce.end());
}

void encode(std::vector<uint8_t>& out, const Auth& a) {
  Writer w(out, Type::Auth);
  out.insert(out.end(), a.proof.begin(), a.proof.end());
}

void encode_empty(std::vector<uint8_t>& out, Type t) {
  Writer w(out, t);
}

void encode_route(std::vector<uint8_t>& out, Type t, std::string_view filter) {
  Writer w(out, t);
  w.str16(filter);
}

void encode(std::vector<uint8_t>& out, const PublishView& p) {
  Writer w(out, Type::Publish);
  w.u8(uint8_t((p.deliver ? 1 : 0) | (p.store ? 2 : 0)));
  if (p.store) w.u64(p.version);
  write_msg(w, p.topic, p.payload, p.props, p.expiry_left_ms, p.seq, p.qos, p.retain);
  const size_t n = p.groups ? p.groups->size() : 0;
  w.u16(uint16_t(n));
  for (size_t i = 0; i < n; ++i) {
    w.str16((*p.groups)[i].first);
    w.str16((*p.groups)[i].second);
  }
}

void encode(std::vector<uint8_t>& out, const Publish& p) {
  const WireMessage& m = p.msg;
  encode(out, PublishView{m.topic, m.payload, &m.props, m.expiry_left_ms, m.seq, p.version, m.qos,
                          m.retain, p.deliver, p.store, &p.groups});
}

void encode(std::vector<uint8_t>& out, const Claim& c) {
  Writer w(out, Type::Claim);
  w.u32(c.id);
  w.str16(c.client_id);
  w.u64(c.ts);
  w.u8(c.clean ? 1 : 0);
}

void encode(std::vector<uint8_t>& out, const ClaimReply& r) {
  Writer w(out, Type::ClaimReply);
  w.u32(r.id);
  w.u8(r.status);
  w.u64(r.ts);
  w.u32(uint32_t(r.subs.size()));
  for (const auto& s : r.subs) write_sub(w, s);
}

void encode(std::vector<uint8_t>& out, const Commit& c) {
  Writer w(out, Type::Commit);
  w.u32(c.id);
  w.u8(c.transfer ? 1 : 0);
}

void encode(std::vector<uint8_t>& out, const SessionState& s) {
  Writer w(out, Type::SessionState);
  w.u32(s.claim);
  w.u8(s.found ? 1 : 0);
  if (!s.found) return;
  w.u32(s.expiry_s);
  w.u64(s.ts);
  w.u16(s.next_pid);
  w.u8(s.v5 ? 1 : 0);
  for (const auto* list : {&s.inflight, &s.queue}) {
    w.u32(uint32_t(list->size()));
    for (const auto& d : *list) write_delivery(w, d);
  }
  w.u32(uint32_t(s.qos2_in.size()));
  for (uint16_t pid : s.qos2_in) w.u16(pid);
  w.u16(uint16_t(s.marks.size()));
  for (const auto& m : s.marks) {
    w.str16(m.node);
    w.u64(m.incarnation);
    w.u64(m.seq);
  }
}

void encode_sync(std::vector<uint8_t>& out, Type t, uint64_t token) {
  Writer w(out, t);
  w.u64(token);
}

void encode(std::vector<uint8_t>& out, const Sessions& s) {
  Writer w(out, Type::Sessions);
  w.u32(uint32_t(s.entries.size()));
  for (const auto& [id, ts] : s.entries) {
    w.str16(id);
    w.u64(ts);
  }
}

// ---- decoders

bool decode(std::span<const uint8_t> body, Hello& out) {
  Reader r{body};
  out.version = r.u8();
  out.name = r.str16();
  out.incarnation = r.u64();
  if (r.has(kNonceSize))
    for (size_t i = 0; i < kNonceSize; ++i) out.nonce[i] = body[r.pos++];
  return r.done() && !out.name.empty() && out.name.size() <= 255;
}

bool decode(std::span<const uint8_t> body, Auth& out) {
  if (body.size() != kProofSize) return false;
  for (size_t i = 0; i < kProofSize; ++i) out.proof[i] = body[i];
  return true;
}

bool decode_empty(std::span<const uint8_t> body) {
  return body.empty();
}

bool decode_route(std::span<const uint8_t> body, std::string& filter) {
  Reader r{body};
  filter = r.str16();
  return r.done() && !filter.empty();
}

bool decode(std::span<const uint8_t> body, Publish& out) {
  Reader r{body};
  const uint8_t f = r.u8();
  if (f > 3) return false;
  out.deliver = f & 1;
  out.store = f & 2;
  if (out.store) out.version = r.u64();
  read_msg(r, out.msg);
  const uint16_t n = r.u16();
  for (uint16_t i = 0; i < n && !r.bad; ++i) {
    std::string filter = r.str16();
    std::string group = r.str16();
    if (filter.empty() || group.empty()) r.bad = true;
    out.groups.emplace_back(std::move(filter), std::move(group));
  }
  return r.done();
}

bool decode(std::span<const uint8_t> body, Claim& out) {
  Reader r{body};
  out.id = r.u32();
  out.client_id = r.str16();
  out.ts = r.u64();
  out.clean = r.flag();
  return r.done() && !out.client_id.empty();
}

bool decode(std::span<const uint8_t> body, ClaimReply& out) {
  Reader r{body};
  out.id = r.u32();
  const uint8_t st = r.u8();
  if (st > ClaimReply::Superseded) return false;
  out.status = ClaimReply::Status(st);
  out.ts = r.u64();
  read_list32(r, out.subs, [&](WireSub& s) { read_sub(r, s); });
  return r.done();
}

bool decode(std::span<const uint8_t> body, Commit& out) {
  Reader r{body};
  out.id = r.u32();
  out.transfer = r.flag();
  return r.done();
}

bool decode(std::span<const uint8_t> body, SessionState& out) {
  Reader r{body};
  out.claim = r.u32();
  out.found = r.flag();
  if (!out.found) return r.done();
  out.expiry_s = r.u32();
  out.ts = r.u64();
  out.next_pid = r.u16();
  out.v5 = r.flag();
  read_list32(r, out.inflight, [&](WireDelivery& d) { read_delivery(r, d); });
  read_list32(r, out.queue, [&](WireDelivery& d) { read_delivery(r, d); });
  read_list32(r, out.qos2_in, [&](uint16_t& pid) { pid = r.u16(); });
  const uint16_t n = r.u16();
  for (uint16_t i = 0; i < n && !r.bad; ++i) {
    Watermark m;
    m.node = r.str16();
    m.incarnation = r.u64();
    m.seq = r.u64();
    out.marks.push_back(std::move(m));
  }
  return r.done();
}

bool decode_sync(std::span<const uint8_t> body, uint64_t& token) {
  Reader r{body};
  token = r.u64();
  return r.done();
}

bool decode(std::span<const uint8_t> body, Sessions& out) {
  Reader r{body};
  read_list32(r, out.entries, [&](std::pair<std::string, uint64_t>& e) {
    e.first = r.str16();
    e.second = r.u64();
    if (e.first.empty()) r.bad = true;
  });
  return r.done();
}

}  // namespace broker::peer
