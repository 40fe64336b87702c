#include "core/internal.h"

namespace otp::internal {
namespace {

char LowerAscii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

}  // namespace

int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool EqualsIgnoringAsciiCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (LowerAscii(a[i]) != LowerAscii(b[i])) return false;
  }
  return true;
}

std::string ZeroPaddedDecimal(std::uint64_t value, int digits) {
  std::string out(static_cast<std::size_t>(digits > 0 ? digits : 0), '0');
  for (auto it = out.rbegin(); it != out.rend(); ++it, value /= 10) {
    *it = static_cast<char>('0' + value % 10);
  }
  return out;
}

}  // namespace otp::internal
