#include "lb/affinity.hpp"

#include <algorithm>
#include <memory>

#include "lb/clock.hpp"
#include "lb/log.hpp"

namespace lb {

namespace {
// Entries the table may ever hold: one slot stays free and indices are uint32_t
// (the config allows 100,000,000 entries, far below).
constexpr uint64_t kMaxEntries = flat::kMaxSlots * 4 / 5;  // what the largest index holds
LogLimiter g_alloc_log(10'000);

uint64_t capacity_for(uint64_t max_entries, uint64_t max_bytes) {
  uint64_t cap = std::min(max_entries, max_bytes / AffinityTable::kEntryBytes);
  return std::clamp<uint64_t>(cap, 1, kMaxEntries);
}
}  // namespace

AffinityTable::AffinityTable(uint64_t max_entries, uint64_t max_bytes, int64_t ttl_ms)
    : cap_(capacity_for(max_entries, max_bytes)), ttl_ms_(ttl_ms) {}

std::optional<uint64_t> AffinityTable::get(const ClientKey& key, int64_t now_ms) {
  std::lock_guard<std::mutex> g(mu_);
  uint32_t i = t_.find(key);
  if (i == flat::kNone) return std::nullopt;
  Slot& s = t_.at(i);
  if (now_ms - s.last_used_ms > ttl_ms_) {
    remove_locked(i);
    t_.fit(flat::slots_for(cap_));
    return std::nullopt;
  }
  s.last_used_ms = now_ms;
  uint64_t backend = s.backend;
  unlink_locked(i);
  push_front_locked(i);
  return backend;
}

void AffinityTable::put(const ClientKey& key, uint64_t backend, int64_t now_ms) {
  std::lock_guard<std::mutex> g(mu_);
  uint32_t i = t_.find(key);
  if (i != flat::kNone) {
    Slot& s = t_.at(i);
    s.backend = backend;
    s.last_used_ms = now_ms;
    unlink_locked(i);
    push_front_locked(i);
    return;
  }
  // The new entry becomes the most recent, so dropping the tail first leaves
  // what adding and then trimming to the bound would.
  while (t_.size() >= cap_) remove_locked(tail_);
  if (room_locked()) insert_front_locked(key, backend, now_ms);
  evict_locked(now_ms);
}

void AffinityTable::erase(const ClientKey& key) {
  std::lock_guard<std::mutex> g(mu_);
  uint32_t i = t_.find(key);
  if (i == flat::kNone) return;
  remove_locked(i);
  t_.fit(flat::slots_for(cap_));
}

void AffinityTable::set_limits(uint64_t max_entries, uint64_t max_bytes, int64_t ttl_ms) {
  std::lock_guard<std::mutex> g(mu_);
  cap_ = capacity_for(max_entries, max_bytes);
  ttl_ms_ = ttl_ms;
  evict_locked(INT64_MIN);
}

std::vector<AffinityTable::Entry> AffinityTable::dump() const {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<Entry> out;
  out.reserve(t_.size());
  for (uint32_t i = head_; i != flat::kNone; i = t_.at(i).next) {
    const Slot& s = t_.at(i);
    out.push_back(Entry{s.key, s.backend, s.last_used_ms});
  }
  return out;
}

// The result must be what pushing each accepted entry to the front (from the
// last one) and then trimming to cap_ would give, without ever holding more
// than cap_ entries: classify the entries against the table as it was first,
// then drop the old entries that would be cut, then insert only the front
// cap_ of the accepted ones.
void AffinityTable::load(const std::vector<Entry>& entries, int64_t now_ms) {
  std::lock_guard<std::mutex> g(mu_);
  const size_t n = entries.size();
  std::unique_ptr<size_t[]> order(n ? new (std::nothrow) size_t[n] : nullptr);
  std::unique_ptr<bool[]> take(n ? new (std::nothrow) bool[n] : nullptr);
  if (n && (!order || !take)) {
    logf(LogLevel::Warn,
         "affinity: no memory to load %zu handed-over entries; starting without them", n);
    evict_locked(now_ms);
    return;
  }
  size_t m = 0;
  for (size_t i = 0; i < n; ++i) {
    const Entry& e = entries[i];
    take[i] = now_ms - e.last_used_ms <= ttl_ms_ && t_.find(e.key) == flat::kNone;
    if (take[i]) order[m++] = i;
  }
  // Of a key given twice, only the later (less recently used) one counts.
  std::sort(order.get(), order.get() + m, [&](size_t a, size_t b) {
    const ClientKey &x = entries[a].key, &y = entries[b].key;
    return x.hi != y.hi ? x.hi < y.hi : x.lo != y.lo ? x.lo < y.lo : a < b;
  });
  size_t accepted = m;
  for (size_t j = 0; j + 1 < m; ++j) {
    if (entries[order[j]].key == entries[order[j + 1]].key) {
      take[order[j]] = false;
      --accepted;
    }
  }
  uint64_t added = std::min<uint64_t>(accepted, cap_);
  while (t_.size() > cap_ - added) remove_locked(tail_);
  size_t last = 0;  // one past the last accepted entry that stays
  for (uint64_t seen = 0; last < n && seen < added; ++last) seen += take[last];
  for (size_t i = last; i-- > 0;) {
    if (!take[i]) continue;
    if (!room_locked()) break;
    insert_front_locked(entries[i].key, entries[i].backend, entries[i].last_used_ms);
  }
  evict_locked(now_ms);
}

size_t AffinityTable::size() const {
  std::lock_guard<std::mutex> g(mu_);
  return t_.size();
}

uint64_t AffinityTable::capacity() const {
  std::lock_guard<std::mutex> g(mu_);
  return cap_;
}

// Drops entries beyond the bound, then expired ones from the LRU tail (the
// tail is the least recently used, so expiry stops at the first live one).
void AffinityTable::evict_locked(int64_t now_ms) {
  while (t_.size() > cap_) remove_locked(tail_);
  if (now_ms != INT64_MIN) {
    while (tail_ != flat::kNone && now_ms - t_.at(tail_).last_used_ms > ttl_ms_)
      remove_locked(tail_);
  }
  t_.fit(flat::slots_for(cap_));
}

// Memory for one more entry (the index at most what cap_ entries need). When
// none can be had, the least recently used entries make room instead; false
// when not even that works (an empty table).
bool AffinityTable::room_locked() {
  const uint64_t max_slots = flat::slots_for(cap_);
  if (t_.reserve_one(max_slots)) return true;
  flat::warn_no_memory(g_alloc_log, "affinity", t_.size(), "dropping the least recently used");
  while (t_.size() > 0) {
    remove_locked(tail_);
    if (t_.reserve_one(max_slots)) return true;
  }
  return false;
}

void AffinityTable::insert_front_locked(const ClientKey& key, uint64_t backend,
                                        int64_t last_used_ms) {
  uint32_t i = t_.add(Slot{key, backend, last_used_ms, flat::kNone, flat::kNone});
  push_front_locked(i);
}

void AffinityTable::remove_locked(uint32_t i) {
  unlink_locked(i);
  // The last entry moved into i: its neighbours point at it anew.
  if (t_.remove(i) == i) return;
  const Slot& s = t_.at(i);
  (s.prev != flat::kNone ? t_.at(s.prev).next : head_) = i;
  (s.next != flat::kNone ? t_.at(s.next).prev : tail_) = i;
}

void AffinityTable::unlink_locked(uint32_t i) {
  const Slot& s = t_.at(i);
  (s.prev != flat::kNone ? t_.at(s.prev).next : head_) = s.next;
  (s.next != flat::kNone ? t_.at(s.next).prev : tail_) = s.prev;
}

void AffinityTable::push_front_locked(uint32_t i) {
  Slot& s = t_.at(i);
  s.prev = flat::kNone;
  s.next = head_;
  (head_ != flat::kNone ? t_.at(head_).prev : tail_) = i;
  head_ = i;
}

}  // namespace lb
