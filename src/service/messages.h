// The text of a message that carries a code, per channel and locale, from
// mustache templates (kainjow/mustache). Built-in locales: en, el, de, fr, es.
// Thread-safe.
#pragma once

#include <map>
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

// `text` with & < > " ' replaced by HTML entities (for HTML email parts and pages).
std::string HtmlEscape(std::string_view text);

// "1 2 3 4 5 6": the code with its digits spaced, for text-to-speech.
std::string SpokenCode(std::string_view code);

// A built-in locale for `requested` ("el-GR" → "el"); "en" when not built in.
std::string SupportedLocale(std::string_view requested);

// App templates, keyed "channel:locale" (AppSettings::templates).
using TemplateOverrides = std::map<std::string, std::string>;

// Renders the app's template for `channel` and `locale` if it has one, else the
// built-in template for `locale` (falling back to en). An email keeps the
// built-in subject.
RenderedMessage RenderMessage(std::string_view channel, std::string_view locale,
                              const MessageVars& vars, const TemplateOverrides& overrides = {});

// Checks an app template: a known channel and a built-in locale in the key,
// mustache that parses, and {{code}} or {{code_spoken}} in the text.
// Returns "" when fine, else what is wrong.
std::string CheckTemplate(std::string_view key, std::string_view text);

}  // namespace otpd
