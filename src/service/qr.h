// QR codes for enrollment (SPEC §4.2): the `otpauth://` URI an authenticator app
// scans, as an SVG document (the create answer's `qr_svg`) or a PNG image.
//
// The symbol is encoded by libqrencode in byte mode (the text's bytes as they
// are, UTF-8 for URIs), error correction level M, smallest version that fits,
// with the 4-module quiet zone ISO/IEC 18004 asks for. Pure functions,
// thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "otp/status.h"

namespace otpd {

// QR code of `text` (byte mode, error correction level M, 4-module quiet zone), as a standalone
// SVG document (one <path>, crisp edges, viewBox in modules). InvalidArgument if it does not fit.
otp::Result<std::string> QrSvg(std::string_view text);
// The same code as PNG bytes (8-bit grayscale or 1-bit), `scale` pixels per module.
// InvalidArgument if the text does not fit or `scale` is outside 1..kMaxQrPngScale.
otp::Result<std::string> QrPng(std::string_view text, int scale = 8);

inline constexpr int kMaxQrPngScale = 32;

}  // namespace otpd
