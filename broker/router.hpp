// Subscription trie and retained-message store. Pure data structures: no I/O,
// no libuv; one instance per broker, used from the loop thread only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace broker {

struct Session;
struct Message;
using MsgPtr = std::shared_ptr<const Message>;

// Options of one subscription (MQTT 5 section 3.8.3.1; before 5.0 only qos).
struct SubOpts {
  uint8_t qos = 0;
  bool no_local = false;
  bool retain_as_published = false;
  uint8_t retain_handling = 0;
  uint32_t sub_id = 0;  // 0 = none
  bool operator==(const SubOpts&) const = default;
};

struct SubEntry {
  Session* session;
  SubOpts opts;
};

// "$share/GROUP/FILTER" (MQTT 5 section 4.8.2). No: an ordinary filter.
// Invalid: empty or wildcard group, or no filter after it [MQTT-4.8.2-1/2].
enum class Share : uint8_t { No, Yes, Invalid };
Share parse_shared(std::string_view f, std::string_view& group, std::string_view& filter);

// Whether `filter` matches `topic` ('+', '#'; a topic starting with '$' is not
// matched by a filter whose first level is a wildcard [MQTT-4.7.2-1]).
bool filter_matches(std::string_view filter, std::string_view topic);

// Transparent string hash: maps keyed by std::string, looked up by string_view.
struct StrHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Calls at(const Node*) for every node of a filter trie whose filter matches
// `topic` ('+' one level, '#' the rest and the parent level, no leading
// wildcard for $-topics [MQTT-4.7.2-1]). Node provides
// `const Node* kid(std::string_view level) const`. Visits at most
// (levels x 3) nodes.
template <typename Node, typename At>
void walk_matches(const Node* n, std::string_view rest, bool first, bool dollar, At& at) {
  // `rest` is the topic from the current level on; a topic "a/" has a last,
  // empty level.
  const size_t slash = rest.find('/');
  const std::string_view level = rest.substr(0, slash);
  const bool last = slash == std::string_view::npos;
  const std::string_view next = last ? std::string_view() : rest.substr(slash + 1);
  auto step = [&](const Node* k) {
    if (!k) return;
    if (last) {
      at(k);
      if (const Node* h = k->kid("#")) at(h);  // "a/#" matches "a" [MQTT-4.7.1-2]
    } else {
      walk_matches(k, next, false, dollar, at);
    }
  };
  step(n->kid(level));
  if (first && dollar) return;
  step(n->kid("+"));
  if (const Node* h = n->kid("#")) at(h);
}

template <typename Node, typename At>
void walk_matches(const Node* root, std::string_view topic, At&& at) {
  const bool dollar = !topic.empty() && topic[0] == '$';
  walk_matches(root, topic, true, dollar, at);
}

// Filters split into levels; each node keeps the subscriptions whose filter
// ends there. Matching a topic visits at most (levels x 3) nodes.
class SubTrie {
 public:
  SubTrie();
  ~SubTrie();
  // Adds or replaces (same filter, group and session) a subscription. Returns
  // true when it did not exist before. A non-empty `group` makes it a member of
  // that shared subscription group on `filter`.
  bool add(std::string_view filter, Session* s, const SubOpts& o, std::string_view group = {});
  // Returns true when it existed.
  bool remove(std::string_view filter, Session* s, std::string_view group = {});
  size_t size() const { return count_; }

  // The members of one shared subscription group on one filter.
  struct SharedGroup {
    std::string name;    // GROUP of $share/GROUP/FILTER
    std::string filter;  // FILTER
    std::vector<SubEntry> members;
    mutable size_t next = 0;  // round-robin position; matching is otherwise const
    // The next member in turn (members is never empty while the group exists).
    const SubEntry& pick() const { return members[next++ % members.size()]; }
  };

  // Calls plain(const SubEntry&) for every non-shared subscription matching
  // `topic` and group(const SharedGroup&) for every matching shared group.
  // The trie must not be modified during the call.
  template <typename P, typename G>
  void match_split(std::string_view topic, P&& plain, G&& group) const {
    walk_matches(root_.get(), topic, [&](const Node* n) {
      for (const auto& s : n->subs) plain(s);
      for (const auto& g : n->shared) group(g);
    });
  }
  // Calls f(const SubEntry&) for every subscription matching `topic`, and for
  // one member of each matching shared group (round robin).
  template <typename F>
  void match(std::string_view topic, F&& f) const {
    match_split(topic, f, [&](const SharedGroup& g) { f(g.pick()); });
  }
  // The shared group GROUP on exactly FILTER, or null.
  const SharedGroup* find_group(std::string_view filter, std::string_view group) const;

 private:
  struct Node {
    std::unordered_map<std::string, std::unique_ptr<Node>, StrHash, std::equal_to<>> kids;
    std::vector<SubEntry> subs;
    std::vector<SharedGroup> shared;
    bool empty() const { return subs.empty() && shared.empty() && kids.empty(); }
    const Node* kid(std::string_view k) const {
      auto it = kids.find(k);
      return it == kids.end() ? nullptr : it->second.get();
    }
  };

  // The node for `filter`, created when `create`; with the path from the root
  // (parent, level) when `path` is given.
  Node* find(std::string_view filter, bool create,
             std::vector<std::pair<Node*, std::string_view>>* path = nullptr);
  void prune(const std::vector<std::pair<Node*, std::string_view>>& path);

  std::unique_ptr<Node> root_;
  size_t count_ = 0;
};

// Retained messages by topic [MQTT-3.3.1-5..7]. Each entry has a version
// (Message::rversion); in a cluster the newest version of a topic wins on
// every node, and a deletion leaves a tombstone (its version) so that an
// older copy arriving later does not bring the message back. Tombstones are
// kept only when enabled, at most kMaxTombstones (oldest dropped first).
class RetainedStore {
 public:
  static constexpr size_t kMaxTombstones = 10000;

  // Stores `m` (an empty payload deletes) when m->rversion is newer than what
  // the topic holds; returns false (and changes nothing) when it is not.
  bool set(const std::string& topic, MsgPtr m);
  // Deletes with a version (a tombstone when enabled); false when older.
  bool erase_versioned(const std::string& topic, uint64_t version);
  // Calls f(const MsgPtr&) for each retained message matching `filter`.
  template <typename F>
  void match(std::string_view filter, F&& f) const {
    if (filter.find_first_of("+#") == std::string_view::npos) {
      auto it = by_topic_.find(filter);
      if (it != by_topic_.end()) f(it->second);
      return;
    }
    for (const auto& [t, m] : by_topic_)
      if (filter_matches(filter, t)) f(m);
  }
  void erase(std::string_view topic);
  size_t size() const { return by_topic_.size(); }
  void keep_tombstones(bool on) { keep_tombs_ = on; }
  // In topic order, for replication (a cursor is the last topic sent).
  const std::map<std::string, MsgPtr, std::less<>>& messages() const { return by_topic_; }
  const std::map<std::string, uint64_t, std::less<>>& tombstones() const { return tombs_; }

 private:
  uint64_t version_of(std::string_view topic) const;
  void tombstone(const std::string& topic, uint64_t version);

  std::map<std::string, MsgPtr, std::less<>> by_topic_;
  std::map<std::string, uint64_t, std::less<>> tombs_;
  bool keep_tombs_ = false;
};

}  // namespace broker
