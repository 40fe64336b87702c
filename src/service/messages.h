// The text of a message that carries a code, per channel and locale, from
// mustache templates (kainjow/mustache). Built-in locales: en, el, de, fr, es.
// Thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace otpd {

struct MessageVars {
  std::string code;
  std::string app_name;
  int ttl_minutes = 10;
  std::string to;
  std::string verification_id;
  std::string locale;
};

struct RenderedMessage {
  std::string subject;  // email only
  std::string text;
};

// "1 2 3 4 5 6": the code with its digits spaced, for text-to-speech.
std::string SpokenCode(std::string_view code);

// A built-in locale for `requested` ("el-GR" → "el"); "en" when not built in.
std::string SupportedLocale(std::string_view requested);

// Renders the built-in template for `channel` in `locale` (falls back to en).
RenderedMessage RenderMessage(std::string_view channel, std::string_view locale,
                              const MessageVars& vars);

}  // namespace otpd
