#include "service/qr.h"

#include <png.h>
#include <qrencode.h>

#include <cerrno>
#include <csetjmp>
#include <cstdint>
#include <memory>
#include <vector>

namespace otpd {
namespace {

constexpr int kQuietZone = 4;  // modules of light border on every side

// The symbol's modules, row by row, without the quiet zone.
struct QrMatrix {
  int width = 0;
  std::vector<bool> dark;
  bool IsDark(int x, int y) const { return dark[static_cast<std::size_t>(y * width + x)]; }
};

struct QrcodeFree {
  void operator()(QRcode* code) const { QRcode_free(code); }
};

otp::Result<QrMatrix> Encode(std::string_view text) {
  if (text.empty()) return otp::InvalidArgument("QR code text is empty");
  errno = 0;
  // Version 0: the smallest that holds the data. Byte mode: the bytes as given.
  std::unique_ptr<QRcode, QrcodeFree> code(
      QRcode_encodeData(static_cast<int>(text.size()),
                        reinterpret_cast<const unsigned char*>(text.data()), 0, QR_ECLEVEL_M));
  if (!code) {
    if (errno == ERANGE || errno == EINVAL) {
      return otp::InvalidArgument("text of " + std::to_string(text.size()) +
                                  " bytes does not fit in a QR code at error correction level M");
    }
    return otp::Internal("QR encoding failed");
  }
  QrMatrix m;
  m.width = code->width;
  m.dark.resize(static_cast<std::size_t>(m.width) * static_cast<std::size_t>(m.width));
  for (std::size_t i = 0; i < m.dark.size(); ++i) m.dark[i] = (code->data[i] & 1) != 0;
  return m;
}

// libpng reports errors by longjmp: this frame holds only trivially destructible
// locals, and the caller owns every C++ object it touches.
struct PngSink {
  std::string* out;
};

void PngWrite(png_structp png, png_bytep data, png_size_t length) {
  auto* sink = static_cast<PngSink*>(png_get_io_ptr(png));
  sink->out->append(reinterpret_cast<const char*>(data), length);
}

void PngFlush(png_structp /*png*/) {}

// Writes 1-bit grayscale rows (each `row_bytes` long, 0 = black) of a square
// image `size` pixels wide. False if libpng failed.
bool WritePng(const std::vector<std::uint8_t>& pixels, std::size_t row_bytes, std::uint32_t size,
              std::string* out) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  if (png == nullptr) return false;
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    return false;
  }
  PngSink sink{out};
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_set_write_fn(png, &sink, PngWrite, PngFlush);
  png_set_IHDR(png, info, size, size, 1, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (std::uint32_t y = 0; y < size; ++y) {
    png_write_row(png, pixels.data() + static_cast<std::size_t>(y) * row_bytes);
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

}  // namespace

otp::Result<std::string> QrSvg(std::string_view text) {
  auto matrix = Encode(text);
  if (!matrix.ok()) return matrix.error();
  const int w = matrix->width;
  const int size = w + 2 * kQuietZone;
  // One subpath per horizontal run of dark modules: small and exact.
  std::string path;
  for (int y = 0; y < w; ++y) {
    for (int x = 0; x < w;) {
      if (!matrix->IsDark(x, y)) {
        ++x;
        continue;
      }
      int run = 1;
      while (x + run < w && matrix->IsDark(x + run, y)) ++run;
      path += "M" + std::to_string(x + kQuietZone) + " " + std::to_string(y + kQuietZone) + "h" +
              std::to_string(run) + "v1h-" + std::to_string(run) + "z";
      x += run;
    }
  }
  const std::string dim = std::to_string(size);
  std::string svg = R"(<svg xmlns="http://www.w3.org/2000/svg" version="1.1" viewBox="0 0 )";
  svg += dim + " " + dim + R"(" shape-rendering="crispEdges">)";
  svg += R"(<rect width=")" + dim + R"(" height=")" + dim + R"(" fill="#fff"/>)";
  svg += R"(<path fill="#000" d=")" + path + R"("/>)";
  svg += "</svg>\n";
  return svg;
}

otp::Result<std::string> QrPng(std::string_view text, int scale) {
  if (scale < 1 || scale > kMaxQrPngScale) {
    return otp::InvalidArgument("QR PNG scale must be 1.." + std::to_string(kMaxQrPngScale));
  }
  auto matrix = Encode(text);
  if (!matrix.ok()) return matrix.error();
  const int modules = matrix->width + 2 * kQuietZone;
  const std::uint32_t size = static_cast<std::uint32_t>(modules * scale);
  const std::size_t row_bytes = (size + 7) / 8;
  // 1-bit grayscale, most significant bit first: 1 = white, 0 = black.
  std::vector<std::uint8_t> pixels(row_bytes * size, 0xff);
  for (int y = 0; y < matrix->width; ++y) {
    for (int x = 0; x < matrix->width; ++x) {
      if (!matrix->IsDark(x, y)) continue;
      for (int dy = 0; dy < scale; ++dy) {
        const std::size_t row = static_cast<std::size_t>((y + kQuietZone) * scale + dy);
        for (int dx = 0; dx < scale; ++dx) {
          const std::size_t col = static_cast<std::size_t>((x + kQuietZone) * scale + dx);
          pixels[row * row_bytes + col / 8] &= static_cast<std::uint8_t>(~(0x80u >> (col % 8)));
        }
      }
    }
  }
  std::string png;
  if (!WritePng(pixels, row_bytes, size, &png)) return otp::Internal("PNG encoding failed");
  return png;
}

}  // namespace otpd
