#include "service/token_import.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pskc/pskc.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "otp/crypto.h"
#include "otp/hotp.h"

namespace otpd {
namespace {

using otp::InvalidArgument;
using otp::Result;
using otp::Status;
using Bytes = std::vector<std::uint8_t>;

constexpr std::size_t kMaxFileBytes = std::size_t{64} << 20;
constexpr std::size_t kMaxSerialLength = 64;
constexpr std::size_t kMaxSeedBytes = 128;
constexpr int kMinDigits = 6;
constexpr int kMaxDigits = 10;
constexpr int kMinPeriod = 15;
constexpr int kMaxPeriod = 120;
constexpr int kMaxPbkdf2Iterations = 10'000'000;
constexpr std::size_t kAes128KeyBytes = 16;
constexpr std::size_t kAesBlockBytes = 16;

constexpr std::string_view kHotpUrn = "urn:ietf:params:xml:ns:keyprov:pskc:hotp";
constexpr std::string_view kTotpUrn = "urn:ietf:params:xml:ns:keyprov:pskc:totp";
// The drafts before RFC 6030 (still written by some vendors' tools).
constexpr std::string_view kTotpDraftUrn = "urn:ietf:params:xml:ns:keyprov:pskc#totp";
constexpr std::string_view kHotpDraftUrn = "urn:ietf:params:xml:ns:keyprov:pskc#hotp";
constexpr std::string_view kAes128CbcUri = "http://www.w3.org/2001/04/xmlenc#aes128-cbc";
constexpr std::string_view kPbkdf2Uri =
    "http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#pbkdf2";

// ---- text ------------------------------------------------------------------

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

std::string WithoutSpaces(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (!IsSpace(c)) out += c;
  }
  return out;
}

std::string AsciiUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

// A non-negative decimal integer written in full, no sign, no spaces.
std::optional<std::uint64_t> ParseUnsigned(std::string_view s) {
  std::uint64_t v = 0;
  if (s.empty() || s.front() == '+' || s.front() == '-') return std::nullopt;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// Serials are printed, compared and stored as they are: 1..64 printable ASCII
// characters without spaces or commas (commas separate CSV fields).
Status CheckSerial(std::string_view serial, const std::string& where) {
  if (serial.empty() || serial.size() > kMaxSerialLength) {
    return InvalidArgument(where + ": serial must be 1 to " + std::to_string(kMaxSerialLength) +
                           " characters");
  }
  for (char c : serial) {
    if (c <= ' ' || c > '~' || c == ',') {
      return InvalidArgument(where + ": serial must be printable ASCII without spaces or commas");
    }
  }
  return Status::Ok();
}

// "SHA1", "SHA-256", "HMAC-SHA512", "hmac-sha1" ... as a canonical name.
std::optional<std::string> HashNameFromSuite(std::string_view suite) {
  std::string s = AsciiUpper(Trim(suite));
  if (s.rfind("HMAC-", 0) == 0) s.erase(0, 5);
  s.erase(std::remove(s.begin(), s.end(), '-'), s.end());
  auto alg = otp::ParseHashAlgorithm(s);
  if (!alg.ok()) return std::nullopt;
  return std::string(otp::HashAlgorithmName(*alg));
}

Status CheckSeedLength(std::size_t size, const std::string& where) {
  if (size < kMinImportedSeedBytes) {
    return InvalidArgument(where + ": the seed is " + std::to_string(size) +
                           " bytes, under the minimum of " + std::to_string(kMinImportedSeedBytes) +
                           " (128 bits, RFC 4226 R6); refused");
  }
  if (size > kMaxSeedBytes) {
    return InvalidArgument(where + ": the seed is " + std::to_string(size) +
                           " bytes, over the maximum of " + std::to_string(kMaxSeedBytes));
  }
  return Status::Ok();
}

// ---- OpenSSL ---------------------------------------------------------------
// libpskc (2.6.7, Debian) parses only PlainValue data: it has no decryption,
// no EncryptionKey/MACMethod and no ValueMAC support, and reports a parse error
// for them. The encryption layer of RFC 6030 §6 (AES-128-CBC with the IV in front
// of the CipherValue, PBKDF2 key derivation, HMAC over IV||ciphertext) is
// therefore done here with OpenSSL's EVP, and libpskc reads everything else.

const EVP_MD* Digest(const std::string& name) {
  if (name == "SHA1") return EVP_sha1();
  if (name == "SHA256") return EVP_sha256();
  if (name == "SHA512") return EVP_sha512();
  return nullptr;
}

Bytes Hmac(const std::string& digest, const Bytes& key, const Bytes& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(Digest(digest), key.data(), static_cast<int>(key.size()), data.data(), data.size(), out,
           &len) == nullptr) {
    return {};
  }
  return Bytes(out, out + len);
}

// AES-128-CBC with PKCS#7 padding; `in` is IV || ciphertext. Empty optional when
// the padding is wrong (a wrong key, as a rule).
std::optional<Bytes> Aes128CbcDecrypt(const Bytes& key, const Bytes& in) {
  if (key.size() != kAes128KeyBytes || in.size() < 2 * kAesBlockBytes ||
      in.size() % kAesBlockBytes != 0) {
    return std::nullopt;
  }
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      &EVP_CIPHER_CTX_free);
  if (!ctx) return std::nullopt;
  Bytes out(in.size());
  int n1 = 0;
  int n2 = 0;
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_128_cbc(), nullptr, key.data(), in.data()) != 1 ||
      EVP_DecryptUpdate(ctx.get(), out.data(), &n1, in.data() + kAesBlockBytes,
                        static_cast<int>(in.size() - kAesBlockBytes)) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), out.data() + n1, &n2) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    return std::nullopt;
  }
  out.resize(static_cast<std::size_t>(n1 + n2));
  return out;
}

// ---- libxml2 ---------------------------------------------------------------

struct XmlDocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
struct XmlCtxtFree {
  void operator()(xmlParserCtxt* c) const { xmlFreeParserCtxt(c); }
};
struct XmlCharFree {
  void operator()(xmlChar* s) const { xmlFree(s); }
};
struct PskcFree {
  void operator()(pskc_t* c) const { pskc_done(c); }
};
using XmlDocPtr = std::unique_ptr<xmlDoc, XmlDocFree>;

std::string_view Name(const xmlNode* n) { return reinterpret_cast<const char*>(n->name); }

// Element children of `parent`, by local name (namespace prefixes vary between
// vendors, as they do in the RFC's own figures; libpskc matches the same way).
std::vector<xmlNode*> Elements(const xmlNode* parent, std::string_view name) {
  std::vector<xmlNode*> out;
  for (xmlNode* c = parent->children; c != nullptr; c = c->next) {
    if (c->type == XML_ELEMENT_NODE && Name(c) == name) out.push_back(c);
  }
  return out;
}

xmlNode* Element(const xmlNode* parent, std::string_view name) {
  for (xmlNode* c = parent->children; c != nullptr; c = c->next) {
    if (c->type == XML_ELEMENT_NODE && Name(c) == name) return c;
  }
  return nullptr;
}

std::optional<std::string> Attribute(const xmlNode* n, const char* name) {
  xmlChar* v = xmlGetProp(n, reinterpret_cast<const xmlChar*>(name));
  if (v == nullptr) return std::nullopt;
  std::string out(reinterpret_cast<const char*>(v));
  xmlFree(v);
  return out;
}

std::string Text(const xmlNode* n) {
  xmlChar* v = xmlNodeGetContent(n);
  if (v == nullptr) return {};
  std::string out(reinterpret_cast<const char*>(v));
  xmlFree(v);
  return out;
}

std::optional<Bytes> Base64Text(const xmlNode* n) {
  return otp::Base64Decode(WithoutSpaces(Text(n)));
}

void Remove(xmlNode* n) {
  xmlUnlinkNode(n);
  xmlFreeNode(n);
}

// An xenc EncryptedValue or MACKey: its method and IV || ciphertext.
struct Encrypted {
  std::string method;
  Bytes cipher;
};

Result<Encrypted> ReadEncrypted(const xmlNode* n, const std::string& what) {
  const xmlNode* method = Element(n, "EncryptionMethod");
  const xmlNode* data = Element(n, "CipherData");
  const xmlNode* value = data != nullptr ? Element(data, "CipherValue") : nullptr;
  if (method == nullptr || value == nullptr) {
    return InvalidArgument(what + ": EncryptionMethod or CipherData/CipherValue missing");
  }
  Encrypted e{Attribute(method, "Algorithm").value_or(""), {}};
  if (e.method != kAes128CbcUri) {
    return InvalidArgument(what + ": encryption algorithm '" + e.method +
                           "' is not supported (only AES-128-CBC, " + std::string(kAes128CbcUri) +
                           ")");
  }
  auto bytes = Base64Text(value);
  if (!bytes) return InvalidArgument(what + ": CipherValue is not base64");
  if (bytes->size() < 2 * kAesBlockBytes || bytes->size() % kAesBlockBytes != 0) {
    return InvalidArgument(what + ": CipherValue is not an IV and whole AES blocks");
  }
  e.cipher = std::move(*bytes);
  return e;
}

// What a KeyContainer says about encryption (RFC 6030 §6).
struct ContainerCrypto {
  enum class KeyKind { kNone, kPreShared, kPbkdf2 } kind = KeyKind::kNone;
  std::string key_name;  // ds:KeyName of a pre-shared key
  Bytes salt;
  std::uint64_t iterations = 0;
  std::uint64_t key_length = kAes128KeyBytes;
  std::string prf = "SHA1";
  bool has_mac = false;
  std::string mac_digest;
  std::optional<Encrypted> mac_key;
};

// What the walk over one KeyPackage found that libpskc does not read.
struct PackageExtras {
  bool plain_secret = false;
  std::optional<Encrypted> secret;
  std::optional<Bytes> value_mac;
  std::optional<std::string> suite_hashalgo;  // <Suite hashalgo="SHA256"/>
  std::optional<std::string> counter_text, interval_text;
};

Result<std::string> MacDigestFromUri(const std::string& uri) {
  if (uri == "http://www.w3.org/2000/09/xmldsig#hmac-sha1") return std::string("SHA1");
  if (uri == "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256") return std::string("SHA256");
  if (uri == "http://www.w3.org/2001/04/xmldsig-more#hmac-sha512") return std::string("SHA512");
  return InvalidArgument("MACMethod algorithm '" + uri +
                         "' is not supported (HMAC-SHA1, HMAC-SHA256 or HMAC-SHA512)");
}

Status ReadEncryptionKey(const xmlNode* n, ContainerCrypto* c) {
  if (const xmlNode* derived = Element(n, "DerivedKey")) {
    const xmlNode* method = Element(derived, "KeyDerivationMethod");
    if (method == nullptr) return InvalidArgument("EncryptionKey: DerivedKey without a method");
    const std::string alg = Attribute(method, "Algorithm").value_or("");
    if (alg != kPbkdf2Uri) {
      return InvalidArgument("EncryptionKey: key derivation '" + alg +
                             "' is not supported (only PBKDF2)");
    }
    const xmlNode* params = Element(method, "PBKDF2-params");
    const xmlNode* salt = params != nullptr ? Element(params, "Salt") : nullptr;
    const xmlNode* specified = salt != nullptr ? Element(salt, "Specified") : nullptr;
    const xmlNode* count = params != nullptr ? Element(params, "IterationCount") : nullptr;
    if (specified == nullptr || count == nullptr) {
      return InvalidArgument("EncryptionKey: PBKDF2 needs Salt/Specified and IterationCount");
    }
    auto salt_bytes = Base64Text(specified);
    if (!salt_bytes || salt_bytes->empty()) {
      return InvalidArgument("EncryptionKey: PBKDF2 salt is not base64");
    }
    auto iterations = ParseUnsigned(Trim(Text(count)));
    if (!iterations || *iterations == 0 || *iterations > kMaxPbkdf2Iterations) {
      return InvalidArgument("EncryptionKey: PBKDF2 IterationCount must be 1 to " +
                             std::to_string(kMaxPbkdf2Iterations));
    }
    if (const xmlNode* length = Element(params, "KeyLength")) {
      auto v = ParseUnsigned(Trim(Text(length)));
      if (!v || *v != kAes128KeyBytes) {
        return InvalidArgument("EncryptionKey: PBKDF2 KeyLength must be 16 (AES-128)");
      }
    }
    if (const xmlNode* prf = Element(params, "PRF")) {
      const std::string uri = Attribute(prf, "Algorithm").value_or("");
      if (!uri.empty()) {
        auto digest = MacDigestFromUri(uri);
        if (!digest.ok()) return InvalidArgument("EncryptionKey: PBKDF2 PRF '" + uri + "' unknown");
        c->prf = *digest;
      }
    }
    c->kind = ContainerCrypto::KeyKind::kPbkdf2;
    c->salt = std::move(*salt_bytes);
    c->iterations = *iterations;
    return Status::Ok();
  }
  if (const xmlNode* name = Element(n, "KeyName")) {
    c->kind = ContainerCrypto::KeyKind::kPreShared;
    c->key_name = std::string(Trim(Text(name)));
    return Status::Ok();
  }
  return InvalidArgument(
      "EncryptionKey: only a pre-shared key (KeyName) or a PBKDF2 DerivedKey is supported");
}

Status ReadMacMethod(const xmlNode* n, ContainerCrypto* c) {
  auto digest = MacDigestFromUri(Attribute(n, "Algorithm").value_or(""));
  if (!digest.ok()) return digest.status();
  const xmlNode* key = Element(n, "MACKey");
  if (key == nullptr) {
    return InvalidArgument("MACMethod: no MACKey (a MACKeyReference is not supported)");
  }
  auto enc = ReadEncrypted(key, "MACMethod/MACKey");
  if (!enc.ok()) return enc.status();
  c->has_mac = true;
  c->mac_digest = *digest;
  c->mac_key = std::move(*enc);
  return Status::Ok();
}

// The PlainValue of a Data element child (Counter, Time, ...), or an error when
// it is encrypted (libpskc reads only plain values there).
Result<std::optional<std::string>> PlainDataValue(const xmlNode* data, std::string_view name,
                                                  std::size_t package) {
  const xmlNode* n = Element(data, name);
  if (n == nullptr) return std::optional<std::string>();
  if (Element(n, "EncryptedValue") != nullptr) {
    return InvalidArgument("key package " + std::to_string(package) + ": an encrypted <" +
                           std::string(name) + "> is not supported");
  }
  const xmlNode* plain = Element(n, "PlainValue");
  if (plain == nullptr) return std::optional<std::string>();
  return std::optional<std::string>(std::string(Trim(Text(plain))));
}

// Reads the encryption parts of one KeyPackage and removes what libpskc cannot
// parse (an encrypted Secret), so that libpskc reads the rest strictly.
// RFC 6030 allows each child of a KeyPackage, Key, Data and of Data's values
// (Secret, Counter, ...) once. A repeated one makes the file ambiguous: the
// checks here read the first, libpskc silently replaces it with the last (and
// leaks the one it replaces).
Status NoRepeatedElements(const xmlNode* parent, std::size_t index) {
  std::set<std::string_view> seen;
  for (const xmlNode* c = parent->children; c != nullptr; c = c->next) {
    if (c->type == XML_ELEMENT_NODE && !seen.insert(Name(c)).second) {
      return InvalidArgument("key package " + std::to_string(index) + ": <" + std::string(Name(c)) +
                             "> appears more than once in <" + std::string(Name(parent)) + ">");
    }
  }
  return {};
}

// libpskc reads an element's text as its first child's content without
// checking what that child is: an empty <Manufacturer></Manufacturer>, or one
// whose first child is an element, crashed it (a NULL strncmp, found by
// fuzz_pskc). So every element other than a container holds text only (no
// child elements, no comments), and is not empty unless it carries only
// attributes (RFC 6030; <Suite hashalgo="…"/> as some vendors write it).
// Containers may be empty: an encrypted <Secret> has been taken out of its
// <Data> by now.
Status TextOnlyLeaves(const xmlNode* parent) {
  // Element names, each with a space on either side.
  static constexpr std::string_view kContainers =
      " KeyContainer KeyPackage DeviceInfo CryptoModuleInfo Key Data Secret Counter Time "
      "TimeInterval TimeDrift AlgorithmParameters Policy ";
  static constexpr std::string_view kAttributeOnly =
      " ResponseFormat ChallengeFormat PINPolicy Suite ";
  for (const xmlNode* c = parent->children; c != nullptr; c = c->next) {
    if (c->type != XML_ELEMENT_NODE) continue;
    const std::string name = " " + std::string(Name(c)) + " ";
    if (kContainers.find(name) != std::string_view::npos) {
      OTP_RETURN_IF_ERROR(TextOnlyLeaves(c));
      continue;
    }
    const std::string where =
        "line " + std::to_string(xmlGetLineNo(c)) + ": <" + std::string(Name(c)) + ">";
    if (c->children == nullptr && kAttributeOnly.find(name) == std::string_view::npos) {
      return InvalidArgument(where + " is empty");
    }
    for (const xmlNode* t = c->children; t != nullptr; t = t->next) {
      if (t->type != XML_TEXT_NODE && t->type != XML_CDATA_SECTION_NODE) {
        return InvalidArgument(where + " may hold text only");
      }
    }
  }
  return {};
}

Result<PackageExtras> ReadPackage(xmlNode* package, std::size_t index) {
  PackageExtras extras;
  OTP_RETURN_IF_ERROR(NoRepeatedElements(package, index));
  xmlNode* key = Element(package, "Key");
  if (key == nullptr) return extras;
  OTP_RETURN_IF_ERROR(NoRepeatedElements(key, index));
  if (const xmlNode* data = Element(key, "Data")) {
    OTP_RETURN_IF_ERROR(NoRepeatedElements(data, index));
    for (const xmlNode* c = data->children; c != nullptr; c = c->next) {
      if (c->type == XML_ELEMENT_NODE) OTP_RETURN_IF_ERROR(NoRepeatedElements(c, index));
    }
  }
  if (const xmlNode* params = Element(key, "AlgorithmParameters")) {
    if (const xmlNode* suite = Element(params, "Suite")) {
      extras.suite_hashalgo = Attribute(suite, "hashalgo");
      // libpskc does not expect attributes here; it reads the text only.
    }
  }
  xmlNode* data = Element(key, "Data");
  if (data == nullptr) return extras;
  // <Time> (intervals passed, RFC 6030 §4.1) and <TimeDrift> are informational:
  // codes count steps from Unix time 0 (RFC 6238) and resync learns a drifting clock.
  for (const char* name : {"Counter", "Time", "TimeInterval", "TimeDrift"}) {
    auto v = PlainDataValue(data, name, index);
    if (!v.ok()) return v.status();
    if (std::string_view(name) == "Counter") extras.counter_text = *v;
    if (std::string_view(name) == "TimeInterval") extras.interval_text = *v;
  }
  xmlNode* secret = Element(data, "Secret");
  if (secret == nullptr) return extras;
  if (xmlNode* mac = Element(secret, "ValueMAC")) {
    auto bytes = Base64Text(mac);
    if (!bytes) {
      return InvalidArgument("key package " + std::to_string(index) + ": ValueMAC is not base64");
    }
    extras.value_mac = std::move(*bytes);
  }
  if (const xmlNode* enc = Element(secret, "EncryptedValue")) {
    auto e = ReadEncrypted(enc, "key package " + std::to_string(index) + " Secret");
    if (!e.ok()) return e.status();
    extras.secret = std::move(*e);
    Remove(secret);
  } else if (Element(secret, "PlainValue") != nullptr) {
    extras.plain_secret = true;
    if (extras.value_mac) {
      // libpskc rejects a ValueMAC; over a plain value it proves nothing anyway.
      Remove(Element(secret, "ValueMAC"));
      extras.value_mac.reset();
    }
  }
  return extras;
}

void InitLibpskcOnce() {
  static std::once_flag once;
  std::call_once(once, [] { pskc_global_init(); });
}

std::optional<std::string> OptionalString(const char* s) {
  if (s == nullptr) return std::nullopt;
  return std::string(s);
}

// The derived or given key that decrypts the file's secrets.
Result<Bytes> EncryptionKeyFor(const ContainerCrypto& c, const PskcOptions& options) {
  if (c.kind == ContainerCrypto::KeyKind::kPbkdf2) {
    if (!options.password) {
      return InvalidArgument(
          "the secrets are encrypted with a password (PBKDF2 DerivedKey): give --password");
    }
    Bytes key(kAes128KeyBytes);
    if (PKCS5_PBKDF2_HMAC(options.password->data(), static_cast<int>(options.password->size()),
                          c.salt.data(), static_cast<int>(c.salt.size()),
                          static_cast<int>(c.iterations), Digest(c.prf),
                          static_cast<int>(key.size()), key.data()) != 1) {
      return otp::Internal("PBKDF2 failed in OpenSSL");
    }
    return key;
  }
  if (!options.key) {
    std::string name = c.key_name.empty() ? "" : " (KeyName '" + c.key_name + "')";
    return InvalidArgument("the secrets are encrypted with a pre-shared key" + name +
                           ": give --key HEX");
  }
  if (options.key->size() != kAes128KeyBytes) {
    return InvalidArgument("the pre-shared key must be 16 bytes (32 hex digits) for AES-128-CBC");
  }
  return *options.key;
}

// The HOTP/TOTP parameters libpskc read for one key package, checked. `serial`
// names the key in errors; the secret is filled in later.
Result<ImportedToken> TokenFromPackage(pskc_key_t* key, const PackageExtras& x,
                                       const std::string& serial) {
  const std::string where = "key '" + serial + "'";
  ImportedToken t;
  t.serial = serial;
  const std::string algorithm = OptionalString(pskc_get_key_algorithm(key)).value_or("");
  if (algorithm == kHotpUrn || algorithm == kHotpDraftUrn) {
    t.type = "hotp";
  } else if (algorithm == kTotpUrn || algorithm == kTotpDraftUrn) {
    t.type = "totp";
  } else {
    return InvalidArgument(where + ": algorithm '" + algorithm +
                           "' is not supported (HOTP or TOTP: " + std::string(kHotpUrn) + ", " +
                           std::string(kTotpUrn) + ")");
  }

  t.algorithm = "SHA1";
  std::optional<std::string> suite = x.suite_hashalgo;
  if (!suite || suite->empty()) suite = OptionalString(pskc_get_key_algparm_suite(key));
  if (suite && !Trim(*suite).empty()) {
    auto name = HashNameFromSuite(*suite);
    if (!name) {
      return InvalidArgument(where + ": Suite '" + *suite +
                             "' is not a hash this service knows (SHA1, SHA256, SHA512)");
    }
    t.algorithm = *name;
  }

  int present = 0;
  const pskc_valueformat encoding = pskc_get_key_algparm_resp_encoding(key, &present);
  if (present && encoding != PSKC_VALUEFORMAT_DECIMAL) {
    return InvalidArgument(where + ": ResponseFormat Encoding must be DECIMAL");
  }
  const std::uint32_t length = pskc_get_key_algparm_resp_length(key, &present);
  if (present) {
    if (length < kMinDigits || length > kMaxDigits) {
      return InvalidArgument(where + ": ResponseFormat Length " + std::to_string(length) +
                             " is outside 6..10 digits");
    }
    t.digits = static_cast<int>(length);
  }

  if (x.counter_text) {
    auto c = ParseUnsigned(*x.counter_text);
    if (!c || *c > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return InvalidArgument(where + ": Counter is not a non-negative integer");
    }
    if (t.type == "hotp") t.counter = static_cast<std::int64_t>(*c);
  }
  if (t.type == "totp") {
    if (x.interval_text) {
      auto p = ParseUnsigned(*x.interval_text);
      if (!p || *p < kMinPeriod || *p > kMaxPeriod) {
        return InvalidArgument(where + ": TimeInterval must be 15 to 120 seconds");
      }
      t.period = static_cast<int>(*p);
    }
  }

  return t;
}

// Decrypts the MACKey and checks each encrypted secret's ValueMAC (HMAC over
// IV || ciphertext, RFC 6030 §6.1.1) in constant time.
Status CheckValueMacs(const ContainerCrypto& crypto, const Bytes& enc_key,
                      const std::vector<PackageExtras>& extras,
                      const std::vector<std::string>& names) {
  auto mac_key = Aes128CbcDecrypt(enc_key, crypto.mac_key->cipher);
  if (!mac_key || mac_key->empty()) {
    return InvalidArgument("cannot decrypt the MACKey: wrong key or password; nothing imported");
  }
  Status result;
  for (std::size_t i = 0; i < extras.size() && result.ok(); ++i) {
    if (!extras[i].secret) continue;
    const Bytes mac = Hmac(crypto.mac_digest, *mac_key, extras[i].secret->cipher);
    const Bytes& want = *extras[i].value_mac;
    if (mac.empty() ||
        !otp::ConstantTimeEqual(
            std::string_view(reinterpret_cast<const char*>(mac.data()), mac.size()),
            std::string_view(reinterpret_cast<const char*>(want.data()), want.size()))) {
      result = InvalidArgument(names[i] +
                               ": ValueMAC does not match (wrong key or password, or the file "
                               "was altered); nothing imported");
    }
  }
  OPENSSL_cleanse(mac_key->data(), mac_key->size());
  return result;
}

}  // namespace

Result<std::vector<ImportedToken>> ParsePskc(std::string_view xml, const PskcOptions& options) {
  if (xml.size() > kMaxFileBytes) return InvalidArgument("PSKC file larger than 64 MiB");
  InitLibpskcOnce();

  // 1. Our own parse: no network, no DTD (so no entities), errors kept off stderr.
  std::unique_ptr<xmlParserCtxt, XmlCtxtFree> ctxt(xmlNewParserCtxt());
  if (!ctxt) return otp::Internal("libxml2: out of memory");
  XmlDocPtr doc(xmlCtxtReadMemory(ctxt.get(), xml.data(), static_cast<int>(xml.size()), "pskc.xml",
                                  nullptr,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  if (!doc) {
    const xmlError* err = xmlCtxtGetLastError(ctxt.get());
    std::string why =
        err != nullptr && err->message != nullptr
            ? std::string(Trim(err->message)) + " at line " + std::to_string(err->line)
            : "unreadable";
    return InvalidArgument("not a PSKC file: XML error: " + why);
  }
  if (doc->intSubset != nullptr) return InvalidArgument("not a PSKC file: it has a DTD");
  xmlNode* root = xmlDocGetRootElement(doc.get());
  if (root == nullptr || Name(root) != "KeyContainer") {
    return InvalidArgument("not a PSKC file: the root element is not <KeyContainer>");
  }

  // 2. The encryption parts, which libpskc cannot read, are taken out.
  ContainerCrypto crypto;
  if (xmlNode* n = Element(root, "EncryptionKey")) {
    OTP_RETURN_IF_ERROR(ReadEncryptionKey(n, &crypto));
    Remove(n);
  }
  if (xmlNode* n = Element(root, "MACMethod")) {
    OTP_RETURN_IF_ERROR(ReadMacMethod(n, &crypto));
    Remove(n);
  }
  std::vector<PackageExtras> extras;
  for (xmlNode* package : Elements(root, "KeyPackage")) {
    auto e = ReadPackage(package, extras.size() + 1);
    if (!e.ok()) return e.status();
    extras.push_back(std::move(*e));
  }
  if (extras.empty()) return InvalidArgument("the PSKC file has no KeyPackage");
  OTP_RETURN_IF_ERROR(TextOnlyLeaves(root));

  // 3. libpskc reads the rest and must understand all of it.
  xmlChar* rest = nullptr;
  int rest_len = 0;
  xmlDocDumpMemory(doc.get(), &rest, &rest_len);
  if (rest == nullptr) return otp::Internal("libxml2: cannot serialise");
  std::unique_ptr<xmlChar, XmlCharFree> rest_owner(rest);
  pskc_t* raw = nullptr;
  if (pskc_init(&raw) != PSKC_OK) return otp::Internal("libpskc: out of memory");
  std::unique_ptr<pskc_t, PskcFree> container(raw);
  const int rc = pskc_parse_from_memory(container.get(), static_cast<std::size_t>(rest_len),
                                        reinterpret_cast<const char*>(rest));
  if (rc != PSKC_OK) {
    return InvalidArgument(std::string("not a valid PSKC file (libpskc: ") + pskc_strerror(rc) +
                           "); elements it does not know are refused");
  }

  // 4. Metadata, checked before any secret is touched.
  std::vector<ImportedToken> tokens;
  std::vector<std::string> names;
  std::map<std::string, std::size_t> seen;
  bool any_plain = false;
  bool any_encrypted = false;
  for (std::size_t i = 0; i < extras.size(); ++i) {
    pskc_key_t* key = pskc_get_keypackage(container.get(), i);
    if (key == nullptr) return otp::Internal("libpskc lost a key package");
    const PackageExtras& x = extras[i];
    const std::string where_n = "key package " + std::to_string(i + 1);
    auto serial = OptionalString(pskc_get_device_serialno(key));
    if (!serial || Trim(*serial).empty()) serial = OptionalString(pskc_get_key_id(key));
    if (!serial) return InvalidArgument(where_n + ": neither DeviceInfo/SerialNo nor Key Id");
    *serial = std::string(Trim(*serial));
    OTP_RETURN_IF_ERROR(CheckSerial(*serial, where_n));
    const std::string where = "key '" + *serial + "'";
    if (auto [it, inserted] = seen.emplace(*serial, i + 1); !inserted) {
      return InvalidArgument(where + " appears twice (key packages " + std::to_string(it->second) +
                             " and " + std::to_string(i + 1) + ")");
    }

    auto t = TokenFromPackage(key, x, *serial);
    if (!t.ok()) return t.status();

    if (x.plain_secret) {
      any_plain = true;
    } else if (x.secret) {
      any_encrypted = true;
      if (!x.value_mac) {
        return InvalidArgument(where + ": the encrypted secret has no ValueMAC; refused");
      }
    } else {
      return InvalidArgument(where + ": no secret");
    }
    tokens.push_back(std::move(*t));
    names.push_back(where);
  }
  if (any_plain && !options.allow_plaintext) {
    return InvalidArgument(
        "the file holds unencrypted secrets (PlainValue); they are imported only with "
        "--allow-plaintext, once you know the file travelled safely");
  }

  // 5. Every MAC is checked before any secret is decrypted (SECURITY.md 16).
  Bytes enc_key;
  if (any_encrypted) {
    if (!crypto.has_mac) {
      return InvalidArgument("the secrets are encrypted but the file has no MACMethod; refused");
    }
    auto k = EncryptionKeyFor(crypto, options);
    if (!k.ok()) return k.status();
    enc_key = std::move(*k);
    Status mac_status = CheckValueMacs(crypto, enc_key, extras, names);
    if (!mac_status.ok()) {
      OPENSSL_cleanse(enc_key.data(), enc_key.size());
      return mac_status;
    }
  }

  // 6. The secrets.
  Status failure;
  for (std::size_t i = 0; i < extras.size() && failure.ok(); ++i) {
    ImportedToken& t = tokens[i];
    if (extras[i].secret) {
      auto plain = Aes128CbcDecrypt(enc_key, extras[i].secret->cipher);
      if (!plain) {
        failure = InvalidArgument(names[i] + ": cannot decrypt the secret; nothing imported");
        break;
      }
      t.secret = std::move(*plain);
    } else {
      std::size_t len = 0;
      const char* s = pskc_get_key_data_secret(pskc_get_keypackage(container.get(), i), &len);
      if (s == nullptr) {
        failure = InvalidArgument(names[i] + ": no secret");
        break;
      }
      t.secret.assign(s, s + len);
    }
    failure = CheckSeedLength(t.secret.size(), names[i]);
  }
  OPENSSL_cleanse(enc_key.data(), enc_key.size());
  if (!failure.ok()) {
    for (ImportedToken& t : tokens) OPENSSL_cleanse(t.secret.data(), t.secret.size());
    return failure;
  }
  return tokens;
}

Result<std::vector<ImportedToken>> ParseTokenCsv(std::string_view csv) {
  if (csv.size() > kMaxFileBytes) return InvalidArgument("CSV file larger than 64 MiB");
  if (csv.substr(0, 3) == "\xEF\xBB\xBF") csv.remove_prefix(3);  // a UTF-8 BOM
  std::vector<ImportedToken> tokens;
  std::map<std::string, std::size_t> seen;
  bool header_seen = false;
  std::size_t line_no = 0;
  Status failure;
  while (!csv.empty() || line_no == 0) {
    const std::size_t eol = csv.find('\n');
    const std::string_view line = Trim(csv.substr(0, eol));
    csv.remove_prefix(eol == std::string_view::npos ? csv.size() : eol + 1);
    ++line_no;
    const std::string where = "line " + std::to_string(line_no);
    if (line.empty()) continue;

    std::vector<std::string_view> fields;
    for (std::string_view rest = line;;) {
      const std::size_t comma = rest.find(',');
      fields.push_back(Trim(rest.substr(0, comma)));
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
    if (!header_seen) {
      static constexpr std::string_view kHeader[] = {"serial", "secret_hex", "type", "digits",
                                                     "period_or_counter"};
      if (!std::equal(fields.begin(), fields.end(), std::begin(kHeader), std::end(kHeader))) {
        failure = InvalidArgument(
            where + ": the header must be serial,secret_hex,type,digits,period_or_counter");
        break;
      }
      header_seen = true;
      continue;
    }
    if (fields.size() != 5) {
      failure =
          InvalidArgument(where + ": " + std::to_string(fields.size()) +
                          " fields, want 5 (serial,secret_hex,type,digits,period_or_counter)");
      break;
    }
    ImportedToken t;
    t.serial = std::string(fields[0]);
    failure = CheckSerial(t.serial, where);
    if (!failure.ok()) break;
    if (auto it = seen.find(t.serial); it != seen.end()) {
      failure = InvalidArgument(where + ": serial '" + t.serial + "' is already on line " +
                                std::to_string(it->second));
      break;
    }
    auto secret = otp::HexDecode(fields[1]);
    if (!secret || secret->empty()) {
      failure = InvalidArgument(where + ": secret_hex is not an even number of hex digits");
      break;
    }
    t.secret = std::move(*secret);
    failure = CheckSeedLength(t.secret.size(), where + " (serial '" + t.serial + "')");
    if (!failure.ok()) break;
    const std::string type = AsciiUpper(fields[2]);
    if (type != "HOTP" && type != "TOTP") {
      failure = InvalidArgument(where + ": type must be hotp or totp");
      break;
    }
    t.type = type == "HOTP" ? "hotp" : "totp";
    t.algorithm = "SHA1";
    auto digits = ParseUnsigned(fields[3]);
    if (!digits || *digits < kMinDigits || *digits > kMaxDigits) {
      failure = InvalidArgument(where + ": digits must be 6 to 10");
      break;
    }
    t.digits = static_cast<int>(*digits);
    auto n = ParseUnsigned(fields[4]);
    if (t.type == "totp") {
      if (!n || *n < kMinPeriod || *n > kMaxPeriod) {
        failure = InvalidArgument(where + ": a totp period must be 15 to 120 seconds");
        break;
      }
      t.period = static_cast<int>(*n);
    } else {
      if (!n || *n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        failure = InvalidArgument(where + ": a hotp counter must be a non-negative integer");
        break;
      }
      t.counter = static_cast<std::int64_t>(*n);
    }
    seen.emplace(t.serial, line_no);
    tokens.push_back(std::move(t));
  }
  if (failure.ok() && !header_seen) {
    failure = InvalidArgument(
        "line 1: the header must be serial,secret_hex,type,digits,period_or_counter");
  }
  if (failure.ok() && tokens.empty()) failure = InvalidArgument("the CSV file has no tokens");
  if (!failure.ok()) {
    for (ImportedToken& t : tokens) OPENSSL_cleanse(t.secret.data(), t.secret.size());
    return failure;
  }
  return tokens;
}

}  // namespace otpd
