// Internal to import/: the state one translation builds up, shared by the
// files that translate the parts of an HAProxy configuration.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "import/haproxy_import.hpp"
#include "import/haproxy_model.hpp"

namespace importer {

using ojson = nlohmann::ordered_json;

// One server keyword with its argument, and the line it came from (a
// `default-server` line or the `server` line itself).
struct Param {
  std::string kw;
  std::string arg;  // empty for flags
  const Directive* origin = nullptr;
};

struct Server {
  const Directive* line = nullptr;
  const Section* section = nullptr;  // the backend (or listen) it belongs to
  std::string name;
  std::string address;        // as mqttlb writes it
  std::vector<Param> params;  // effective, after default-server merging
  const Param* find(std::string_view kw) const;
};

struct Ctx {
  Ctx(const Model& m, Notes& n, const Options& o) : model(m), notes(n), opt(o) {}
  const Model& model;
  Notes& notes;
  const Options& opt;

  // global
  std::string crt_base, ca_base;
  bool server_verify = true;  // `ssl-server-verify`

  // what the translation chose
  std::vector<const Section*> mqtt_proxies;  // frontends/listens whose binds become listeners
  // The default pool: the first frontend's default backend (or listen). Its
  // settings (balance, stick table, checks) are mqttlb's for every pool.
  const Section* pool = nullptr;
  // Sections whose servers become backends: the pool first, then the targets
  // of routes in the order the routes name them (translate_routes.cpp).
  std::vector<const Section*> pools;
  std::map<const Section*, std::vector<std::string>> pool_backends;  // section -> backend names
  // Sections with the pool's very servers (by address): the pool under another name.
  std::vector<const Section*> aliases;
  // Listeners made from each proxy: (name, port).
  std::map<const Section*, std::vector<std::pair<std::string, int>>> proxy_listeners;
  // A use_backend or a secondary frontend's default_backend, as routes.
  struct Route {
    const Directive* line = nullptr;
    const Section* target = nullptr;
    ojson match;
  };
  std::vector<Route> routes;
  std::set<size_t> routed_acls;            // `acl` lines that went into a translated route
  std::set<const Directive*> route_rules;  // use_backend lines the planner noted
  std::set<const Section*> translated;     // sections whose every directive is accounted for
  std::vector<int> listener_ports;
  std::vector<Server> servers;
  // A `stick on` or content rule reads the CONNECT: HAProxy needs inspect-delay.
  const Directive* reads_connect = nullptr;
  bool inspect_delay = false;
  bool content_waits = false;  // a `tcp-request content` rule reads the payload
  std::optional<uint64_t> global_maxconn;
  uint64_t fe_maxconn = 0;  // sum over the translated frontends that set one
  size_t fe_maxconn_count = 0;

  // the output, in mqttlb's key order
  ojson listeners = ojson::array(), backends = ojson::array();
  ojson balance = ojson::object(), health = ojson::object(), limits = ojson::object();
  ojson metrics = ojson::object();
  std::optional<uint64_t> workers;
  std::map<std::string, size_t> origin;  // JSON pointer -> HAProxy line, for --check errors

  // Sets obj[key] = v, clamped to lo..hi with a note naming `what`; exact otherwise.
  void set_ranged(ojson& obj, const char* key, uint64_t v, uint64_t lo, uint64_t hi,
                  const Directive& d, const std::string& what);
  // A path from the file, relative ones below `base` (crt-base / ca-base).
  static std::string path(const std::string& base, const std::string& p);
  // Certificate and key files for an HAProxy `crt` argument: the PEM itself
  // when it holds the key (mqttlb's loader reads both from one file), else
  // `<crt>.key` as HAProxy does; a directory: its first certificate. False
  // with an error when neither can be read here.
  bool cert_and_key(const std::string& crt, std::string& cert, std::string& key, std::string& err,
                    std::string& note) const;
};

// translate_frontend.cpp: binds -> listeners, tcp-request rules, client side.
void translate_listeners(Ctx& c, const Section& proxy);
void translate_frontend_rules(Ctx& c, const Section& proxy);
// The same rules (tcp-request, use_backend, acl) in the pool backend.
void translate_backend_rules(Ctx& c, const Section& pool);
// translate_rate.cpp: `reject if { sc_conn_rate(0) gt N }` -> limits.connect_rate.
// Notes `d` either way; true when translated; `used` gets its track-sc lines.
bool translate_conn_rate(Ctx& c, const Section& p, const Directive& d,
                         std::set<const Directive*>& used);
// translate_rules.cpp, after the frontends: timeout client/server/tunnel.
void translate_idle(Ctx& c);
// translate_routes.cpp: use_backend rules and secondary frontends -> routes
// (planned before the servers are collected, emitted after they are named).
const Section* pool_alias(const Ctx& c, const Section* s);
void plan_routes(Ctx& c);
void emit_routes(Ctx& c, ojson& out);
// The settings of the other pools' sections, against the default pool's.
void compare_pools(Ctx& c);
// translate_backend.cpp: servers, balance, stick tables.
void collect_servers(Ctx& c, const Section& pool);
void name_backends(Ctx& c);
void translate_backends(Ctx& c);
void translate_balance(Ctx& c, const Section& pool);
void translate_stick(Ctx& c, const Section& pool);
// translate_health.cpp: checks on the servers and tcp-check rules.
void translate_health(Ctx& c, const Section& pool);
// leftovers.cpp: the note for a directive nothing else accounted for.
void note_leftover(Ctx& c, const Directive& d, SectionKind where);

// Model helpers (translate.cpp).
bool has_servers(const Section& s);
const Section* find_backend(const Model& m, const std::string& name);
std::vector<std::string> server_addresses(const Section& s);
// The backend a frontend (or listen) sends clients no rule routes: its
// default_backend, else (HAProxy would refuse them) its first use_backend's.
const Section* backend_of(const Model& m, const Section& p);

// Text helpers.
bool contains_ci(std::string_view hay, std::string_view needle);
std::string ms_text(uint64_t ms);

}  // namespace importer
