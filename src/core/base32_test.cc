#include "otp/base32.h"

#include <gtest/gtest.h>

#include "core/test_util.h"

namespace otp {
namespace {

using testing::Bytes;

TEST(Base32Test, Rfc4648Vectors) {
  const std::pair<const char*, const char*> kVectors[] = {
      {"", ""},
      {"f", "MY======"},
      {"fo", "MZXQ===="},
      {"foo", "MZXW6==="},
      {"foob", "MZXW6YQ="},
      {"fooba", "MZXW6YTB"},
      {"foobar", "MZXW6YTBOI======"},
  };
  for (const auto& [plain, encoded] : kVectors) {
    const std::vector<std::uint8_t> data = Bytes(plain);
    EXPECT_EQ(Base32Encode(data, /*pad=*/true), encoded);
    std::string unpadded(encoded);
    unpadded.erase(unpadded.find_last_not_of('=') + 1);
    EXPECT_EQ(Base32Encode(data), unpadded);
    Result<std::vector<std::uint8_t>> padded_back = Base32Decode(encoded);
    ASSERT_TRUE(padded_back.ok()) << encoded << ": " << padded_back.status().ToString();
    EXPECT_EQ(*padded_back, data);
    Result<std::vector<std::uint8_t>> unpadded_back = Base32Decode(unpadded);
    ASSERT_TRUE(unpadded_back.ok()) << unpadded;
    EXPECT_EQ(*unpadded_back, data);
  }
}

TEST(Base32Test, RandomRoundTrips) {
  testing::SeededRandom random(32);
  for (std::size_t len = 0; len <= 64; ++len) {
    const std::vector<std::uint8_t> data = RandomBytes(random, len);
    for (bool pad : {false, true}) {
      const std::string text = Base32Encode(data, pad);
      if (pad) {
        EXPECT_EQ(text.size() % 8, 0u);
      }
      Result<std::vector<std::uint8_t>> back = Base32Decode(text);
      ASSERT_TRUE(back.ok()) << text;
      EXPECT_EQ(*back, data) << text;
    }
  }
}

TEST(Base32Test, AcceptsLowercaseSpacesAndPadding) {
  const std::vector<std::uint8_t> foobar = Bytes("foobar");
  for (const char* text : {"mzxw6ytboi", "MzXw6YtBoI", "MZXW 6YTB OI",
                           "mzxw 6ytb oi======", " MZXW6YTBOI ", "MZXW6YTBOI== ===="}) {
    Result<std::vector<std::uint8_t>> back = Base32Decode(text);
    ASSERT_TRUE(back.ok()) << '"' << text << "\": " << back.status().ToString();
    EXPECT_EQ(*back, foobar) << text;
  }
}

TEST(Base32Test, RefusesInvalidInput) {
  for (const char* text : {
           "MZXW6YT1",    // '1' is not in the alphabet
           "MZXW6YT8",    // nor '8'
           "MZXW6YT!",    // punctuation
           "MZXW-6YTB",   // dashes are not ignored
           "MZXW\t6YTB",  // only spaces are ignored
           "MZ=XW",       // data after padding
           "M",           // 1 symbol cannot be a byte
           "MZX",         // 3 symbols neither
           "MZXW6Y",      // 6 symbols neither
           "MZ",          // trailing bits not zero ('f' is "MY")
           "MY=",         // wrong amount of padding
           "MY=======",   // too much padding
           "========",    // padding only
       }) {
    Result<std::vector<std::uint8_t>> back = Base32Decode(text);
    EXPECT_FALSE(back.ok()) << '"' << text << '"';
    if (!back.ok()) {
      EXPECT_EQ(back.status().code(), StatusCode::kInvalidArgument);
    }
  }
}

TEST(Base32Test, EmptyAndSpacesOnly) {
  for (const char* text : {"", "   "}) {
    Result<std::vector<std::uint8_t>> back = Base32Decode(text);
    ASSERT_TRUE(back.ok()) << '"' << text << '"';
    EXPECT_TRUE(back->empty());
  }
}

}  // namespace
}  // namespace otp
