#include "service/token_import.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "otp/crypto.h"

namespace otpd {
namespace {

using Bytes = std::vector<std::uint8_t>;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

Bytes FromText(std::string_view s) { return {s.begin(), s.end()}; }
Bytes FromHex(std::string_view s) { return otp::HexDecode(s).value(); }
std::string B64(const Bytes& b) { return otp::Base64Encode(b); }

// ---- the test's own crypto: OpenSSL EVP/HMAC/PBKDF2 called directly, so the
// fixtures do not come from the code under test.

Bytes RandomBytes(std::size_t n) {
  Bytes out(n);
  if (RAND_bytes(out.data(), static_cast<int>(n)) != 1) throw std::runtime_error("RAND_bytes");
  return out;
}

// IV || AES-128-CBC(key, iv, plain) with PKCS#7 padding, as RFC 6030 §6.1 writes it.
Bytes Aes128CbcEncrypt(const Bytes& key, const Bytes& plain) {
  const Bytes iv = RandomBytes(16);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  Bytes out(plain.size() + 32);
  int n1 = 0;
  int n2 = 0;
  if (EVP_EncryptInit_ex(ctx, EVP_aes_128_cbc(), nullptr, key.data(), iv.data()) != 1 ||
      EVP_EncryptUpdate(ctx, out.data(), &n1, plain.data(), static_cast<int>(plain.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx, out.data() + n1, &n2) != 1) {
    EVP_CIPHER_CTX_free(ctx);
    throw std::runtime_error("AES");
  }
  EVP_CIPHER_CTX_free(ctx);
  out.resize(static_cast<std::size_t>(n1 + n2));
  Bytes result = iv;
  result.insert(result.end(), out.begin(), out.end());
  return result;
}

// IV || one AES-128-CBC block without padding whose plaintext ends in 0x00: a
// ciphertext that no PKCS#7 decryption accepts.
Bytes BadPaddingCipher(const Bytes& key) {
  const Bytes iv = RandomBytes(16);
  Bytes block = RandomBytes(16);
  block[15] = 0;
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  Bytes out(32);
  int n = 0;
  EVP_EncryptInit_ex(ctx, EVP_aes_128_cbc(), nullptr, key.data(), iv.data());
  EVP_CIPHER_CTX_set_padding(ctx, 0);
  EVP_EncryptUpdate(ctx, out.data(), &n, block.data(), 16);
  EVP_CIPHER_CTX_free(ctx);
  out.resize(static_cast<std::size_t>(n));
  Bytes result = iv;
  result.insert(result.end(), out.begin(), out.end());
  return result;
}

Bytes HmacSha1(const Bytes& key, const Bytes& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha1(), key.data(), static_cast<int>(key.size()), data.data(), data.size(), out, &len);
  return Bytes(out, out + len);
}

Bytes Pbkdf2Sha1(const std::string& password, const Bytes& salt, int iterations) {
  Bytes out(16);
  PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(),
                    static_cast<int>(salt.size()), iterations, EVP_sha1(), 16, out.data());
  return out;
}

// ---- RFC 6030's own figures, with their published values.

constexpr char kFigure2[] = R"(<?xml version="1.0" encoding="UTF-8"?>
<KeyContainer Version="1.0" Id="exampleID1" xmlns="urn:ietf:params:xml:ns:keyprov:pskc">
  <KeyPackage>
    <Key Id="12345678" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:hotp">
      <Issuer>Issuer-A</Issuer>
      <Data>
        <Secret><PlainValue>MTIzNA==</PlainValue></Secret>
      </Data>
    </Key>
  </KeyPackage>
</KeyContainer>)";

// Figure 6: pre-shared key 12345678901234567890123456789012 (hex), MAC key
// 1122334455667788990011223344556677889900 (hex), secret "12345678901234567890".
constexpr char kFigure6[] = R"(<?xml version="1.0" encoding="UTF-8"?>
<KeyContainer Version="1.0"
    xmlns="urn:ietf:params:xml:ns:keyprov:pskc"
    xmlns:ds="http://www.w3.org/2000/09/xmldsig#"
    xmlns:xenc="http://www.w3.org/2001/04/xmlenc#">
    <EncryptionKey>
        <ds:KeyName>Pre-shared-key</ds:KeyName>
    </EncryptionKey>
    <MACMethod Algorithm="http://www.w3.org/2000/09/xmldsig#hmac-sha1">
        <MACKey>
            <xenc:EncryptionMethod
            Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
            <xenc:CipherData>
                <xenc:CipherValue>
    ESIzRFVmd4iZABEiM0RVZgKn6WjLaTC1sbeBMSvIhRejN9vJa2BOlSaMrR7I5wSX
                </xenc:CipherValue>
            </xenc:CipherData>
        </MACKey>
    </MACMethod>
    <KeyPackage>
        <DeviceInfo>
            <Manufacturer>Manufacturer</Manufacturer>
            <SerialNo>987654321</SerialNo>
        </DeviceInfo>
        <CryptoModuleInfo>
            <Id>CM_ID_001</Id>
        </CryptoModuleInfo>
        <Key Id="12345678"
            Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:hotp">
            <Issuer>Issuer</Issuer>
            <AlgorithmParameters>
                <ResponseFormat Length="8" Encoding="DECIMAL"/>
            </AlgorithmParameters>
            <Data>
                <Secret>
                    <EncryptedValue>
                        <xenc:EncryptionMethod
                        Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
                        <xenc:CipherData>
                            <xenc:CipherValue>
    AAECAwQFBgcICQoLDA0OD+cIHItlB3Wra1DUpxVvOx2lef1VmNPCMl8jwZqIUqGv
                            </xenc:CipherValue>
                        </xenc:CipherData>
                    </EncryptedValue>
                    <ValueMAC>Su+NvtQfmvfJzF6bmQiJqoLRExc=
                    </ValueMAC>
                </Secret>
                <Counter>
                    <PlainValue>0</PlainValue>
                </Counter>
            </Data>
        </Key>
    </KeyPackage>
</KeyContainer>)";

// Figure 7: PBKDF2 with the password "qwerty", the same secret.
constexpr char kFigure7[] = R"(<?xml version="1.0" encoding="UTF-8"?>
<pskc:KeyContainer
  xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc"
  xmlns:xenc11="http://www.w3.org/2009/xmlenc11#"
  xmlns:pkcs5="http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#"
  xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" Version="1.0">
    <pskc:EncryptionKey>
        <xenc11:DerivedKey>
            <xenc11:KeyDerivationMethod
              Algorithm="http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#pbkdf2">
                <pkcs5:PBKDF2-params>
                    <Salt>
                        <Specified>Ej7/PEpyEpw=</Specified>
                    </Salt>
                    <IterationCount>1000</IterationCount>
                    <KeyLength>16</KeyLength>
                    <PRF/>
                </pkcs5:PBKDF2-params>
            </xenc11:KeyDerivationMethod>
            <xenc:ReferenceList>
                <xenc:DataReference URI="#ED"/>
            </xenc:ReferenceList>
            <xenc11:MasterKeyName>My Password 1</xenc11:MasterKeyName>
        </xenc11:DerivedKey>
    </pskc:EncryptionKey>
    <pskc:MACMethod
        Algorithm="http://www.w3.org/2000/09/xmldsig#hmac-sha1">
        <pskc:MACKey>
            <xenc:EncryptionMethod
            Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
            <xenc:CipherData>
                <xenc:CipherValue>
2GTTnLwM3I4e5IO5FkufoOEiOhNj91fhKRQBtBJYluUDsPOLTfUvoU2dStyOwYZx
                </xenc:CipherValue>
            </xenc:CipherData>
        </pskc:MACKey>
    </pskc:MACMethod>
    <pskc:KeyPackage>
        <pskc:DeviceInfo>
            <pskc:Manufacturer>TokenVendorAcme</pskc:Manufacturer>
            <pskc:SerialNo>987654321</pskc:SerialNo>
        </pskc:DeviceInfo>
        <pskc:CryptoModuleInfo>
            <pskc:Id>CM_ID_001</pskc:Id>
        </pskc:CryptoModuleInfo>
        <pskc:Key Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:hotp" Id="123456">
            <pskc:Issuer>Example-Issuer</pskc:Issuer>
            <pskc:AlgorithmParameters>
                <pskc:ResponseFormat Length="8" Encoding="DECIMAL"/>
            </pskc:AlgorithmParameters>
            <pskc:Data>
                <pskc:Secret>
                <pskc:EncryptedValue Id="ED">
                    <xenc:EncryptionMethod
                        Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
                        <xenc:CipherData>
                            <xenc:CipherValue>
      oTvo+S22nsmS2Z/RtcoF8Hfh+jzMe0RkiafpoDpnoZTjPYZu6V+A4aEn032yCr4f
                        </xenc:CipherValue>
                    </xenc:CipherData>
                    </pskc:EncryptedValue>
                    <pskc:ValueMAC>LP6xMvjtypbfT9PdkJhBZ+D6O4w=
                    </pskc:ValueMAC>
                </pskc:Secret>
            </pskc:Data>
        </pskc:Key>
    </pskc:KeyPackage>
</pskc:KeyContainer>)";

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  const auto at = s.find(from);
  if (at == std::string::npos) throw std::runtime_error("fixture: no " + from);
  return s.replace(at, from.size(), to);
}

// ---- fixtures in the style of the RFC's figures, written by the test.

// Replaces the text of the first <tag> after `serial` in `xml`.
void SetAfter(std::string& xml, const std::string& serial, const std::string& tag,
              const std::string& value) {
  const std::string open = "<" + tag + ">";
  const auto at = xml.find(open, xml.find(serial)) + open.size();
  xml.replace(at, xml.find("</" + tag + ">", at) - at, value);
}

struct KeySpec {
  std::string serial;  // empty: no DeviceInfo
  std::string key_id;
  std::string type = "hotp";
  Bytes secret;
  std::string algorithm_parameters;  // inner XML of <AlgorithmParameters>, if any
  std::string extra_data;            // more <Data> children (Counter, TimeInterval ...)
};

std::string PackageXml(const KeySpec& k, const std::string& secret_xml) {
  std::string x = "  <KeyPackage>\n";
  if (!k.serial.empty()) {
    x += "    <DeviceInfo><Manufacturer>oath.test</Manufacturer><SerialNo>" + k.serial +
         "</SerialNo></DeviceInfo>\n";
  }
  x += "    <Key Id=\"" + k.key_id +
       "\" Algorithm=\"urn:ietf:params:xml:ns:keyprov:pskc:" + k.type +
       "\">\n      <Issuer>Acme</Issuer>\n";
  if (!k.algorithm_parameters.empty()) {
    x += "      <AlgorithmParameters>" + k.algorithm_parameters + "</AlgorithmParameters>\n";
  }
  x +=
      "      <Data>\n" + secret_xml + k.extra_data + "      </Data>\n    </Key>\n  </KeyPackage>\n";
  return x;
}

constexpr char kContainerOpen[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<KeyContainer Version=\"1.0\" xmlns=\"urn:ietf:params:xml:ns:keyprov:pskc\"\n"
    "    xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"\n"
    "    xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"\n"
    "    xmlns:xenc11=\"http://www.w3.org/2009/xmlenc11#\"\n"
    "    xmlns:pkcs5=\"http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#\">\n";

std::string PlainFile(const std::vector<KeySpec>& keys) {
  std::string x = kContainerOpen;
  for (const KeySpec& k : keys) {
    x += PackageXml(k, "        <Secret><PlainValue>" + B64(k.secret) + "</PlainValue></Secret>\n");
  }
  return x + "</KeyContainer>\n";
}

std::string CipherXml(const Bytes& cipher) {
  return "<xenc:EncryptionMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#aes128-cbc\"/>"
         "<xenc:CipherData><xenc:CipherValue>" +
         B64(cipher) + "</xenc:CipherValue></xenc:CipherData>";
}

// A file encrypted like Figure 6 (pre-shared key) or Figure 7 (PBKDF2 key
// `enc_key` with its `encryption_key_xml`), MACed with a random HMAC-SHA1 key.
std::string EncryptedFile(const std::vector<KeySpec>& keys, const Bytes& enc_key,
                          const std::string& encryption_key_xml,
                          const Bytes& mac_key = RandomBytes(20)) {
  std::string x = kContainerOpen;
  x += "  <EncryptionKey>" + encryption_key_xml + "</EncryptionKey>\n";
  x += "  <MACMethod Algorithm=\"http://www.w3.org/2000/09/xmldsig#hmac-sha1\"><MACKey>" +
       CipherXml(Aes128CbcEncrypt(enc_key, mac_key)) + "</MACKey></MACMethod>\n";
  for (const KeySpec& k : keys) {
    const Bytes cipher = Aes128CbcEncrypt(enc_key, k.secret);
    x += PackageXml(k, "        <Secret><EncryptedValue>" + CipherXml(cipher) +
                           "</EncryptedValue>\n          <ValueMAC>" +
                           B64(HmacSha1(mac_key, cipher)) + "</ValueMAC></Secret>\n");
  }
  return x + "</KeyContainer>\n";
}

constexpr char kPreSharedKeyXml[] = "<ds:KeyName>Pre-shared-key</ds:KeyName>";

std::string Pbkdf2KeyXml(const Bytes& salt, int iterations) {
  return "<xenc11:DerivedKey><xenc11:KeyDerivationMethod "
         "Algorithm=\"http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#pbkdf2\">"
         "<pkcs5:PBKDF2-params><Salt><Specified>" +
         B64(salt) + "</Specified></Salt><IterationCount>" + std::to_string(iterations) +
         "</IterationCount><KeyLength>16</KeyLength><PRF/></pkcs5:PBKDF2-params>"
         "</xenc11:KeyDerivationMethod><xenc11:MasterKeyName>pw</xenc11:MasterKeyName>"
         "</xenc11:DerivedKey>";
}

// A HOTP token, a TOTP token (60 s, 8 digits, SHA256) and a HOTP token with a counter.
std::vector<KeySpec> ThreeTokens() {
  return {
      KeySpec{"SN-0001", "k1", "hotp", RandomBytes(20),
              "<ResponseFormat Length=\"6\" Encoding=\"DECIMAL\"/>", ""},
      KeySpec{"SN-0002", "k2", "totp", RandomBytes(32),
              "<Suite>HMAC-SHA256</Suite><ResponseFormat Length=\"8\" Encoding=\"DECIMAL\"/>",
              "<TimeInterval><PlainValue>60</PlainValue></TimeInterval>"
              "<Time><PlainValue>0</PlainValue></Time>"},
      KeySpec{"SN-0003", "k3", "hotp", RandomBytes(20), "",
              "<Counter><PlainValue>42</PlainValue></Counter>"},
  };
}

void ExpectThreeTokens(const std::vector<ImportedToken>& got, const std::vector<KeySpec>& want) {
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].serial, "SN-0001");
  EXPECT_EQ(got[0].type, "hotp");
  EXPECT_EQ(got[0].secret, want[0].secret);
  EXPECT_EQ(got[0].digits, 6);
  EXPECT_EQ(got[0].counter, 0);
  EXPECT_EQ(got[0].algorithm, "SHA1");
  EXPECT_EQ(got[1].serial, "SN-0002");
  EXPECT_EQ(got[1].type, "totp");
  EXPECT_EQ(got[1].secret, want[1].secret);
  EXPECT_EQ(got[1].digits, 8);
  EXPECT_EQ(got[1].period, 60);
  EXPECT_EQ(got[1].algorithm, "SHA256");
  EXPECT_EQ(got[2].serial, "SN-0003");
  EXPECT_EQ(got[2].secret, want[2].secret);
  EXPECT_EQ(got[2].digits, 6);
  EXPECT_EQ(got[2].counter, 42);
}

std::string ErrorOf(const otp::Result<std::vector<ImportedToken>>& r) {
  EXPECT_FALSE(r.ok());
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), otp::StatusCode::kInvalidArgument);
  return r.status().message();
}

PskcOptions WithKey(const Bytes& key) {
  PskcOptions o;
  o.key = key;
  return o;
}
PskcOptions WithPassword(const std::string& password) {
  PskcOptions o;
  o.password = password;
  return o;
}

// ---- RFC 6030 figures

TEST(PskcTest, Rfc6030Figure6PreSharedKeyDecryptsToThePublishedSecret) {
  auto r = ParsePskc(kFigure6, WithKey(FromHex("12345678901234567890123456789012")));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 1u);
  const ImportedToken& t = (*r)[0];
  EXPECT_EQ(t.serial, "987654321");
  EXPECT_EQ(t.secret, FromText("12345678901234567890"));
  EXPECT_EQ(t.type, "hotp");
  EXPECT_EQ(t.digits, 8);
  EXPECT_EQ(t.counter, 0);
  EXPECT_EQ(t.algorithm, "SHA1");
}

TEST(PskcTest, Rfc6030Figure6WrongOrMissingKeyRefused) {
  EXPECT_THAT(ErrorOf(ParsePskc(kFigure6, WithKey(FromHex("00112233445566778899aabbccddeeff")))),
              HasSubstr("wrong key or password"));
  EXPECT_THAT(ErrorOf(ParsePskc(kFigure6, PskcOptions{})), HasSubstr("--key"));
  EXPECT_THAT(ErrorOf(ParsePskc(kFigure6, WithKey(FromHex("1234")))), HasSubstr("16 bytes"));
}

TEST(PskcTest, Rfc6030Figure6AlteredValueMacRefused) {
  const std::string altered =
      Replace(kFigure6, "Su+NvtQfmvfJzF6bmQiJqoLRExc=", "Su+NvtQfmvfJzF6bmQiJqoLSExc=");
  const std::string msg =
      ErrorOf(ParsePskc(altered, WithKey(FromHex("12345678901234567890123456789012"))));
  EXPECT_THAT(msg, HasSubstr("key '987654321': ValueMAC does not match"));
}

TEST(PskcTest, Rfc6030Figure7Pbkdf2DecryptsToThePublishedSecret) {
  auto r = ParsePskc(kFigure7, WithPassword("qwerty"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].serial, "987654321");
  EXPECT_EQ((*r)[0].secret, FromText("12345678901234567890"));
  EXPECT_EQ((*r)[0].digits, 8);
  EXPECT_THAT(ErrorOf(ParsePskc(kFigure7, WithPassword("qwertz"))),
              HasSubstr("wrong key or password"));
  EXPECT_THAT(ErrorOf(ParsePskc(kFigure7, PskcOptions{})), HasSubstr("--password"));
}

TEST(PskcTest, Rfc6030Figure2ShortSeedRefusedNamingTheKey) {
  PskcOptions o;
  o.allow_plaintext = true;
  const std::string msg = ErrorOf(ParsePskc(kFigure2, o));
  EXPECT_THAT(msg, HasSubstr("key '12345678'"));  // no SerialNo: the Key Id
  EXPECT_THAT(msg, HasSubstr("4 bytes"));
}

// ---- plaintext

TEST(PskcTest, PlaintextImportedOnlyWithTheFlag) {
  const auto keys = ThreeTokens();
  const std::string xml = PlainFile(keys);
  EXPECT_THAT(ErrorOf(ParsePskc(xml, PskcOptions{})), HasSubstr("--allow-plaintext"));
  PskcOptions o;
  o.allow_plaintext = true;
  auto r = ParsePskc(xml, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ExpectThreeTokens(*r, keys);
}

TEST(PskcTest, SerialFallsBackToKeyIdAndSuiteAttributeGivesTheHash) {
  PskcOptions o;
  o.allow_plaintext = true;
  // <Time> and <TimeDrift> are informational: read past, not refused.
  KeySpec k{"",
            "KID-77",
            "totp",
            RandomBytes(64),
            "<Suite hashalgo=\"SHA512\"/>",
            "<Time><PlainValue>56789012</PlainValue></Time>"
            "<TimeDrift><PlainValue>4</PlainValue></TimeDrift>"};
  auto r = ParsePskc(PlainFile({k}), o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)[0].serial, "KID-77");
  EXPECT_EQ((*r)[0].algorithm, "SHA512");
  EXPECT_EQ((*r)[0].period, 30);
  EXPECT_EQ((*r)[0].digits, 6);
}

// ---- pre-shared key (Figure 6 style)

TEST(PskcTest, PreSharedKeyFileImportsEveryToken) {
  const Bytes key = RandomBytes(16);
  const auto keys = ThreeTokens();
  auto r = ParsePskc(EncryptedFile(keys, key, kPreSharedKeyXml), WithKey(key));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ExpectThreeTokens(*r, keys);
}

TEST(PskcTest, WrongMacOnOneKeyRefusesTheWholeFile) {
  const Bytes key = RandomBytes(16);
  const auto keys = ThreeTokens();
  std::string xml = EncryptedFile(keys, key, kPreSharedKeyXml);
  SetAfter(xml, "SN-0002", "ValueMAC", B64(RandomBytes(20)));  // a MAC of other bytes
  const std::string msg = ErrorOf(ParsePskc(xml, WithKey(key)));
  EXPECT_THAT(msg, HasSubstr("key 'SN-0002': ValueMAC does not match"));
  EXPECT_THAT(msg, HasSubstr("nothing imported"));
}

TEST(PskcTest, AlteredCiphertextFailsTheMac) {
  const Bytes key = RandomBytes(16);
  auto keys = ThreeTokens();
  std::string xml = EncryptedFile(keys, key, kPreSharedKeyXml);
  // Replace the third key's ciphertext with another encryption of another seed,
  // keeping its ValueMAC: the MAC must catch it before decryption.
  SetAfter(xml, "SN-0003", "xenc:CipherValue", B64(Aes128CbcEncrypt(key, RandomBytes(20))));
  EXPECT_THAT(ErrorOf(ParsePskc(xml, WithKey(key))),
              HasSubstr("key 'SN-0003': ValueMAC does not match"));
}

TEST(PskcTest, EveryMacIsCheckedBeforeAnySecretIsDecrypted) {
  const Bytes key = RandomBytes(16);
  const Bytes mac_key = RandomBytes(20);
  // Key 1: a ciphertext that cannot be decrypted, under a correct MAC.
  const Bytes undecryptable = BadPaddingCipher(key);
  std::string xml = EncryptedFile(ThreeTokens(), key, kPreSharedKeyXml, mac_key);
  SetAfter(xml, "SN-0001", "xenc:CipherValue", B64(undecryptable));
  SetAfter(xml, "SN-0001", "ValueMAC", B64(HmacSha1(mac_key, undecryptable)));
  EXPECT_THAT(ErrorOf(ParsePskc(xml, WithKey(key))),
              HasSubstr("key 'SN-0001': cannot decrypt the secret"));
  // Key 3 with a wrong MAC as well: had key 1 been decrypted before key 3's MAC
  // was checked, the error would still name key 1.
  SetAfter(xml, "SN-0003", "ValueMAC", B64(RandomBytes(20)));
  EXPECT_THAT(ErrorOf(ParsePskc(xml, WithKey(key))),
              HasSubstr("key 'SN-0003': ValueMAC does not match"));
}

TEST(PskcTest, EncryptedShortSeedRefusedNamingTheKey) {
  const Bytes key = RandomBytes(16);
  auto keys = ThreeTokens();
  keys[1].secret = RandomBytes(10);
  const std::string msg =
      ErrorOf(ParsePskc(EncryptedFile(keys, key, kPreSharedKeyXml), WithKey(key)));
  EXPECT_THAT(msg, HasSubstr("key 'SN-0002'"));
  EXPECT_THAT(msg, HasSubstr("10 bytes"));
}

TEST(PskcTest, EncryptedSecretWithoutMacRefused) {
  const Bytes key = RandomBytes(16);
  const std::string xml = EncryptedFile(ThreeTokens(), key, kPreSharedKeyXml);
  // Without the ValueMAC of the first key.
  std::string no_value_mac = xml;
  const auto at = no_value_mac.find("<ValueMAC>");
  no_value_mac.erase(at, no_value_mac.find("</ValueMAC>") + 11 - at);
  EXPECT_THAT(ErrorOf(ParsePskc(no_value_mac, WithKey(key))),
              HasSubstr("key 'SN-0001': the encrypted secret has no ValueMAC"));
  // Without the MACMethod.
  std::string no_method = xml;
  const auto m = no_method.find("<MACMethod");
  no_method.erase(m, no_method.find("</MACMethod>") + 12 - m);
  EXPECT_THAT(ErrorOf(ParsePskc(no_method, WithKey(key))), HasSubstr("no MACMethod"));
}

TEST(PskcTest, OnlyAes128CbcAndHmacAccepted) {
  const Bytes key = RandomBytes(16);
  const std::string xml = EncryptedFile(ThreeTokens(), key, kPreSharedKeyXml);
  EXPECT_THAT(
      ErrorOf(ParsePskc(Replace(xml, "xmldsig#hmac-sha1", "xmldsig#hmac-md5"), WithKey(key))),
      HasSubstr("MACMethod algorithm"));
  const auto first = xml.find("xmlenc#aes128-cbc", xml.find("SN-0001"));
  std::string aes256 = xml;
  aes256.replace(first, 17, "xmlenc#aes256-cbc");
  EXPECT_THAT(ErrorOf(ParsePskc(aes256, WithKey(key))), HasSubstr("only AES-128-CBC"));
}

// ---- PBKDF2 (Figure 7 style)

TEST(PskcTest, Pbkdf2FileImportsWithThePasswordOnly) {
  const Bytes salt = RandomBytes(8);
  const auto keys = ThreeTokens();
  const std::string xml =
      EncryptedFile(keys, Pbkdf2Sha1("correct horse", salt, 2000), Pbkdf2KeyXml(salt, 2000));
  auto r = ParsePskc(xml, WithPassword("correct horse"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ExpectThreeTokens(*r, keys);
  EXPECT_THAT(ErrorOf(ParsePskc(xml, WithPassword("correct horse "))),
              HasSubstr("wrong key or password"));
  EXPECT_THAT(ErrorOf(ParsePskc(xml, WithKey(RandomBytes(16)))), HasSubstr("--password"));
}

// ---- refusals of the file's shape

TEST(PskcTest, DuplicateSerialRefused) {
  PskcOptions o;
  o.allow_plaintext = true;
  auto keys = ThreeTokens();
  keys[2].serial = "SN-0001";
  EXPECT_THAT(ErrorOf(ParsePskc(PlainFile(keys), o)),
              HasSubstr("key 'SN-0001' appears twice (key packages 1 and 3)"));
}

TEST(PskcTest, UnsupportedAlgorithmsAndParametersRefused) {
  PskcOptions o;
  o.allow_plaintext = true;
  KeySpec ocra{"SN-9", "k", "OCRA-1", RandomBytes(20), "", ""};
  EXPECT_THAT(ErrorOf(ParsePskc(PlainFile({ocra}), o)), HasSubstr("key 'SN-9': algorithm"));
  KeySpec five{
      "SN-5", "k", "hotp", RandomBytes(20), "<ResponseFormat Length=\"5\" Encoding=\"DECIMAL\"/>",
      ""};
  EXPECT_THAT(ErrorOf(ParsePskc(PlainFile({five}), o)), HasSubstr("outside 6..10"));
  KeySpec hex{"SN-6",
              "k",
              "hotp",
              RandomBytes(20),
              "<ResponseFormat Length=\"6\" Encoding=\"HEXADECIMAL\"/>",
              ""};
  EXPECT_THAT(ErrorOf(ParsePskc(PlainFile({hex}), o)), HasSubstr("DECIMAL"));
  KeySpec md5{"SN-7", "k", "hotp", RandomBytes(20), "<Suite>HMAC-MD5</Suite>", ""};
  EXPECT_THAT(ErrorOf(ParsePskc(PlainFile({md5}), o)), HasSubstr("Suite 'HMAC-MD5'"));
  KeySpec step{"SN-8",          "k", "totp",
               RandomBytes(20), "",  "<TimeInterval><PlainValue>5</PlainValue></TimeInterval>"};
  EXPECT_THAT(ErrorOf(ParsePskc(PlainFile({step}), o)), HasSubstr("TimeInterval"));
  KeySpec counter{"SN-11",         "k", "hotp",
                  RandomBytes(20), "",  "<Counter><PlainValue>-1</PlainValue></Counter>"};
  EXPECT_THAT(ErrorOf(ParsePskc(PlainFile({counter}), o)), HasSubstr("Counter"));
  KeySpec spaced{"SN 12", "k", "hotp", RandomBytes(20), "", ""};
  EXPECT_THAT(ErrorOf(ParsePskc(PlainFile({spaced}), o)), HasSubstr("printable ASCII"));
}

TEST(PskcTest, NotPskcRefused) {
  PskcOptions o;
  o.allow_plaintext = true;
  EXPECT_THAT(ErrorOf(ParsePskc("serial,secret_hex\n", o)), HasSubstr("XML error"));
  EXPECT_THAT(ErrorOf(ParsePskc("<a/>", o)), HasSubstr("<KeyContainer>"));
  EXPECT_THAT(ErrorOf(ParsePskc(std::string(kContainerOpen) + "</KeyContainer>", o)),
              HasSubstr("no KeyPackage"));
  // A DTD could declare entities: refused outright.
  EXPECT_THAT(ErrorOf(ParsePskc("<?xml version=\"1.0\"?><!DOCTYPE KeyContainer [<!ENTITY x "
                                "\"y\">]><KeyContainer/>",
                                o)),
              HasSubstr("DTD"));
  // An element libpskc does not know.
  KeySpec k{"SN-1", "k", "hotp", RandomBytes(20), "", "<Bogus>1</Bogus>"};
  EXPECT_THAT(ErrorOf(ParsePskc(PlainFile({k}), o)), HasSubstr("libpskc"));
}

// SECURITY.md 16. Found by fuzz_pskc: a <Data> with two <Secret>s (an
// encrypted one and a plaintext one) was imported with the second silently
// dropped, and libpskc leaked its value. An ambiguous file is refused whole.
TEST(Sec16Pskc, RepeatedElementsInAKeyRefused) {
  const Bytes key = RandomBytes(16);
  KeySpec k{"SN-1", "k", "hotp", RandomBytes(20), "", ""};
  k.extra_data = "<Secret><PlainValue>" + B64(RandomBytes(20)) + "</PlainValue></Secret>";
  EXPECT_THAT(ErrorOf(ParsePskc(EncryptedFile({k}, key, kPreSharedKeyXml), WithKey(key))),
              HasSubstr("key package 1: <Secret> appears more than once in <Data>"));
  PskcOptions plain;
  plain.allow_plaintext = true;
  EXPECT_THAT(ErrorOf(ParsePskc(PlainFile({k}), plain)), HasSubstr("<Secret> appears more"));
  KeySpec counters{
      "SN-2", "k2",
      "hotp", RandomBytes(20),
      "",     "<Counter><PlainValue>1</PlainValue><PlainValue>2</PlainValue></Counter>"};
  EXPECT_THAT(ErrorOf(ParsePskc(PlainFile({counters}), plain)),
              HasSubstr("<PlainValue> appears more than once in <Counter>"));
  // One of each is still fine.
  KeySpec one{"SN-3",          "k3", "hotp",
              RandomBytes(20), "",   "<Counter><PlainValue>7</PlainValue></Counter>"};
  auto r = ParsePskc(PlainFile({one}), plain);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->at(0).counter, 7);
}

// Found by fuzz_pskc: an empty <Manufacturer></Manufacturer>, and one whose
// first child was an element, crashed libpskc (it reads the first child's
// content without checking there is any). Both are refused before libpskc
// sees the file, naming the line; attribute-only elements stay allowed.
TEST(Sec16Pskc, EmptyOrNestedTextElementsRefusedBeforeLibpskc) {
  PskcOptions plain;
  plain.allow_plaintext = true;
  const std::string secret = B64(RandomBytes(20));
  const auto file = [&](const std::string& device) {
    return std::string(kContainerOpen) + "\n<KeyPackage><DeviceInfo>" + device +
           "</DeviceInfo>\n<Key Id=\"k1\" Algorithm=\"urn:ietf:params:xml:ns:keyprov:pskc:hotp\">"
           "<AlgorithmParameters><ResponseFormat Length=\"6\" Encoding=\"DECIMAL\"/>"
           "</AlgorithmParameters><Data><Secret><PlainValue>" +
           secret +
           "</PlainValue></Secret><Counter><PlainValue>0</PlainValue></Counter>"
           "</Data></Key></KeyPackage></KeyContainer>";
  };
  for (const std::string name : {"Manufacturer", "Model"}) {
    for (const std::string& empty : {"<" + name + "></" + name + ">", "<" + name + "/>"}) {
      EXPECT_THAT(ErrorOf(ParsePskc(file(empty + "<SerialNo>S1</SerialNo>"), plain)),
                  MatchesRegex("line [0-9]+: <" + name + "> is empty"));
    }
  }
  // An element or a comment where text belongs: refused too (libpskc would
  // read the first child's content, NULL for an element).
  for (const std::string inner : {"<ResponseFormat Length=\"6\"/>oath.test", "<!--x-->oath.test"}) {
    EXPECT_THAT(
        ErrorOf(ParsePskc(file("<Manufacturer>" + inner + "</Manufacturer><SerialNo>S1</SerialNo>"),
                          plain)),
        MatchesRegex("line [0-9]+: <Manufacturer> may hold text only"));
  }
  auto r = ParsePskc(file("<Manufacturer>oath.test</Manufacturer><SerialNo>S1</SerialNo>"), plain);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->at(0).serial, "S1");
}

// ---- CSV

constexpr char kHeader[] = "serial,secret_hex,type,digits,period_or_counter\n";

TEST(TokenCsvTest, ParsesHotpAndTotpLines) {
  const std::string csv = std::string(kHeader) +
                          "HW-1,3132333435363738393031323334353637383930,hotp,6,5\r\n"
                          "\n"
                          " HW-2 , 0102030405060708090A0B0C0D0E0F10 , TOTP , 8 , 60 \n";
  auto r = ParseTokenCsv(csv);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].serial, "HW-1");
  EXPECT_EQ((*r)[0].secret, FromText("12345678901234567890"));
  EXPECT_EQ((*r)[0].type, "hotp");
  EXPECT_EQ((*r)[0].digits, 6);
  EXPECT_EQ((*r)[0].counter, 5);
  EXPECT_EQ((*r)[0].algorithm, "SHA1");
  EXPECT_EQ((*r)[1].serial, "HW-2");
  EXPECT_EQ((*r)[1].secret, FromHex("0102030405060708090a0b0c0d0e0f10"));
  EXPECT_EQ((*r)[1].type, "totp");
  EXPECT_EQ((*r)[1].digits, 8);
  EXPECT_EQ((*r)[1].period, 60);
  EXPECT_EQ((*r)[1].counter, 0);
}

TEST(TokenCsvTest, ErrorsNameTheLine) {
  const std::string good = "HW-1,3132333435363738393031323334353637383930,hotp,6,0\n";
  struct Case {
    std::string line;
    std::string message;
  } cases[] = {
      {"HW-2,31323334353637383930,hotp,6,0", "line 3 (serial 'HW-2'): the seed is 10 bytes"},
      {"HW-2,zz323334353637383930313233343536,hotp,6,0", "line 3: secret_hex"},
      {"HW-2,313233343536373839303132333435363,hotp,6,0", "line 3: secret_hex"},
      {"HW-2,31323334353637383930313233343536,motp,6,0", "line 3: type"},
      {"HW-2,31323334353637383930313233343536,hotp,11,0", "line 3: digits"},
      {"HW-2,31323334353637383930313233343536,totp,6,10", "line 3: a totp period"},
      {"HW-2,31323334353637383930313233343536,hotp,6,-1", "line 3: a hotp counter"},
      {"HW-2,31323334353637383930313233343536,hotp,6", "line 3: 4 fields, want 5"},
      {"HW-1,31323334353637383930313233343536,hotp,6,0",
       "line 3: serial 'HW-1' is already on line 2"},
      {",31323334353637383930313233343536,hotp,6,0", "line 3: serial must be"},
  };
  for (const Case& c : cases) {
    auto r = ParseTokenCsv(std::string(kHeader) + good + c.line + "\n");
    EXPECT_THAT(ErrorOf(r), HasSubstr(c.message)) << c.line;
  }
}

TEST(TokenCsvTest, HeaderRequiredAndEmptyFilesRefused) {
  EXPECT_THAT(ErrorOf(ParseTokenCsv("")), HasSubstr("line 1: the header"));
  EXPECT_THAT(ErrorOf(ParseTokenCsv("serial,secret,type,digits,period\n")),
              HasSubstr("line 1: the header"));
  EXPECT_THAT(ErrorOf(ParseTokenCsv(kHeader)), HasSubstr("no tokens"));
  EXPECT_THAT(ErrorOf(ParseTokenCsv("HW-1,3132333435363738393031323334353637383930,hotp,6,0\n")),
              HasSubstr("line 1: the header"));
}

}  // namespace
}  // namespace otpd
