#include "service/config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace otpd {
namespace {

std::string WriteTemp(const std::string& text) {
  static int n = 0;
  auto path =
      std::filesystem::temp_directory_path() /
      ("otpd_config_test_" + std::to_string(::getpid()) + "_" + std::to_string(++n) + ".toml");
  std::ofstream(path) << text;
  return path.string();
}

TEST(ConfigTest, DefaultsWithNoFile) {
  auto c = LoadConfig("");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->listen, "127.0.0.1:8080");
  EXPECT_EQ(c->store_url, "sqlite://otpd-data/otpd.db");
  EXPECT_EQ(c->master_key_file, "otpd-data/master.key");
  EXPECT_EQ(c->max_body_bytes, 65536u);
  EXPECT_EQ(c->max_connections, 10000u);
  EXPECT_EQ(c->header_timeout_s, 10);
  EXPECT_EQ(c->body_timeout_s, 10);
  EXPECT_EQ(c->idle_timeout_s, 60);
  EXPECT_FALSE(c->Tls());
  ASSERT_EQ(c->providers.size(), 1u);
  EXPECT_EQ(c->providers[0].type, "log");
  EXPECT_EQ(c->providers[0].channels.size(), 7u);
  EXPECT_TRUE(c->ListenIsLoopback());
}

TEST(ConfigTest, FileAndEnvironment) {
  const std::string path = WriteTemp(R"(
[server]
listen = "0.0.0.0:9090"
max_body_bytes = 4096
[store]
url = "sqlite:///tmp/x.db"
[[provider]]
name = "a"
type = "log"
channels = ["sms"]
path = "/tmp/a.jsonl"
window = 10
starttls = true
[[provider]]
name = "b"
type = "log"
channels = ["email"]
)");
  auto c = LoadConfig(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ListenHost(), "0.0.0.0");
  EXPECT_EQ(c->ListenPort(), 9090);
  EXPECT_FALSE(c->ListenIsLoopback());
  EXPECT_EQ(c->max_body_bytes, 4096u);
  ASSERT_EQ(c->providers.size(), 2u);
  EXPECT_EQ(c->providers[0].options.at("path"), "/tmp/a.jsonl");
  EXPECT_EQ(c->providers[0].options.at("window"), "10");
  EXPECT_EQ(c->providers[0].options.at("starttls"), "true");
  ::setenv("OTPD_LISTEN", "[::1]:7070", 1);
  ::setenv("OTPD_STORE_URL", "sqlite://y.db", 1);
  c = LoadConfig(path);
  ::unsetenv("OTPD_LISTEN");
  ::unsetenv("OTPD_STORE_URL");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->ListenHost(), "::1");
  EXPECT_EQ(c->ListenPort(), 7070);
  EXPECT_TRUE(c->ListenIsLoopback());
  EXPECT_EQ(c->store_url, "sqlite://y.db");
}

TEST(ConfigTest, BadFilesNameTheProblem) {
  auto c = LoadConfig(WriteTemp("[server\nlisten="));
  EXPECT_FALSE(c.ok());
  c = LoadConfig(WriteTemp("[[provider]]\nname=\"a\"\ntype=\"log\"\nchannels=[\"fax\"]\n"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("fax"), std::string::npos);
  c = LoadConfig(WriteTemp("[server]\nlisten=\"nohost\"\n"));
  EXPECT_FALSE(c.ok());
  c = LoadConfig(WriteTemp("[server]\nlisen=\"127.0.0.1:1\"\n"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("lisen"), std::string::npos);
  EXPECT_FALSE(LoadConfig(WriteTemp("[sever]\n")).ok());
  EXPECT_FALSE(LoadConfig(WriteTemp("[server]\nthreads=-1\n")).ok());
  // 2^32 + 1 would be 1 once narrowed to an int: refused before that.
  EXPECT_FALSE(LoadConfig(WriteTemp("[server]\nthreads=4294967297\n")).ok());
  c =
      LoadConfig(WriteTemp("[[provider]]\nname=\"a\"\ntype=\"log\"\nchannels=[\"sms\"]\n"
                           "[[provider]]\nname=\"a\"\ntype=\"log\"\nchannels=[\"sms\"]\n"));
  EXPECT_FALSE(c.ok());
}

TEST(ConfigTest, ConnectionLimitsAndTimeouts) {
  auto c = LoadConfig(
      WriteTemp("[server]\nmax_connections = 50\nheader_timeout_s = 2\nbody_timeout_s = 3\n"
                "idle_timeout_s = 4\n"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->max_connections, 50u);
  EXPECT_EQ(c->header_timeout_s, 2);
  EXPECT_EQ(c->body_timeout_s, 3);
  EXPECT_EQ(c->idle_timeout_s, 4);
  for (const char* bad : {"max_connections = 0", "header_timeout_s = 0", "body_timeout_s = 3601",
                          "idle_timeout_s = -1"}) {
    c = LoadConfig(WriteTemp(std::string("[server]\n") + bad + "\n"));
    ASSERT_FALSE(c.ok()) << bad;
    const std::string key(bad, std::string_view(bad).find(' '));
    EXPECT_NE(c.status().message().find(key), std::string::npos) << c.status().message();
  }
}

TEST(ConfigTest, TlsNeedsBothCertificateAndKey) {
  auto c = LoadConfig(WriteTemp("[server]\ntls_cert = \"/etc/otpd/cert.pem\"\n"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("tls_cert is set without server.tls_key"), std::string::npos)
      << c.status().message();
  c = LoadConfig(WriteTemp("[server]\ntls_key = \"/etc/otpd/key.pem\"\n"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("tls_key is set without server.tls_cert"), std::string::npos)
      << c.status().message();
  c = LoadConfig(
      WriteTemp("[server]\ntls_cert = \"/etc/otpd/cert.pem\"\ntls_key = \"/etc/otpd/key.pem\"\n"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->Tls());
}

TEST(ConfigTest, WebhooksTable) {
  auto c = LoadConfig("");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->webhooks.allow_private_targets);
  EXPECT_EQ(c->webhooks.timeout_s, 10);
  EXPECT_EQ(c->webhooks.first_retry_s, 30);
  EXPECT_EQ(c->webhooks.max_attempts, 10);
  c = LoadConfig(
      WriteTemp("[webhooks]\nallow_private_targets = true\ntimeout_s = 5\nfirst_retry_s = 1\n"
                "max_attempts = 12\nworkers = 2\n"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->webhooks.allow_private_targets);
  EXPECT_EQ(c->webhooks.timeout_s, 5);
  EXPECT_EQ(c->webhooks.first_retry_s, 1);
  EXPECT_EQ(c->webhooks.max_attempts, 12);
  EXPECT_EQ(c->webhooks.workers, 2);
  c = LoadConfig(WriteTemp("[webhooks]\nallow_private_target = true\n"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("allow_private_target"), std::string::npos);
  EXPECT_FALSE(LoadConfig(WriteTemp("[webhooks]\nallow_private_targets = \"yes\"\n")).ok());
  EXPECT_FALSE(LoadConfig(WriteTemp("[webhooks]\nmax_attempts = 3\n")).ok());  // < 8 tries
  EXPECT_FALSE(LoadConfig(WriteTemp("[webhooks]\ntimeout_s = 0\n")).ok());
}

}  // namespace
}  // namespace otpd
