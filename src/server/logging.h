// Structured logs: one JSON object per line on stderr, UTC timestamps.
// Callers pass the JSON members ("\"event\":\"x\",...") as the message;
// every value that may carry input goes through LogText (service/log_text.h)
// so a log line can never be forged (SECURITY.md 32). No code, key or full number is ever logged.
#pragma once

#include <spdlog/logger.h>

#include <string>
#include <string_view>

namespace otpd {

// Installs the JSON-lines logger as spdlog's default. `level`: "info", "debug", ...
void SetUpLogging(const std::string& level);
// The logger for one line per request: buffered, written at least every second
// (other lines are written at once). spdlog's default logger until SetUpLogging.
spdlog::logger& RequestLogger();
// Flushes and stops the logger; call before exit.
void ShutDownLogging();

}  // namespace otpd
