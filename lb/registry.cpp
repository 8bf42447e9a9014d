#include "lb/registry.hpp"

#include "lb/log.hpp"

namespace lb {

namespace {
LogLimiter g_alloc_log(10'000);

SessionRef ref_of(const auto& s) {
  return SessionRef{s.worker, s.session, s.backend};
}
}  // namespace

std::optional<SessionRef> ClientRegistry::add(const ClientKey& key, const SessionRef& ref) {
  std::lock_guard<std::mutex> g(mu_);
  uint32_t i = t_.find(key);
  if (i != flat::kNone) {
    Slot& s = t_.at(i);
    SessionRef old = ref_of(s);
    s.session = ref.session;
    s.backend = ref.backend;
    s.worker = ref.worker;
    if (old.backend != ref.backend) return old;
    return std::nullopt;
  }
  if (!t_.reserve_one(flat::kMaxSlots)) {
    flat::warn_no_memory(g_alloc_log, "registry", t_.size(),
                         "a session is not registered for takeover");
    return std::nullopt;
  }
  t_.add(Slot{key, ref.session, ref.backend, ref.worker});
  return std::nullopt;
}

std::optional<SessionRef> ClientRegistry::displace(const ClientKey& key, uint64_t backend) {
  std::lock_guard<std::mutex> g(mu_);
  uint32_t i = t_.find(key);
  if (i == flat::kNone || t_.at(i).backend == backend) return std::nullopt;
  SessionRef old = ref_of(t_.at(i));
  erase_locked(i);
  return old;
}

void ClientRegistry::remove(const ClientKey& key, uint64_t session) {
  std::lock_guard<std::mutex> g(mu_);
  uint32_t i = t_.find(key);
  if (i != flat::kNone && t_.at(i).session == session) erase_locked(i);
}

std::optional<SessionRef> ClientRegistry::find(const ClientKey& key) const {
  std::lock_guard<std::mutex> g(mu_);
  uint32_t i = t_.find(key);
  if (i == flat::kNone) return std::nullopt;
  return ref_of(t_.at(i));
}

size_t ClientRegistry::size() const {
  std::lock_guard<std::mutex> g(mu_);
  return t_.size();
}

void ClientRegistry::erase_locked(uint32_t i) {
  t_.remove(i);
  t_.fit(flat::kMaxSlots);
}

}  // namespace lb
