#include "broker/router.hpp"

#include <algorithm>

#include "broker/session.hpp"

namespace broker {

Share parse_shared(std::string_view f, std::string_view& group, std::string_view& filter) {
  constexpr std::string_view kPrefix = "$share/";
  if (f.substr(0, kPrefix.size()) != kPrefix) return Share::No;
  const std::string_view rest = f.substr(kPrefix.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == rest.size())
    return Share::Invalid;
  group = rest.substr(0, slash);
  filter = rest.substr(slash + 1);
  if (group.find_first_of("+#") != std::string_view::npos) return Share::Invalid;
  return Share::Yes;
}

bool filter_matches(std::string_view filter, std::string_view topic) {
  if (!topic.empty() && topic[0] == '$' && !filter.empty() &&
      (filter[0] == '+' || filter[0] == '#'))
    return false;  // [MQTT-4.7.2-1]
  size_t f = 0, t = 0;
  for (;;) {
    const size_t fe = std::min(filter.find('/', f), filter.size());
    const std::string_view fl = filter.substr(f, fe - f);
    if (fl == "#") return true;
    const size_t te = std::min(topic.find('/', t), topic.size());
    const std::string_view tl = topic.substr(t, te - t);
    if (fl != "+" && fl != tl) return false;
    const bool f_end = fe == filter.size(), t_end = te == topic.size();
    if (f_end && t_end) return true;
    if (t_end) {  // topic done: only a trailing "/#" still matches ("a/#" vs "a")
      return filter.substr(fe) == "/#";
    }
    if (f_end) return false;
    f = fe + 1;
    t = te + 1;
  }
}

SubTrie::SubTrie() : root_(std::make_unique<Node>()) {}
SubTrie::~SubTrie() = default;

SubTrie::Node* SubTrie::find(std::string_view filter, bool create,
                             std::vector<std::pair<Node*, std::string_view>>* path) {
  Node* n = root_.get();
  size_t pos = 0;
  for (;;) {
    const size_t slash = filter.find('/', pos);
    const std::string_view level =
        filter.substr(pos, slash == std::string_view::npos ? slash : slash - pos);
    auto it = n->kids.find(level);
    if (it == n->kids.end()) {
      if (!create) return nullptr;
      it = n->kids.emplace(std::string(level), std::make_unique<Node>()).first;
    }
    if (path) path->emplace_back(n, level);
    n = it->second.get();
    if (slash == std::string_view::npos) return n;
    pos = slash + 1;
  }
}

void SubTrie::prune(const std::vector<std::pair<Node*, std::string_view>>& path) {
  for (auto p = path.rbegin(); p != path.rend(); ++p) {
    auto k = p->first->kids.find(p->second);
    if (!k->second->empty()) break;
    p->first->kids.erase(k);
  }
}

bool SubTrie::add(std::string_view filter, Session* s, const SubOpts& o, std::string_view group) {
  Node* n = find(filter, true);
  std::vector<SubEntry>* list = &n->subs;
  if (!group.empty()) {
    auto g = std::find_if(n->shared.begin(), n->shared.end(),
                          [&](const SharedGroup& x) { return x.name == group; });
    if (g == n->shared.end()) {
      n->shared.push_back({std::string(group), std::string(filter), {}, 0});
      g = n->shared.end() - 1;
    }
    list = &g->members;
  }
  for (auto& e : *list) {
    if (e.session == s) {
      e.opts = o;  // same filter again replaces the subscription [MQTT-3.8.4-3]
      return false;
    }
  }
  list->push_back({s, o});
  ++count_;
  return true;
}

bool SubTrie::remove(std::string_view filter, Session* s, std::string_view group) {
  std::vector<std::pair<Node*, std::string_view>> path;
  Node* n = find(filter, false, &path);
  if (!n) return false;
  std::vector<SubEntry>* list = &n->subs;
  auto g = n->shared.end();
  if (!group.empty()) {
    g = std::find_if(n->shared.begin(), n->shared.end(),
                     [&](const SharedGroup& x) { return x.name == group; });
    if (g == n->shared.end()) return false;
    list = &g->members;
  }
  auto it =
      std::find_if(list->begin(), list->end(), [s](const SubEntry& e) { return e.session == s; });
  if (it == list->end()) return false;
  list->erase(it);  // keeps the round-robin order of the others
  --count_;
  if (g != n->shared.end() && g->members.empty()) n->shared.erase(g);
  prune(path);
  return true;
}

const SubTrie::SharedGroup* SubTrie::find_group(std::string_view filter,
                                                std::string_view group) const {
  const Node* n = const_cast<SubTrie*>(this)->find(filter, false);
  if (!n) return nullptr;
  for (const auto& g : n->shared)
    if (g.name == group) return &g;
  return nullptr;
}

uint64_t RetainedStore::version_of(std::string_view topic) const {
  auto it = by_topic_.find(topic);
  if (it != by_topic_.end()) return it->second->rversion;
  auto t = tombs_.find(topic);
  return t == tombs_.end() ? 0 : t->second;
}

bool RetainedStore::set(const std::string& topic, MsgPtr m) {
  const uint64_t v = m ? m->rversion : 0;
  if (v && v <= version_of(topic)) return false;  // unversioned (0) always applies
  if (!m || m->payload.empty()) {
    erase(topic);
    if (v) tombstone(topic, v);
    return true;
  }
  tombs_.erase(topic);
  by_topic_[topic] = std::move(m);
  return true;
}

bool RetainedStore::erase_versioned(const std::string& topic, uint64_t version) {
  if (version <= version_of(topic)) return false;
  erase(topic);
  tombstone(topic, version);
  return true;
}

void RetainedStore::tombstone(const std::string& topic, uint64_t version) {
  if (!keep_tombs_) return;
  tombs_[topic] = version;
  if (tombs_.size() <= kMaxTombstones) return;
  auto oldest = tombs_.begin();  // linear, but only once over the cap
  for (auto it = tombs_.begin(); it != tombs_.end(); ++it)
    if (it->second < oldest->second) oldest = it;
  tombs_.erase(oldest);
}

void RetainedStore::erase(std::string_view topic) {
  auto it = by_topic_.find(topic);
  if (it != by_topic_.end()) by_topic_.erase(it);
}

}  // namespace broker
