// The `smtp` provider: hands each email to an SMTP server with libcurl (SPEC §2).
//
//   [[provider]]
//   name = "mail"
//   type = "smtp"
//   channels = ["email"]
//   url = "smtp://127.0.0.1:2525"   # smtps:// = implicit TLS
//   starttls = true                  # require STARTTLS on smtp:// (default false)
//   from = "Verify <no-reply@example.com>"
//   username = "..."                 # optional SMTP AUTH
//   password = "..."
//   ca_file = "/path/ca.pem"         # optional CA bundle; verification stays on
//
// Each message is multipart/alternative (text/plain + text/html, both UTF-8 and
// base64). Send opens one connection per message and is thread-safe (the
// provider holds only immutable settings). Neither the password nor the message
// (which carries the code) ever appears in an error.
#pragma once

#include <string>
#include <string_view>

#include "otp/clock.h"
#include "service/channel.h"

namespace otpd {

otp::Result<std::unique_ptr<ChannelProvider>> NewSmtpChannel(const ProviderConfig& config,
                                                             ProviderContext& context);

// --- exposed for tests ----------------------------------------------------------

struct MimeInput {
  std::string from;        // "Name <addr@domain>" or "addr@domain"
  std::string to;          // one address
  std::string subject;     // UTF-8
  std::string text;        // UTF-8 plain text
  std::string code;        // highlighted in the HTML part ("" = none)
  otp::TimePoint date;     // the Date header (written in UTC)
  std::string message_id;  // "<...@...>"
  std::string boundary;    // the multipart boundary
};

// The whole RFC 5322 message, CRLF line endings. InvalidArgument when from, to
// or subject carry CR/LF (header injection) or from has no address.
otp::Result<std::string> BuildMimeMessage(const MimeInput& in);

// The address inside `from`: "Verify <a@b.c>" -> "a@b.c", "a@b.c" -> "a@b.c";
// "" when there is none.
std::string MailboxAddress(std::string_view from);

// "=?UTF-8?B?...?=" encoded words (folded) when `text` is not plain ASCII;
// `text` itself otherwise.
std::string EncodeHeaderWord(std::string_view text);

// RFC 5322 date in UTC, e.g. "Thu, 26 Nov 2026 14:20:52 +0000".
std::string FormatRfc5322(otp::TimePoint t);

// The HTML body: `text` escaped, paragraphs at blank lines, `code` in <strong>.
std::string TextToHtml(std::string_view text, std::string_view code);

}  // namespace otpd
