#include "broker/router.hpp"

#include <algorithm>

#include "broker/session.hpp"

namespace broker {

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

bool SubTrie::add(std::string_view filter, Session* s, const SubOpts& o) {
  Node* n = root_.get();
  size_t pos = 0;
  for (;;) {
    const size_t slash = filter.find('/', pos);
    const std::string_view level =
        filter.substr(pos, slash == std::string_view::npos ? slash : slash - pos);
    auto it = n->kids.find(level);
    if (it == n->kids.end())
      it = n->kids.emplace(std::string(level), std::make_unique<Node>()).first;
    n = it->second.get();
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  for (auto& e : n->subs) {
    if (e.session == s) {
      e.opts = o;  // same filter again replaces the subscription [MQTT-3.8.4-3]
      return false;
    }
  }
  n->subs.push_back({s, o});
  ++count_;
  return true;
}

bool SubTrie::remove(std::string_view filter, Session* s) {
  // Walk down remembering the path, then prune empty nodes bottom-up.
  std::vector<std::pair<Node*, std::string_view>> path;
  Node* n = root_.get();
  size_t pos = 0;
  for (;;) {
    const size_t slash = filter.find('/', pos);
    const std::string_view level =
        filter.substr(pos, slash == std::string_view::npos ? slash : slash - pos);
    auto it = n->kids.find(level);
    if (it == n->kids.end()) return false;
    path.emplace_back(n, level);
    n = it->second.get();
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  auto it = std::find_if(n->subs.begin(), n->subs.end(),
                         [s](const SubEntry& e) { return e.session == s; });
  if (it == n->subs.end()) return false;
  *it = n->subs.back();
  n->subs.pop_back();
  --count_;
  for (auto p = path.rbegin(); p != path.rend(); ++p) {
    auto k = p->first->kids.find(p->second);
    if (!k->second->subs.empty() || !k->second->kids.empty()) break;
    p->first->kids.erase(k);
  }
  return true;
}

void RetainedStore::set(const std::string& topic, MsgPtr m) {
  if (!m || m->payload.empty()) {
    erase(topic);
    return;
  }
  by_topic_[topic] = std::move(m);
}

void RetainedStore::erase(std::string_view topic) {
  auto it = by_topic_.find(topic);
  if (it != by_topic_.end()) by_topic_.erase(it);
}

}  // namespace broker
