#include "lb/ctl_print.hpp"

#include <cstdio>

namespace lb::ctl {

using json = nlohmann::json;

namespace {

std::string dump(const json& j) {
  return j.dump(2, ' ', false, json::error_handler_t::replace);
}

// A field as text: strings as they are, numbers and booleans printed, "-" when absent/null.
std::string str(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return "-";
  const json& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", v.get<double>());
    return buf;
  }
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string duration(int64_t s) {
  char buf[64];
  if (s >= 86400)
    std::snprintf(buf, sizeof buf, "%lldd %02lldh %02lldm", static_cast<long long>(s / 86400),
                  static_cast<long long>(s % 86400 / 3600), static_cast<long long>(s % 3600 / 60));
  else if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh %02lldm %02llds", static_cast<long long>(s / 3600),
                  static_cast<long long>(s % 3600 / 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lldm %02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  return buf;
}

std::string check_text(const json& b) {
  const json& c = b.contains("last_check") ? b["last_check"] : json();
  if (!c.is_object()) return "-";
  std::string r = str(c, "result");
  std::string why = str(c, "reason");
  if (why != "-" && !why.empty()) r += " (" + why + ")";
  return r;
}

std::string latency_text(const json& b) {
  const json& c = b.contains("last_check") ? b["last_check"] : json();
  if (!c.is_object() || !c.contains("latency_s") || !c["latency_s"].is_number()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fms", c["latency_s"].get<double>() * 1000);
  return buf;
}

std::string evacuation_text(const json& ev) {
  if (!ev.is_object()) return "-";
  return str(ev, "state") + " " + str(ev, "moved") + "/" + str(ev, "sessions");
}

std::string backends_table(const json& list) {
  std::vector<std::vector<std::string>> rows = {{"NAME", "ADDRESS", "STATE", "ADMIN", "WEIGHT",
                                                 "EFFECTIVE", "SESSIONS", "CHECK", "LATENCY",
                                                 "EVACUATION"}};
  for (const auto& b : list)
    rows.push_back({str(b, "name"), str(b, "address"), str(b, "state"), str(b, "admin"),
                    str(b, "weight"), str(b, "effective_weight"), str(b, "sessions"), check_text(b),
                    latency_text(b),
                    evacuation_text(b.contains("evacuation") ? b["evacuation"] : json())});
  return table(rows);
}

std::string indent(const std::string& s) {
  std::string out = "  ";
  for (char c : s) {
    out += c;
    if (c == '\n') out += "  ";
  }
  if (out.size() >= 2 && out.compare(out.size() - 2, 2, "  ") == 0) out.resize(out.size() - 2);
  return out;
}

void print_status(const json& s) {
  std::printf("mqttlb %s  up %s  %s  %s connections\n", str(s, "version").c_str(),
              duration(s.value("uptime_s", int64_t{0})).c_str(),
              s.value("ready", false) ? "ready" : "NOT READY", str(s, "connections").c_str());
  std::vector<std::vector<std::string>> l = {{"NAME", "BIND", "TLS"}};
  for (const auto& x : s.value("listeners", json::array()))
    l.push_back({str(x, "name"), str(x, "bind"), x.value("tls", false) ? "yes" : "no"});
  std::printf("listeners:\n%s", indent(table(l)).c_str());
  std::printf("backends:\n%s", indent(backends_table(s.value("backends", json::array()))).c_str());
  const json evs = s.value("evacuations", json::array());
  if (!evs.empty()) {
    std::vector<std::vector<std::string>> e = {
        {"BACKEND", "STATE", "RATE/S", "MOVED", "SESSIONS", "DEADLINE_S", "STARTED"}};
    for (const auto& x : evs)
      e.push_back({str(x, "backend") == "" ? "(all)" : str(x, "backend"), str(x, "state"),
                   str(x, "rate_per_s"), str(x, "moved"), str(x, "sessions"), str(x, "deadline_s"),
                   str(x, "started")});
    std::printf("evacuations:\n%s", indent(table(e)).c_str());
  }
  const json rl = s.value("reloads", json::array());
  if (!rl.empty()) {
    std::vector<std::vector<std::string>> r = {{"TIME", "TRIGGER", "RESULT"}};
    for (const auto& x : rl) {
      std::string what;
      for (const auto& c : x.value(x.value("ok", false) ? "changed" : "errors", json::array()))
        what += (what.empty() ? "" : "; ") + (c.is_string() ? c.get<std::string>() : c.dump());
      r.push_back({str(x, "time"), str(x, "trigger"),
                   std::string(x.value("ok", false) ? "ok" : "FAILED") +
                       (what.empty() ? "" : ": " + what)});
    }
    std::printf("reloads (newest first):\n%s", indent(table(r)).c_str());
  }
}

}  // namespace

std::string table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

void print_human(const std::string& cmd, const json& j) {
  if (cmd == "backends") {
    std::printf("%s", backends_table(j.value("backends", json::array())).c_str());
  } else if (cmd == "status") {
    print_status(j);
  } else if (cmd == "drain" || cmd == "maint" || cmd == "ready" || cmd == "weight") {
    std::printf("%s: admin %s, weight %s (effective %s), state %s, %s sessions\n",
                str(j, "name").c_str(), str(j, "admin").c_str(), str(j, "weight").c_str(),
                str(j, "effective_weight").c_str(), str(j, "state").c_str(),
                str(j, "sessions").c_str());
  } else if (cmd == "evacuate") {
    std::string ref = str(j, "server_reference");
    std::printf("evacuation of %s started: %s/s, deadline %s s, reason %s%s\n",
                str(j, "backend").c_str(), str(j, "rate_per_s").c_str(),
                str(j, "deadline_s").c_str(), str(j, "reason").c_str(),
                ref == "-" ? "" : (", server reference " + ref).c_str());
    std::printf("progress: mqttlb ctl backends; cancel: mqttlb ctl cancel-evacuation %s\n",
                str(j, "backend").c_str());
  } else if (cmd == "cancel-evacuation") {
    std::printf("evacuation of %s cancelled: %s of %s sessions moved\n", str(j, "backend").c_str(),
                str(j, "moved").c_str(), str(j, "sessions").c_str());
  } else if (cmd == "client") {
    std::vector<std::vector<std::string>> rows;
    for (const char* k : {"client_id", "backend", "connected_since", "peer", "listener",
                          "protocol_version", "keep_alive_s", "forwarding"})
      rows.push_back({std::string(k) + ":", str(j, k)});
    const json tls = j.contains("tls") ? j["tls"] : json();
    rows.push_back({"tls:", tls.is_object() ? str(tls, "version") : "no"});
    if (tls.is_object()) rows.push_back({"client_subject:", str(tls, "client_subject")});
    std::printf("%s", table(rows).c_str());
  } else if (cmd == "kick") {
    std::printf("kicked %s\n", str(j, "kicked").c_str());
  } else if (cmd == "reload") {
    const json ch = j.value("changed", json::array());
    if (ch.empty())
      std::printf("reloaded: nothing changed\n");
    else
      std::printf("reloaded:\n");
    for (const auto& c : ch)
      std::printf("  %s\n", c.is_string() ? c.get<std::string>().c_str() : "");
  } else if (cmd == "upgrade" && j.is_object() && j.contains("pid")) {
    std::printf("upgrade %s: new generation pid %s\n", str(j, "upgrade").c_str(),
                str(j, "pid").c_str());
  } else {
    std::printf("%s\n", dump(j).c_str());  // config, upgrade
  }
}

void print_error(const std::string& cmd, long status, const json& j) {
  if (cmd == "reload" && j.contains("errors") && j["errors"].is_array()) {
    for (const auto& e : j["errors"])  // the --check format: JSON-POINTER: message
      std::fprintf(stderr, "%s\n", e.is_string() ? e.get<std::string>().c_str() : "");
    std::fprintf(stderr, "mqttlb ctl: reload rejected (HTTP %ld); the running config stays\n",
                 status);
    return;
  }
  std::string msg = str(j, "error");
  if (msg == "-") msg = str(j, "reason");
  if (msg == "-") msg = dump(j);
  std::fprintf(stderr, "mqttlb ctl: %s (HTTP %ld)\n", msg.c_str(), status);
}

}  // namespace lb::ctl
