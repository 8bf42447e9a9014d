// connect_dump: parses the MQTT CONNECT at the start of a file and prints the
// result as one JSON line. Used by tests/integration/test_connect_capture.py
// on CONNECTs captured from real clients, and handy for looking at a capture:
//
//   build/tests/connect_dump [--max BYTES] FILE|-
//
// Output keys: status (need-more|done|error), error, version, protocol_level,
// client_id, username (null if absent), password (bool), clean_start,
// keep_alive, will (null or {topic, qos, retain, payload_length, properties}),
// properties (MQTT 5, only those present), packet_length, input_length.
// Exit status: 0 when a result was printed, 2 on usage or I/O errors.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mqtt/connect.hpp"

namespace {

using nlohmann::json;

const char* status_name(mqtt::ParseStatus s) {
  switch (s) {
    case mqtt::ParseStatus::NeedMore: return "need-more";
    case mqtt::ParseStatus::Done: return "done";
    case mqtt::ParseStatus::Error: return "error";
  }
  return "?";
}

json props_json(const mqtt::Properties& p) {
  json j = json::object();
  auto put = [&j](const char* k, const auto& opt) {
    if (opt) j[k] = *opt;
  };
  put("payload_format_indicator", p.payload_format_indicator);
  put("message_expiry_interval", p.message_expiry_interval);
  put("content_type", p.content_type);
  put("response_topic", p.response_topic);
  if (p.correlation_data) j["correlation_data_length"] = p.correlation_data->size();
  put("session_expiry_interval", p.session_expiry_interval);
  put("authentication_method", p.authentication_method);
  if (p.authentication_data) j["authentication_data_length"] = p.authentication_data->size();
  put("request_problem_information", p.request_problem_information);
  put("will_delay_interval", p.will_delay_interval);
  put("request_response_information", p.request_response_information);
  put("receive_maximum", p.receive_maximum);
  put("topic_alias_maximum", p.topic_alias_maximum);
  put("maximum_packet_size", p.maximum_packet_size);
  if (!p.user_properties.empty()) {
    json up = json::array();
    for (const auto& [k, v] : p.user_properties) up.push_back(json::array({k, v}));
    j["user_properties"] = up;
  }
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  size_t max_bytes = mqtt::kDefaultMaxConnectBytes;
  std::string path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--max" && i + 1 < argc) {
      char* end = nullptr;
      unsigned long long v = std::strtoull(argv[++i], &end, 10);
      if (end == nullptr || *end != '\0' || v == 0) {
        std::fprintf(stderr, "connect_dump: bad --max value\n");
        return 2;
      }
      max_bytes = static_cast<size_t>(v);
    } else if (path.empty() && (a == "-" || a.rfind("-", 0) != 0)) {
      path = a;
    } else {
      std::fprintf(stderr, "usage: connect_dump [--max BYTES] FILE|-\n");
      return 2;
    }
  }
  if (path.empty()) {
    std::fprintf(stderr, "usage: connect_dump [--max BYTES] FILE|-\n");
    return 2;
  }
  std::vector<uint8_t> buf;
  if (path == "-") {
    buf.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream is(path, std::ios::binary);
    if (!is) {
      std::fprintf(stderr, "connect_dump: cannot open %s\n", path.c_str());
      return 2;
    }
    buf.assign(std::istreambuf_iterator<char>(is), std::istreambuf_iterator<char>());
  }

  const mqtt::ConnectResult r =
      mqtt::parse_connect(std::span<const uint8_t>(buf.data(), buf.size()), max_bytes);
  const mqtt::ConnectInfo& c = r.info;
  json j;
  j["status"] = status_name(r.status);
  j["error"] = r.status == mqtt::ParseStatus::Error ? json(mqtt::to_string(r.error)) : json(nullptr);
  j["version"] = mqtt::to_string(c.version);
  j["protocol_level"] = c.protocol_level;
  j["client_id"] = c.client_id;
  j["username"] = c.username ? json(*c.username) : json(nullptr);
  j["password"] = c.password.has_value();
  j["clean_start"] = c.clean_start;
  j["keep_alive"] = c.keep_alive;
  if (c.will) {
    j["will"] = {{"topic", c.will->topic},
                 {"qos", c.will->qos},
                 {"retain", c.will->retain},
                 {"payload_length", c.will->payload.size()},
                 {"properties", props_json(c.will->properties)}};
  } else {
    j["will"] = nullptr;
  }
  j["properties"] = props_json(c.properties);
  j["packet_length"] = c.packet_length;
  j["input_length"] = buf.size();
  // Strings are valid UTF-8 when Done; replace keeps partial results printable.
  std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  return 0;
}
