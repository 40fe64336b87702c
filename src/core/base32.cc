#include "otp/base32.h"

namespace otp {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

int Base32Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a';
  if (c >= '2' && c <= '7') return c - '2' + 26;
  return -1;
}

}  // namespace

std::string Base32Encode(std::span<const std::uint8_t> data, bool pad) {
  std::string out;
  out.reserve((data.size() + 4) / 5 * 8);
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::uint8_t b : data) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += kAlphabet[(acc >> bits) & 31];
    }
    acc &= (1u << bits) - 1;
  }
  if (bits > 0) out += kAlphabet[(acc << (5 - bits)) & 31];
  if (pad) {
    while (out.size() % 8 != 0) out += '=';
  }
  return out;
}

Result<std::vector<std::uint8_t>> Base32Decode(std::string_view text) {
  std::vector<std::uint8_t> out;
  out.reserve(text.size() * 5 / 8);
  std::uint32_t acc = 0;
  int bits = 0;
  std::size_t symbols = 0;  // data characters, spaces excluded
  std::size_t padding = 0;
  for (char c : text) {
    if (c == ' ') continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    if (padding > 0) return InvalidArgument("base32: data after '=' padding");
    const int v = Base32Value(c);
    if (v < 0) return InvalidArgument("base32: invalid character");
    ++symbols;
    acc = (acc << 5) | static_cast<std::uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>(acc >> bits));
      acc &= (1u << bits) - 1;
    }
  }
  // A final group of 8 symbols carries 5 bytes; 1, 3 or 6 leftover symbols cannot
  // encode whole bytes.
  switch (symbols % 8) {
    case 1:
    case 3:
    case 6:
      return InvalidArgument("base32: truncated input");
    default:
      break;
  }
  if (padding > 0 && (padding >= 8 || (symbols + padding) % 8 != 0)) {
    return InvalidArgument("base32: wrong amount of '=' padding");
  }
  if (acc != 0) return InvalidArgument("base32: non-zero trailing bits");
  return out;
}

}  // namespace otp
