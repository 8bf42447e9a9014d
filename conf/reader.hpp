// Internal to conf/: the typed, error-collecting JSON reader shared by the
// loader's files (loader.cpp, load_scale.cpp). Not part of conf's interface.
#pragma once

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "conf/config.hpp"
#include "conf/loader.hpp"

namespace conf::reader {

using json = nlohmann::json;

// RFC 6901 escaping of one reference token.
inline std::string escape_token(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~')
      out += "~0";
    else if (c == '/')
      out += "~1";
    else
      out += c;
  }
  return out;
}

inline std::string child(const std::string& ptr, const std::string& key) {
  return ptr + "/" + escape_token(key);
}
inline std::string child(const std::string& ptr, size_t i) {
  return ptr + "/" + std::to_string(i);
}

inline const char* type_name(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "array";
    case json::value_t::object:
      return "object";
    case json::value_t::number_float:
      return "number";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "integer";
    default:
      return "value";
  }
}

class Errors {
 public:
  Errors(std::vector<std::string>& out, bool resolve_names) : resolve(resolve_names), out_(out) {}
  const bool resolve;  // LoadOptions::resolve_names, read by Obj::get_endpoint
  void add(const std::string& ptr, const std::string& msg) {
    out_.push_back((ptr.empty() ? std::string("/") : ptr) + ": " + msg);
  }

 private:
  std::vector<std::string>& out_;
};

// A JSON object being read: rejects keys not in `allowed`, offers typed getters
// that report errors at the key's pointer and leave the default in place.
class Obj {
 public:
  Obj(Errors& e, const json& j, std::string ptr, std::initializer_list<const char*> allowed)
      : e_(e), j_(j), ptr_(std::move(ptr)), resolve_(e.resolve) {
    if (!j_.is_object()) {
      e_.add(ptr_, std::string("expected an object, got ") + type_name(j_));
      valid_ = false;
      return;
    }
    std::set<std::string> ok(allowed.begin(), allowed.end());
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (!ok.count(it.key())) e_.add(child(ptr_, it.key()), "unknown key");
  }
  bool valid() const { return valid_; }
  const std::string& ptr() const { return ptr_; }
  std::string at(const char* key) const { return child(ptr_, key); }
  const json* find(const char* key) const {
    if (!valid_) return nullptr;
    auto it = j_.find(key);
    return it == j_.end() ? nullptr : &*it;
  }
  bool require(const char* key) {
    if (!valid_) return false;
    if (find(key)) return true;
    e_.add(at(key), "required key missing");
    return false;
  }

  template <typename T>
  void get_uint(const char* key, T& out, uint64_t lo, uint64_t hi) {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_number_integer()) {
      e_.add(at(key), std::string("expected an integer, got ") + type_name(*v));
      return;
    }
    if (v->is_number_unsigned() || v->get<int64_t>() >= 0) {
      uint64_t x = v->get<uint64_t>();
      if (x >= lo && x <= hi) {
        out = static_cast<T>(x);
        return;
      }
      e_.add(at(key),
             std::to_string(x) + " out of range " + std::to_string(lo) + ".." + std::to_string(hi));
      return;
    }
    e_.add(at(key), std::to_string(v->get<int64_t>()) + " out of range " + std::to_string(lo) +
                        ".." + std::to_string(hi));
  }

  void get_double(const char* key, double& out, double lo, double hi) {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_number()) {
      e_.add(at(key), std::string("expected a number, got ") + type_name(*v));
      return;
    }
    double x = v->get<double>();
    if (!(x >= lo && x <= hi)) {
      std::ostringstream m;
      m << x << " out of range " << lo << ".." << hi;
      e_.add(at(key), m.str());
      return;
    }
    out = x;
  }

  void get_bool(const char* key, bool& out) {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_boolean()) {
      e_.add(at(key), std::string("expected a boolean, got ") + type_name(*v));
      return;
    }
    out = v->get<bool>();
  }

  bool get_string(const char* key, std::string& out, bool non_empty = false) {
    const json* v = find(key);
    if (!v) return false;
    if (!v->is_string()) {
      e_.add(at(key), std::string("expected a string, got ") + type_name(*v));
      return false;
    }
    if (non_empty && v->get_ref<const std::string&>().empty()) {
      e_.add(at(key), "must not be empty");
      return false;
    }
    out = v->get<std::string>();
    return true;
  }

  void get_opt_string(const char* key, std::optional<std::string>& out) {
    std::string s;
    if (get_string(key, s)) out = s;
  }

  template <typename E>
  void get_enum(const char* key, E& out, std::initializer_list<std::pair<const char*, E>> names) {
    std::string s;
    if (!get_string(key, s)) return;
    std::string allowed;
    for (auto& [n, val] : names) {
      if (s == n) {
        out = val;
        return;
      }
      allowed += allowed.empty() ? "" : ", ";
      allowed += std::string("\"") + n + "\"";
    }
    e_.add(at(key), "\"" + s + "\" is not one of " + allowed);
  }

  bool get_endpoint(const char* key, Endpoint& out) {
    std::string s;
    if (!get_string(key, s)) return false;
    std::string err;
    auto ep = parse_endpoint(s, err, resolve_);
    if (!ep) {
      e_.add(at(key), err);
      return false;
    }
    out = *ep;
    return true;
  }

 private:
  Errors& e_;
  const json& j_;
  std::string ptr_;
  bool resolve_;
  bool valid_ = true;
};

// A backend's keys other than name and address (weight, proxy_protocol,
// tls, admin), read from `o` into `b` (loader.cpp); shared by "backends" and
// a discovery's "template".
void load_backend_fields(Errors& e, Obj& o, Backend& b);

// load_scale.cpp: "affinity_store" and "discovery".
void load_affinity_store(Errors& e, const json& j, const std::string& ptr, AffinityStore& a);
void load_discovery(Errors& e, const json& arr, const std::string& ptr, Config& c);

}  // namespace conf::reader
