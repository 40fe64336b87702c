#include "otp/sealing.h"

#include <gtest/gtest.h>

#include "core/test_util.h"
#include "otp/crypto.h"

namespace otp {
namespace {

using testing::Bytes;

AesKey KeyOf(std::uint8_t fill) {
  AesKey key;
  key.fill(fill);
  return key;
}

class KeyringTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(keyring_.Add("k1", KeyOf(1)).ok()); }

  Keyring keyring_;
  const std::vector<std::uint8_t> secret_ = Bytes("12345678901234567890");
};

TEST_F(KeyringTest, SealOpenRoundTrip) {
  Result<std::string> sealed = keyring_.Seal(secret_, "fac_1", SystemRandom());
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  EXPECT_EQ(sealed->rfind("v1.k1.", 0), 0u) << *sealed;
  // 12-byte nonce + 20-byte secret + 16-byte tag = 48 bytes = 64 base64url chars.
  EXPECT_EQ(sealed->size(), 6u + 64u);
  Result<std::vector<std::uint8_t>> opened = keyring_.Open(*sealed, "fac_1");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(*opened, secret_);
}

TEST_F(KeyringTest, EmptyPlaintextAndEmptyAssociatedData) {
  Result<std::string> sealed = keyring_.Seal({}, "", SystemRandom());
  ASSERT_TRUE(sealed.ok());
  Result<std::vector<std::uint8_t>> opened = keyring_.Open(*sealed, "");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_TRUE(opened->empty());
}

TEST_F(KeyringTest, FreshNonceEachTime) {
  Result<std::string> a = keyring_.Seal(secret_, "fac_1", SystemRandom());
  Result<std::string> b = keyring_.Seal(secret_, "fac_1", SystemRandom());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
}

TEST_F(KeyringTest, WrongAssociatedDataRefused) {
  Result<std::string> sealed = keyring_.Seal(secret_, "fac_1", SystemRandom());
  ASSERT_TRUE(sealed.ok());
  for (const char* ad : {"fac_2", "", "fac_1 ", "fac_"}) {
    Result<std::vector<std::uint8_t>> opened = keyring_.Open(*sealed, ad);
    ASSERT_FALSE(opened.ok()) << ad;
    EXPECT_EQ(opened.status().code(), StatusCode::kPermissionDenied) << ad;
  }
}

TEST_F(KeyringTest, TamperedBlobRefused) {
  Result<std::string> sealed = keyring_.Seal(secret_, "fac_1", SystemRandom());
  ASSERT_TRUE(sealed.ok());
  // Flip one bit of every byte of the payload in turn (nonce, ciphertext, tag).
  const std::string prefix = "v1.k1.";
  std::vector<std::uint8_t> blob = *Base64Decode(sealed->substr(prefix.size()));
  for (std::size_t i = 0; i < blob.size(); ++i) {
    std::vector<std::uint8_t> tampered = blob;
    tampered[i] ^= 0x01;
    Result<std::vector<std::uint8_t>> opened =
        keyring_.Open(prefix + Base64Encode(tampered), "fac_1");
    ASSERT_FALSE(opened.ok()) << i;
    EXPECT_EQ(opened.status().code(), StatusCode::kPermissionDenied) << i;
  }
  // Truncated by one byte.
  blob.pop_back();
  Result<std::vector<std::uint8_t>> opened = keyring_.Open(prefix + Base64Encode(blob), "fac_1");
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), StatusCode::kPermissionDenied);
}

TEST_F(KeyringTest, MalformedBlobRefused) {
  for (const char* text :
       {"", "v1.", "v1.k1", "v1.k1.", "v2.k1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "v1.k1.!!!!",
        "v1.k1.AAAA", "v1.k 1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1..AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}) {
    Result<std::vector<std::uint8_t>> opened = keyring_.Open(text, "");
    ASSERT_FALSE(opened.ok()) << text;
    EXPECT_EQ(opened.status().code(), StatusCode::kInvalidArgument) << text;
  }
}

TEST_F(KeyringTest, UnknownKeyIdNotFound) {
  Keyring other;
  ASSERT_TRUE(other.Add("k9", KeyOf(9)).ok());
  Result<std::string> sealed = other.Seal(secret_, "fac_1", SystemRandom());
  ASSERT_TRUE(sealed.ok());
  Result<std::vector<std::uint8_t>> opened = keyring_.Open(*sealed, "fac_1");
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), StatusCode::kNotFound);
}

TEST_F(KeyringTest, Rotation) {
  Result<std::string> old_blob = keyring_.Seal(secret_, "fac_1", SystemRandom());
  ASSERT_TRUE(old_blob.ok());
  ASSERT_TRUE(keyring_.Add("k2", KeyOf(2)).ok());
  EXPECT_EQ(keyring_.primary_id(), "k1");  // adding does not switch
  ASSERT_TRUE(keyring_.SetPrimary("k2").ok());
  EXPECT_EQ(keyring_.primary_id(), "k2");

  Result<std::string> new_blob = keyring_.Seal(secret_, "fac_1", SystemRandom());
  ASSERT_TRUE(new_blob.ok());
  EXPECT_EQ(Keyring::KeyIdOf(*old_blob), "k1");
  EXPECT_EQ(Keyring::KeyIdOf(*new_blob), "k2");
  for (const std::string* blob : {&*old_blob, &*new_blob}) {
    Result<std::vector<std::uint8_t>> opened = keyring_.Open(*blob, "fac_1");
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    EXPECT_EQ(*opened, secret_);
  }
  // Re-wrapping: open with the old key, seal with the primary.
  Result<std::string> rewrapped =
      keyring_.Seal(*keyring_.Open(*old_blob, "fac_1"), "fac_1", SystemRandom());
  ASSERT_TRUE(rewrapped.ok());
  EXPECT_EQ(Keyring::KeyIdOf(*rewrapped), "k2");

  // Editing the key id of a blob to another known key is refused.
  std::string swapped = *old_blob;
  swapped.replace(3, 2, "k2");
  Result<std::vector<std::uint8_t>> opened = keyring_.Open(swapped, "fac_1");
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), StatusCode::kPermissionDenied);
}

TEST(KeyringSetupTest, KeyIdsAndErrors) {
  Keyring keyring;
  Result<std::string> none = keyring.Seal(Bytes("x"), "", SystemRandom());
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kFailedPrecondition);

  EXPECT_EQ(keyring.Add("", KeyOf(1)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(keyring.Add("has.dot", KeyOf(1)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(keyring.Add("has space", KeyOf(1)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(keyring.Add(std::string(33, 'a'), KeyOf(1)).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(keyring.Add(std::string(32, 'a'), KeyOf(1)).ok());
  EXPECT_TRUE(keyring.Add("Key_2-b", KeyOf(2)).ok());
  EXPECT_EQ(keyring.Add("Key_2-b", KeyOf(3)).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(keyring.primary_id(), std::string(32, 'a'));
  EXPECT_EQ(keyring.SetPrimary("nope").code(), StatusCode::kNotFound);
  EXPECT_EQ(keyring.primary_id(), std::string(32, 'a'));

  EXPECT_EQ(Keyring::KeyIdOf("v1.abc.payload"), "abc");
  EXPECT_EQ(Keyring::KeyIdOf("v1.abc"), "");
  EXPECT_EQ(Keyring::KeyIdOf("v2.abc.payload"), "");
  EXPECT_EQ(Keyring::KeyIdOf("garbage"), "");
}

}  // namespace
}  // namespace otp
