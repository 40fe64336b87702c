#include "otp/crypto.h"

#include <gtest/gtest.h>

#include "core/internal.h"
#include "core/test_util.h"

namespace otp {
namespace {

using testing::Bytes;

std::vector<std::uint8_t> Hex(std::string_view hex) { return HexDecode(hex).value(); }

TEST(CryptoTest, Sha256) {
  EXPECT_EQ(HexEncode(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HexEncode(Sha256("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(CryptoTest, HmacSha256Rfc4231) {
  // Test case 1.
  EXPECT_EQ(HexEncode(HmacSha256(std::vector<std::uint8_t>(20, 0x0b), "Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  // Test case 2.
  EXPECT_EQ(HexEncode(HmacSha256(Bytes("Jefe"), "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // An empty key is a valid HMAC key.
  EXPECT_EQ(HexEncode(HmacSha256({}, "")),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(CryptoTest, HkdfRfc5869) {
  // Test case 1.
  std::vector<std::uint8_t> okm(42);
  internal::HkdfSha256(std::vector<std::uint8_t>(22, 0x0b), Hex("000102030405060708090a0b0c"),
                       "\xf0\xf1\xf2\xf3\xf4\xf5\xf6\xf7\xf8\xf9", okm);
  EXPECT_EQ(HexEncode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
  // Test case 3 (no salt, no info) is DeriveKey with an empty label.
  EXPECT_EQ(HexEncode(DeriveKey(std::vector<std::uint8_t>(22, 0x0b), "")),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d");
}

TEST(CryptoTest, DeriveKeySeparatesLabels) {
  const std::vector<std::uint8_t> master(32, 7);
  EXPECT_NE(DeriveKey(master, "code-hash"), DeriveKey(master, "sealing"));
  EXPECT_EQ(DeriveKey(master, "sealing"), DeriveKey(master, "sealing"));
  EXPECT_NE(DeriveKey(master, "sealing"), DeriveKey(std::vector<std::uint8_t>(32, 8), "sealing"));
}

TEST(CryptoTest, ConstantTimeEqual) {
  EXPECT_TRUE(ConstantTimeEqual("", ""));
  EXPECT_TRUE(ConstantTimeEqual("123456", "123456"));
  EXPECT_FALSE(ConstantTimeEqual("123456", "123457"));
  EXPECT_FALSE(ConstantTimeEqual("123456", "023456"));
  EXPECT_FALSE(ConstantTimeEqual("123456", "1234567"));
  EXPECT_FALSE(ConstantTimeEqual("123456", "12345"));
  EXPECT_FALSE(ConstantTimeEqual("", "0"));
  EXPECT_TRUE(ConstantTimeEqual(std::string_view("a\0b", 3), std::string_view("a\0b", 3)));
  EXPECT_FALSE(ConstantTimeEqual(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
}

TEST(CryptoTest, Hex) {
  EXPECT_EQ(HexEncode(std::vector<std::uint8_t>{0x00, 0x7f, 0xab, 0xff}), "007fabff");
  EXPECT_EQ(HexEncode({}), "");
  EXPECT_EQ(HexDecode("007FabFF"), (std::vector<std::uint8_t>{0x00, 0x7f, 0xab, 0xff}));
  EXPECT_EQ(HexDecode(""), std::vector<std::uint8_t>{});
  EXPECT_EQ(HexDecode("abc"), std::nullopt);
  EXPECT_EQ(HexDecode("zz"), std::nullopt);
  EXPECT_EQ(HexDecode("0x12"), std::nullopt);
}

TEST(CryptoTest, Base64Rfc4648) {
  const std::pair<const char*, const char*> kVectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : kVectors) {
    EXPECT_EQ(Base64Encode(Bytes(plain)), encoded);
    EXPECT_EQ(Base64Decode(encoded), Bytes(plain)) << encoded;
    std::string unpadded(encoded);
    unpadded.erase(unpadded.find_last_not_of('=') + 1);
    EXPECT_EQ(Base64Decode(unpadded), Bytes(plain)) << unpadded;
    EXPECT_EQ(internal::Base64UrlEncode(Bytes(plain)), unpadded);
  }
}

TEST(CryptoTest, Base64BothAlphabets) {
  const std::vector<std::uint8_t> data = {0xfb, 0xff, 0xbf};
  EXPECT_EQ(Base64Encode(data), "+/+/");
  EXPECT_EQ(internal::Base64UrlEncode(data), "-_-_");
  EXPECT_EQ(Base64Decode("+/+/"), data);
  EXPECT_EQ(Base64Decode("-_-_"), data);
  EXPECT_EQ(Base64Decode("+_-/"), std::nullopt);  // mixed alphabets
  testing::SeededRandom random(64);
  for (std::size_t len = 0; len < 70; ++len) {
    const std::vector<std::uint8_t> bytes = RandomBytes(random, len);
    EXPECT_EQ(Base64Decode(Base64Encode(bytes)), bytes);
    EXPECT_EQ(Base64Decode(internal::Base64UrlEncode(bytes)), bytes);
  }
}

TEST(CryptoTest, Base64RefusesBadInput) {
  for (const char* text :
       {"Z", "Zg=", "Zg===", "Z===", "Zh==", "Zm9v!", "Zm 9v", "Zg==Zg==", "=Zg=", "Zm9vY"}) {
    EXPECT_EQ(Base64Decode(text), std::nullopt) << text;
  }
}

TEST(CodeHasherTest, HashesAndMatches) {
  const CodeHasher hasher(DeriveKey(std::vector<std::uint8_t>(32, 1), "code-hash"));
  const std::string hash = hasher.Hash("ver_123", "123456");
  EXPECT_EQ(hash.size(), 64u);
  EXPECT_EQ(hash.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(hasher.Hash("ver_123", "123456"), hash);
  EXPECT_NE(hasher.Hash("ver_124", "123456"), hash);  // the binding changes the hash
  EXPECT_NE(hasher.Hash("ver_123", "123457"), hash);
  // The 0x00 separator keeps (binding, code) pairs apart.
  EXPECT_NE(hasher.Hash("ver_1231", "23456"), hash);
  EXPECT_TRUE(hasher.Matches("ver_123", "123456", hash));
  EXPECT_FALSE(hasher.Matches("ver_123", "123457", hash));
  EXPECT_FALSE(hasher.Matches("ver_124", "123456", hash));
  EXPECT_FALSE(hasher.Matches("ver_123", "123456", hash.substr(1)));
  EXPECT_FALSE(hasher.Matches("ver_123", "123456", ""));
  // It is HMAC-SHA256(key, binding || 0x00 || code).
  const std::array<std::uint8_t, 32> key = DeriveKey(std::vector<std::uint8_t>(32, 1), "code-hash");
  EXPECT_EQ(hash, HexEncode(HmacSha256(key, std::string_view("ver_123\0"
                                                             "123456",
                                                             14))));
  // Another key gives another hash.
  const CodeHasher other(DeriveKey(std::vector<std::uint8_t>(32, 2), "code-hash"));
  EXPECT_NE(other.Hash("ver_123", "123456"), hash);
  EXPECT_FALSE(other.Matches("ver_123", "123456", hash));
}

// Bindings of every length, across the 64-byte block and the short-input buffer,
// agree with the one-shot HMAC.
TEST(CodeHasherTest, AgreesWithHmacForEveryLength) {
  const std::array<std::uint8_t, 32> key = DeriveKey(std::vector<std::uint8_t>(32, 3), "code-hash");
  const CodeHasher hasher(key);
  for (std::size_t n = 0; n < 600; n += (n < 140 ? 1 : 37)) {
    const std::string binding(n, static_cast<char>('a' + n % 26));
    std::string message = binding;
    message.push_back('\0');
    message += "987654";
    EXPECT_EQ(hasher.Hash(binding, "987654"), HexEncode(HmacSha256(key, message))) << n;
  }
}

TEST(Sha256Test, MillionAs) {
  // A message over several blocks: the known digest of one million 'a' (FIPS 180-2).
  EXPECT_EQ(HexEncode(Sha256(std::string(1000000, 'a'))),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

}  // namespace
}  // namespace otp
