// QR codes decoded by independent readers: zbarimg (ZBar) reads the PNG, and the
// SVG rendered by rsvg-convert (librsvg). Both tools must be installed (Debian
// zbar-tools, librsvg2-bin): without them these tests fail.
#include "service/qr.h"

#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

namespace otpd {
namespace {

namespace fs = std::filesystem;

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
};

CommandResult RunCommand(const std::string& command) {
  CommandResult r;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return r;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) r.out.append(buf, n);
  const int status = pclose(pipe);
  if (status != -1 && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  return r;
}

class QrTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("otpd-qr-test-" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string WriteFile(const std::string& name, const std::string& bytes) {
    const fs::path path = dir_ / name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path.string();
  }

  // What zbarimg reads from the image at `path` (one symbol, its trailing newline removed).
  static std::string Zbar(const std::string& path) {
    const CommandResult r = RunCommand("zbarimg --raw -q --nodbus '" + path + "'");
    EXPECT_EQ(r.exit_code, 0) << "zbarimg found no QR code in " << path;
    std::string text = r.out;
    if (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
  }

  // Renders the SVG to PNG with rsvg-convert, `px` pixels per module.
  std::string RenderSvg(const std::string& svg, int modules, int px) {
    const std::string in = WriteFile("code.svg", svg);
    const std::string out = (dir_ / "code-svg.png").string();
    const CommandResult r = RunCommand("rsvg-convert --width " + std::to_string(modules * px) +
                                       " --background-color white -o '" + out + "' '" + in + "'");
    EXPECT_EQ(r.exit_code, 0) << "rsvg-convert failed on:\n" << svg;
    return out;
  }

  fs::path dir_;
};

// Side of the symbol including the quiet zone, read from the SVG's viewBox.
int ModulesOf(const std::string& svg) {
  std::smatch m;
  if (!std::regex_search(svg, m, std::regex(R"re(viewBox="0 0 (\d+) (\d+)")re"))) return 0;
  EXPECT_EQ(m[1], m[2]) << "not square";
  return std::stoi(m[1]);
}

int Count(const std::string& haystack, const std::string& needle) {
  int n = 0;
  for (auto pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

TEST_F(QrTest, ToolsInstalled) {
  EXPECT_EQ(RunCommand("zbarimg --version >/dev/null 2>&1").exit_code, 0)
      << "zbarimg (Debian zbar-tools) is required";
  EXPECT_EQ(RunCommand("rsvg-convert --version >/dev/null 2>&1").exit_code, 0)
      << "rsvg-convert (Debian librsvg2-bin) is required";
}

TEST_F(QrTest, PngAndSvgDecodeToTheExactText) {
  const std::string long_text = [] {
    std::string s = "otpauth://hotp/Example:bob?secret=";
    while (s.size() < 1200) s += "JBSWY3DPEHPK3PXP";
    return s + "&issuer=Example&counter=0";
  }();
  const std::vector<std::string> texts = {
      "otpauth://totp/Issuer:alice%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DP"
      "EHPK3PXPJBSWY3DP&issuer=Issuer&algorithm=SHA256&digits=8&period=60",
      "otpauth://totp/ACME:bob?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=ACME",
      "A",
      "Ελληνικά: δοκιμή, Grüße, 日本語, emoji 🔐",
      "otpauth://totp/Καφέ%20Ωμέγα:μαρία?secret=JBSWY3DPEHPK3PXP&issuer=Καφέ Ωμέγα",
      long_text,
  };
  for (const std::string& text : texts) {
    SCOPED_TRACE(text.substr(0, 80));
    auto png = QrPng(text);
    ASSERT_TRUE(png.ok()) << png.status().ToString();
    EXPECT_EQ(Zbar(WriteFile("code.png", *png)), text) << "PNG";

    auto svg = QrSvg(text);
    ASSERT_TRUE(svg.ok()) << svg.status().ToString();
    const int modules = ModulesOf(*svg);
    ASSERT_GT(modules, 0);
    EXPECT_EQ(Zbar(RenderSvg(*svg, modules, 4)), text) << "SVG";
  }
}

TEST_F(QrTest, SmallScalesStillDecode) {
  const std::string text = "otpauth://totp/ACME:bob?secret=JBSWY3DPEHPK3PXP&issuer=ACME";
  for (int scale : {2, 3, 5}) {
    auto png = QrPng(text, scale);
    ASSERT_TRUE(png.ok());
    EXPECT_EQ(Zbar(WriteFile("code.png", *png)), text) << "scale " << scale;
  }
}

TEST_F(QrTest, SvgShape) {
  auto svg = QrSvg("A");
  ASSERT_TRUE(svg.ok());
  // Version 1 is 21 modules; with 4 of quiet zone on each side, 29.
  EXPECT_EQ(ModulesOf(*svg), 29);
  EXPECT_EQ(Count(*svg, "<path"), 1);
  EXPECT_EQ(Count(*svg, "<svg"), 1);
  EXPECT_NE(svg->find(R"(xmlns="http://www.w3.org/2000/svg")"), std::string::npos);
  EXPECT_NE(svg->find(R"(shape-rendering="crispEdges")"), std::string::npos);
  // Finder pattern: the top-left 7-module dark run starts right after the quiet zone.
  EXPECT_NE(svg->find("M4 4h7v1h-7z"), std::string::npos);
  // The text is not in the document (it is only in the modules).
  EXPECT_EQ(QrSvg("otpauth://secret-XYZ")->find("secret-XYZ"), std::string::npos);
}

TEST_F(QrTest, PngShape) {
  auto png = QrPng("A", 3);
  ASSERT_TRUE(png.ok());
  ASSERT_GT(png->size(), 24u);
  EXPECT_EQ(png->substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png->substr(12, 4), "IHDR");
  auto be32 = [&](std::size_t at) {
    const auto* b = reinterpret_cast<const unsigned char*>(png->data() + at);
    return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3];
  };
  EXPECT_EQ(be32(16), 29 * 3);  // width
  EXPECT_EQ(be32(20), 29 * 3);  // height
}

TEST_F(QrTest, RefusesWhatDoesNotFit) {
  // Version 40 at level M holds 2331 bytes in byte mode.
  const std::string fits(2331, 'x');
  const std::string too_long(2332, 'x');
  EXPECT_TRUE(QrSvg(fits).ok());
  EXPECT_EQ(QrSvg(too_long).status().code(), otp::StatusCode::kInvalidArgument);
  EXPECT_EQ(QrPng(too_long).status().code(), otp::StatusCode::kInvalidArgument);
  EXPECT_EQ(QrSvg("").status().code(), otp::StatusCode::kInvalidArgument);
  EXPECT_EQ(QrPng("A", 0).status().code(), otp::StatusCode::kInvalidArgument);
  EXPECT_EQ(QrPng("A", kMaxQrPngScale + 1).status().code(), otp::StatusCode::kInvalidArgument);
}

TEST_F(QrTest, BinaryBytesAreEncodedAsGiven) {
  // Byte mode carries any bytes, NUL included; zbar is not asked to read these
  // (it guesses a character set), so compare two encodings instead.
  const std::string with_nul("a\0b", 3);
  auto a = QrSvg(with_nul);
  auto b = QrSvg("a");
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_NE(*a, *b);
}

}  // namespace
}  // namespace otpd
