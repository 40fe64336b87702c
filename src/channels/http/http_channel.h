// The `http` provider: one templated HTTP request per message (SPEC §2), for
// WhatsApp Cloud API, Viber, voice and flash-call APIs, push gateways and any
// SMS HTTP API, plus the delivery reports they POST to
// /v1/providers/{name}/dlr?token=... (SPEC §4.1). docs/providers/http.md lists
// every key; in short:
//
//   [[provider]]
//   name = "wa"
//   type = "http"
//   channels = ["whatsapp"]
//   method = "POST"                                  # GET, POST, PUT or PATCH
//   url = "https://graph.facebook.com/v19.0/ID/messages"   # mustache, URL-encoded values
//   headers = { Authorization = "Bearer TOKEN" }     # mustache, raw values
//   body = '{"to":"{{to}}","code":"{{code}}"}'       # mustache, escaped per content_type
//   content_type = "application/json"                # default
//   message_id = "/messages/0/id"                    # JSON pointer into the 2xx answer
//   timeout_ms = 10000
//   connect_retries = 2
//   ca_file = "/etc/otpd/ca.pem"
//   dlr_token = "long-random-string"
//   dlr_format = "json"                              # or "form"
//   dlr_list = "/entry/*/changes/*/value/statuses"   # optional: where the reports are
//   dlr_id = "/id"
//   dlr_status = "/status"
//   dlr_delivered = ["delivered"]
//   dlr_undelivered = ["undelivered"]
//   dlr_failed = ["failed"]
//
// Success is a 2xx answer. A send is retried only when the request never
// reached the server (connection refused, name not resolved, connect timeout),
// at most connect_retries times; a timeout, a dropped connection or a non-2xx
// answer after the request went out fails the send (the dispatcher fails over).
// TLS certificates and host names are always verified. Neither the URL (whose
// query may carry a key), the headers, the body nor the answer's body ever
// appears in an error: errors name the provider and the HTTP status.
//
// Thread-safety: Send and ParseHttpReport may be called from any number of
// threads at once (one libcurl handle per send; the settings are immutable).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "service/channel.h"

namespace otpd {

otp::Result<std::unique_ptr<ChannelProvider>> NewHttpChannel(const ProviderConfig& config,
                                                             ProviderContext& context);

// --- exposed for tests ----------------------------------------------------------

// How values are escaped where a template inserts them.
enum class Escaping {
  kNone,  // header values (line breaks are refused after rendering)
  kJson,  // inside a JSON string: "{{text}}" stays one valid JSON string
  kForm,  // application/x-www-form-urlencoded (space as '+')
  kUrl,   // a URL, e.g. its query string (RFC 3986 percent-encoding)
  kXml,   // XML text or attribute (TwiML, VoiceXML, SOAP)
};

// The body escaping for a content type: JSON for application/json and any
// +json type, form for application/x-www-form-urlencoded, XML for
// application/xml, text/xml and any +xml type, none otherwise.
Escaping EscapingFor(std::string_view content_type);

// `value` escaped for `escaping` (kNone returns it unchanged).
std::string EscapeValue(std::string_view value, Escaping escaping);

// The variables a template may use (SPEC §4.1 messages, plus `channel`, `text`,
// `subject` and `to_digits`: `to` without its leading '+').
std::map<std::string, std::string> TemplateVariables(const OutboundMessage& message);

// Checks a template: valid mustache that uses only TemplateVariables' names.
// Returns "" when fine, else what is wrong.
std::string CheckHttpTemplate(std::string_view text);

// `text` rendered over `vars`, each value escaped for `escaping` ({{{name}}}
// inserts a value unescaped).
std::string RenderHttpTemplate(std::string_view text,
                               const std::map<std::string, std::string>& vars, Escaping escaping);

// The value at `pointer` (RFC 6901) in the JSON document `json_text`, as text
// (a string as is, a number or boolean printed); nullopt when the document does
// not parse, has nothing there, or holds an object, array or null there.
std::optional<std::string> JsonPointerText(std::string_view json_text, std::string_view pointer);

}  // namespace otpd
