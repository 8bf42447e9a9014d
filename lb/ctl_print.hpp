// `mqttlb ctl`'s human-readable output: tables and key: value lines from the
// admin API's JSON replies (docs/admin-api.md). stdout for results, stderr
// for the server's errors.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace lb::ctl {

void print_human(const std::string& command, const nlohmann::json& reply);
void print_error(const std::string& command, long http_status, const nlohmann::json& reply);

// Rows of cells as aligned columns (the first row is the header).
std::string table(const std::vector<std::vector<std::string>>& rows);

}  // namespace lb::ctl
