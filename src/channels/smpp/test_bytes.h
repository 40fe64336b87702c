// Test helper: a byte string from a list of octet values.
#pragma once

#include <initializer_list>
#include <string>

namespace otpd::smpp {

inline std::string Bytes(std::initializer_list<int> octets) {
  std::string s;
  for (int v : octets) s.push_back(static_cast<char>(v));
  return s;
}

}  // namespace otpd::smpp
