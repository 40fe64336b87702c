#include "service/messages.h"

#include <kainjow/mustache.hpp>

#include "store/model.h"

#include <array>
#include <cctype>

namespace otpd {
namespace {

struct LocaleTemplates {
  std::string_view locale;
  std::string_view text;     // sms, whatsapp, viber, push, flashcall
  std::string_view voice;    // spoken
  std::string_view subject;  // email
  std::string_view email;
};

constexpr std::array<LocaleTemplates, 5> kBuiltIn = {{
    {"en",
     "{{code}} is your {{app_name}} verification code. It expires in {{ttl_minutes}} minutes.",
     "Your {{app_name}} verification code is {{code_spoken}}. Again: {{code_spoken}}.",
     "Your {{app_name}} verification code",
     "Your {{app_name}} verification code is {{code}}.\n\nIt expires in {{ttl_minutes}} minutes. "
     "If you did not ask for it, ignore this message."},
    {"el", "Ο κωδικός επαλήθευσης {{app_name}} είναι {{code}}. Λήγει σε {{ttl_minutes}} λεπτά.",
     "Ο κωδικός επαλήθευσης {{app_name}} είναι {{code_spoken}}. Ξανά: {{code_spoken}}.",
     "Ο κωδικός επαλήθευσης {{app_name}}",
     "Ο κωδικός επαλήθευσης {{app_name}} είναι {{code}}.\n\nΛήγει σε {{ttl_minutes}} λεπτά. "
     "Αν δεν τον ζητήσατε, αγνοήστε αυτό το μήνυμα."},
    {"de",
     "{{code}} ist Ihr {{app_name}}-Bestätigungscode. Er läuft in {{ttl_minutes}} Minuten ab.",
     "Ihr {{app_name}}-Bestätigungscode lautet {{code_spoken}}. Noch einmal: {{code_spoken}}.",
     "Ihr {{app_name}}-Bestätigungscode",
     "Ihr {{app_name}}-Bestätigungscode lautet {{code}}.\n\nEr läuft in {{ttl_minutes}} Minuten "
     "ab. Wenn Sie ihn nicht angefordert haben, ignorieren Sie diese Nachricht."},
    {"fr",
     "{{code}} est votre code de vérification {{app_name}}. Il expire dans {{ttl_minutes}} "
     "minutes.",
     "Votre code de vérification {{app_name}} est {{code_spoken}}. Je répète : {{code_spoken}}.",
     "Votre code de vérification {{app_name}}",
     "Votre code de vérification {{app_name}} est {{code}}.\n\nIl expire dans {{ttl_minutes}} "
     "minutes. Si vous ne l'avez pas demandé, ignorez ce message."},
    {"es",
     "{{code}} es tu código de verificación de {{app_name}}. Caduca en {{ttl_minutes}} minutos.",
     "Tu código de verificación de {{app_name}} es {{code_spoken}}. Repito: {{code_spoken}}.",
     "Tu código de verificación de {{app_name}}",
     "Tu código de verificación de {{app_name}} es {{code}}.\n\nCaduca en {{ttl_minutes}} "
     "minutos. Si no lo has solicitado, ignora este mensaje."},
}};

const LocaleTemplates& TemplatesFor(std::string_view locale) {
  for (const auto& t : kBuiltIn) {
    if (t.locale == locale) return t;
  }
  return kBuiltIn[0];
}

std::string Render(std::string_view tmpl, const MessageVars& vars) {
  kainjow::mustache::mustache m{std::string(tmpl)};
  m.set_custom_escape([](const std::string& s) { return s; });  // plain text, not HTML
  kainjow::mustache::data data;
  data.set("code", vars.code);
  data.set("code_spoken", SpokenCode(vars.code));
  data.set("app_name", vars.app_name);
  data.set("ttl_minutes", std::to_string(vars.ttl_minutes));
  data.set("to", vars.to);
  data.set("verification_id", vars.verification_id);
  data.set("locale", vars.locale);
  return m.render(data);
}

}  // namespace

std::string CheckTemplate(std::string_view key, std::string_view text) {
  const auto colon = key.find(':');
  if (colon == std::string_view::npos) return "the key must be channel:locale, e.g. sms:en";
  const std::string_view channel = key.substr(0, colon);
  const std::string_view locale = key.substr(colon + 1);
  if (!IsKnownChannel(channel)) return "unknown channel '" + std::string(channel) + "'";
  if (SupportedLocale(locale) != locale) {
    return "locale '" + std::string(locale) + "' is not one of en, el, de, fr, es";
  }
  if (text.empty() || text.size() > 2000) return "the text must be 1..2000 bytes";
  kainjow::mustache::mustache m{std::string(text)};
  if (!m.is_valid()) return "not valid mustache: " + m.error_message();
  if (text.find("{{code}}") == std::string_view::npos &&
      text.find("{{code_spoken}}") == std::string_view::npos &&
      text.find("{{{code}}}") == std::string_view::npos) {
    return "the text must contain {{code}} or {{code_spoken}}";
  }
  return "";
}

std::string HtmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string SpokenCode(std::string_view code) {
  std::string out;
  for (char c : code) {
    if (!out.empty()) out += ' ';
    out += c;
  }
  return out;
}

std::string SupportedLocale(std::string_view requested) {
  std::string lang;
  for (char c : requested.substr(0, requested.find_first_of("-_"))) {
    lang += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  for (const auto& t : kBuiltIn) {
    if (t.locale == lang) return lang;
  }
  return "en";
}

RenderedMessage RenderMessage(std::string_view channel, std::string_view locale,
                              const MessageVars& vars, const TemplateOverrides& overrides) {
  const LocaleTemplates& t = TemplatesFor(locale);
  auto own = overrides.find(std::string(channel) + ":" + std::string(locale));
  if (own != overrides.end()) {
    return {channel == "email" ? Render(t.subject, vars) : "", Render(own->second, vars)};
  }
  if (channel == "voice") return {"", Render(t.voice, vars)};
  if (channel == "email") return {Render(t.subject, vars), Render(t.email, vars)};
  return {"", Render(t.text, vars)};
}

}  // namespace otpd
