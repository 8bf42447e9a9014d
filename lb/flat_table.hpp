// The storage of the balancer's two shared tables keyed by ClientKey
// (lb/affinity, lb/registry; issue 13): entries packed densely in fixed-size
// chunks (growing never copies them nor doubles their memory), found through
// an open-addressing index of uint32_t entry numbers (linear probing,
// backward-shift deletion: no tombstones, so probe lengths depend only on the
// live entries, never on the history of erases). Removing an entry moves the
// last one into its place, so the entries stay dense. Not thread-safe: each
// table holds it under its own mutex.
//
// T is trivially copyable with a `key` member. Allocation never throws: it
// returns false and leaves the table as it was.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "lb/client_key.hpp"
#include "lb/clock.hpp"
#include "lb/log.hpp"

namespace lb::flat {

inline constexpr uint32_t kNone = UINT32_MAX;
// Most index slots: entry numbers are uint32_t and one index slot stays free.
inline constexpr uint64_t kMaxSlots = UINT32_MAX - 2;
inline constexpr uint64_t kMinSlots = 16;

// ClientKey is a SHA-256 prefix (uniform), but a multiply spreads keys that
// are not (tests) and the slot is taken from the high bits (range reduction
// by multiplication: any index size, not only powers of two).
inline uint64_t hash(const ClientKey& k) {
  return (k.lo ^ k.hi) * 0x9E3779B97F4A7C15ull;
}
inline uint32_t home(uint64_t h, uint32_t n) {
  return static_cast<uint32_t>((static_cast<unsigned __int128>(h) * n) >> 64);
}

// A table found no memory for entry number size + 1: one warning per table
// at most every 10 s (`limit`, the table's own), saying what it does instead.
inline void warn_no_memory(LogLimiter& limit, const char* table, uint32_t size, const char* instead) {
  uint64_t skipped = 0;
  // The real clock for the rate limit: callers' now_ms may be any.
  if (!limit.allow(steady_ms(), skipped)) return;
  logf(LogLevel::Warn, "%s: no memory for more than %u entries; %s (%llu more times)", table, size,
       instead, static_cast<unsigned long long>(skipped));
}

// Index size for `entries` at a load factor of at most 4/5 (linear probing on
// uniform keys: about 3 probes for a hit and 13 for a miss on average there),
// always one free slot.
inline uint64_t slots_for(uint64_t entries) {
  return std::min(entries + entries / 4 + 1, kMaxSlots);
}
inline bool over_load(uint64_t entries, uint64_t slots) {
  return entries * 5 > slots * 4 || entries >= slots;
}

template <class T>
class Table {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  static constexpr uint32_t kChunk = 64;  // entries per allocation (2.5 KiB for 40 B)

  Table() = default;
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;
  ~Table() {
    for (uint32_t c = 0; c < chunks_; ++c) std::free(dir_[c]);
    std::free(dir_);
    std::free(idx_);
  }

  uint32_t size() const { return size_; }
  T& at(uint32_t i) { return dir_[i / kChunk][i % kChunk]; }
  const T& at(uint32_t i) const { return dir_[i / kChunk][i % kChunk]; }

  // The entry number of `k`, or kNone.
  uint32_t find(const ClientKey& k) const {
    if (n_ == 0) return kNone;
    for (uint32_t i = home(hash(k), n_);; i = next(i)) {
      if (idx_[i] == kNone) return kNone;
      if (at(idx_[i]).key == k) return idx_[i];
    }
  }

  // Room for one more entry: a chunk when the last is full, an index twice as
  // large (at most max_slots) when the load factor would pass 4/5. False, and
  // nothing lost, when either cannot be allocated.
  bool reserve_one(uint64_t max_slots) {
    if (over_load(uint64_t{size_} + 1, n_)) {
      uint64_t want =
          std::min(std::max(uint64_t{n_} * 2, kMinSlots), std::min(max_slots, kMaxSlots));
      if (want <= n_ || !rehash(want)) return false;
    }
    if (size_ < uint64_t{chunks_} * kChunk) return true;
    if (chunks_ == dir_cap_) {
      uint32_t cap = std::max<uint32_t>(4, dir_cap_ * 2);
      T** d = static_cast<T**>(std::realloc(dir_, sizeof(T*) * cap));
      if (!d) return false;
      dir_ = d;
      dir_cap_ = cap;
    }
    T* c = static_cast<T*>(std::malloc(sizeof(T) * kChunk));
    if (!c) return false;
    dir_[chunks_++] = c;
    return true;
  }

  // Appends v (its key absent; after reserve_one) and returns its number.
  uint32_t add(const T& v) {
    uint32_t e = size_++;
    at(e) = v;
    uint32_t i = home(hash(v.key), n_);
    while (idx_[i] != kNone) i = next(i);
    idx_[i] = e;
    return e;
  }

  // Removes entry e; the last entry moves into its place. Returns the number
  // the moved entry had (e itself when e was the last) so that the owner can
  // fix references to it.
  uint32_t remove(uint32_t e) {
    erase_slot(slot_of(e));
    uint32_t last = size_ - 1;
    if (last != e) {
      idx_[slot_of(last)] = e;
      at(e) = at(last);
    }
    --size_;
    // Keep at most one empty chunk (no malloc/free per add/remove at a boundary).
    while (chunks_ > 0 && uint64_t{size_} + 2 * kChunk <= uint64_t{chunks_} * kChunk)
      std::free(dir_[--chunks_]);
    if (dir_cap_ > 4 && chunks_ * 4 < dir_cap_) {
      T** d = static_cast<T**>(std::realloc(dir_, sizeof(T*) * (dir_cap_ / 2)));
      if (d) dir_ = d, dir_cap_ /= 2;  // no memory: the larger directory stays
    }
    return last;
  }

  // Gives index memory back once under 1/4 full (to a load of 2/5: growing
  // again takes doubling the entries, shrinking again losing 3/8 of them, so
  // each rehash is paid by as many adds or removes as there are entries), or
  // when larger than max_slots.
  void fit(uint64_t max_slots) {
    uint64_t n = n_;
    if (n <= max_slots && (n <= kMinSlots || uint64_t{size_} * 4 >= n)) return;
    uint64_t want = std::min(max_slots, std::max(kMinSlots, slots_for(uint64_t{size_} * 2)));
    if (want < n && want > size_) rehash(want);  // no memory: the larger index stays
  }

 private:
  uint32_t next(uint32_t i) const { return i + 1 == n_ ? 0 : i + 1; }

  uint32_t slot_of(uint32_t e) const {
    uint32_t i = home(hash(at(e).key), n_);
    while (idx_[i] != e) i = next(i);
    return i;
  }

  // Frees index slot i, shifting back the entries of its cluster that may move
  // closer to their home slot.
  void erase_slot(uint32_t i) {
    for (uint32_t j = next(i); idx_[j] != kNone; j = next(j)) {
      uint32_t h = home(hash(at(idx_[j]).key), n_);
      // idx_[j] may fill the hole at i when its home is not in (i, j] (cyclic).
      bool stays = i < j ? (h > i && h <= j) : (h > i || h <= j);
      if (stays) continue;
      idx_[i] = idx_[j];
      i = j;
    }
    idx_[i] = kNone;
  }

  bool rehash(uint64_t slots) {
    uint32_t n = static_cast<uint32_t>(slots);
    uint32_t* fresh = static_cast<uint32_t*>(std::malloc(sizeof(uint32_t) * n));
    if (!fresh) return false;
    std::fill(fresh, fresh + n, kNone);
    std::free(idx_);
    idx_ = fresh;
    n_ = n;
    for (uint32_t e = 0; e < size_; ++e) {
      uint32_t i = home(hash(at(e).key), n_);
      while (idx_[i] != kNone) i = next(i);
      idx_[i] = e;
    }
    return true;
  }

  T** dir_ = nullptr;  // chunks_ chunks of kChunk entries; entries [0, size_) live
  uint32_t chunks_ = 0, dir_cap_ = 0;
  uint32_t size_ = 0;
  uint32_t* idx_ = nullptr;  // n_ slots: an entry number or kNone
  uint32_t n_ = 0;
};

}  // namespace lb::flat
