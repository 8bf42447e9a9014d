#include "lb/srv_plan.hpp"

#include <algorithm>
#include <map>
#include <tuple>

namespace lb::dns {

uint32_t srv_weight(uint16_t weight, uint16_t max_weight) {
  if (max_weight == 0) return 1;
  const uint32_t w = (uint32_t{256} * weight + max_weight / 2) / max_weight;  // rounded
  return std::clamp<uint32_t>(w, 1, 256);
}

std::vector<SrvTarget> plan_srv(const std::vector<SrvRecord>& records) {
  // (target, port) -> the record with its lowest priority.
  std::map<std::pair<std::string, uint16_t>, SrvRecord> by_target;
  for (SrvRecord r : records) {
    if (!r.target.empty() && r.target.back() == '.') r.target.pop_back();
    if (r.target.empty()) continue;  // "." : no service at this name
    auto key = std::make_pair(r.target, r.port);
    auto it = by_target.find(key);
    if (it == by_target.end())
      by_target.emplace(std::move(key), std::move(r));
    else if (r.priority < it->second.priority ||
             (r.priority == it->second.priority && r.weight > it->second.weight))
      it->second = std::move(r);
  }
  std::map<uint16_t, uint16_t> max_weight;  // by priority; its keys rank the priorities
  for (const auto& [k, r] : by_target) {
    uint16_t& m = max_weight[r.priority];
    m = std::max(m, r.weight);
  }
  std::map<uint16_t, uint32_t> rank;
  for (const auto& [prio, w] : max_weight) rank.emplace(prio, static_cast<uint32_t>(rank.size()));
  std::vector<SrvTarget> out;
  out.reserve(by_target.size());
  for (const auto& [k, r] : by_target)
    out.push_back(
        {r.target, r.port, rank[r.priority], srv_weight(r.weight, max_weight[r.priority])});
  std::sort(out.begin(), out.end(), [](const SrvTarget& a, const SrvTarget& b) {
    return std::tie(a.tier, a.target, a.port) < std::tie(b.tier, b.target, b.port);
  });
  return out;
}

}  // namespace lb::dns
