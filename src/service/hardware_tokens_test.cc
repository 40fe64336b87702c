#include "service/hardware_tokens.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "otp/clock.h"
#include "service/secrets.h"
#include "store/memory/memory_store.h"

namespace otpd {
namespace {

using ::testing::HasSubstr;

ImportedToken Token(std::string serial, std::uint8_t fill, std::string type = "hotp") {
  ImportedToken t;
  t.serial = std::move(serial);
  t.secret.assign(20, fill);
  t.type = std::move(type);
  t.algorithm = "SHA256";
  t.digits = 8;
  t.period = 60;
  t.counter = 9;
  return t;
}

class HardwareTokensTest : public ::testing::Test {
 protected:
  std::unique_ptr<Store> store_ = NewMemoryStore();
  Secrets secrets_{MasterKey{7, 7, 7}};
  otp::Random& random_ = otp::SystemRandom();
  otp::FakeClock clock_{1'700'000'000};
};

TEST_F(HardwareTokensTest, SealsEachSecretBoundToItsSerial) {
  auto n = SealAndImportHardwareTokens(*store_, secrets_.keyring, random_, clock_.Now(),
                                       {Token("HW-1", 0xA1), Token("HW-2", 0xB2, "totp")});
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 2u);
  auto list = store_->ListHardwareTokens(false);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  std::sort(list->begin(), list->end(),
            [](const HardwareToken& a, const HardwareToken& b) { return a.serial < b.serial; });
  const HardwareToken& one = (*list)[0];
  EXPECT_EQ(one.serial, "HW-1");
  EXPECT_EQ(one.type, "hotp");
  EXPECT_EQ(one.algorithm, "SHA256");
  EXPECT_EQ(one.digits, 8);
  EXPECT_EQ(one.period, 60);
  EXPECT_EQ(one.counter, 9);
  EXPECT_EQ(one.imported_at, clock_.Now());
  EXPECT_TRUE(one.user_id.empty());
  EXPECT_FALSE(one.revoked_at.has_value());
  // The blob opens only with its own serial as associated data.
  auto opened = secrets_.keyring.Open(one.secret_sealed, HardwareTokenSealingContext("HW-1"));
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(*opened, std::vector<std::uint8_t>(20, 0xA1));
  EXPECT_FALSE(secrets_.keyring.Open(one.secret_sealed, HardwareTokenSealingContext("HW-2")).ok());
  EXPECT_EQ(one.secret_sealed.find(std::string(20, '\xA1')), std::string::npos);
  EXPECT_EQ((*list)[1].type, "totp");
}

TEST_F(HardwareTokensTest, AKnownSerialRefusesTheWholeBatch) {
  ASSERT_TRUE(SealAndImportHardwareTokens(*store_, secrets_.keyring, random_, clock_.Now(),
                                          {Token("HW-1", 1)})
                  .ok());
  auto again = SealAndImportHardwareTokens(*store_, secrets_.keyring, random_, clock_.Now(),
                                           {Token("HW-3", 3), Token("HW-1", 1)});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), otp::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr("HW-1"));
  EXPECT_EQ(store_->ListHardwareTokens(false)->size(), 1u);  // HW-3 was not imported
}

}  // namespace
}  // namespace otpd
