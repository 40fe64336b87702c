// Log values that may carry input (error texts, names): JSON-quoted and
// escaped, so no value can break out of its field or forge a line
// (SECURITY.md 32). Use as  spdlog::info(R"("event":"x","error":{})", LogText(e));
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace otpd {

inline std::string LogText(std::string_view text) {
  return nlohmann::json(std::string(text))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace otpd
