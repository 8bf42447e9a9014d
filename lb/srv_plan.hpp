// SRV answers as RFC 2782 means them, for DNS discovery (lb/discovery.cpp,
// docs/scale-out.md "SRV"). Pure: records in, plan out; no I/O.
//  - priority: the targets are ranked by their priority value; rank 0 (the
//    lowest value present in the answer) is in rotation, rank 1 takes new
//    clients only when no rank-0 backend is healthy, and so on
//    (conf::Backend::tier, applied by PlaceStage::choose);
//  - weight: scaled into mqttlb's 1..256 within each priority:
//    round(256 * weight / W), W the largest weight among the targets of that
//    priority, and at least 1 — so weight 0 gets the smallest nonzero share
//    (RFC 2782: "a very small chance"); all weights 0: every target 1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lb::dns {

struct SrvRecord {
  std::string target;  // as in the answer; a trailing dot is dropped
  uint16_t port = 0;
  uint16_t priority = 0;
  uint16_t weight = 0;
};

struct SrvTarget {
  std::string target;
  uint16_t port = 0;
  uint32_t tier = 0;    // rank of its priority among those present (0: in rotation)
  uint32_t weight = 1;  // 1..256
};

// The backend weight of an SRV weight, given the largest weight W of its
// priority (see above).
uint32_t srv_weight(uint16_t weight, uint16_t max_weight);

// One entry per distinct (target, port), sorted by (tier, target, port). A
// (target, port) listed twice keeps its lowest priority (and that record's
// weight; of equal priorities, the larger weight), so the plan depends only
// on the set of records, never on their order. The target "." ("service not available here", RFC
// 2782) is skipped.
std::vector<SrvTarget> plan_srv(const std::vector<SrvRecord>& records);

}  // namespace lb::dns
