"""Black-box tests of hardware tokens (SPEC §4.2) through the real otpctl and otpd:
`otpctl token import --pskc|--csv`, `token list [--unassigned]`, `token revoke`, and
binding an imported token to a user over HTTP, its codes computed by oathtool.

The PSKC files are written here in the style of RFC 6030's figures; their
encrypted parts are made by the `openssl enc` command and Python's hashlib/hmac,
never by otpd's code. Every refused file must leave the inventory unchanged."""

import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import subprocess
import time
import unittest

from otpd_harness import OtpdServer

NS = ('xmlns="urn:ietf:params:xml:ns:keyprov:pskc" '
      'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
      'xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" '
      'xmlns:xenc11="http://www.w3.org/2009/xmlenc11#" '
      'xmlns:pkcs5="http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#"')
AES128 = "http://www.w3.org/2001/04/xmlenc#aes128-cbc"


def aes128_cbc(key, plain):
    """IV || AES-128-CBC(plain), PKCS#7 padded, by the openssl command line."""
    iv = secrets.token_bytes(16)
    out = subprocess.run(["openssl", "enc", "-aes-128-cbc", "-K", key.hex(), "-iv", iv.hex()],
                         input=plain, capture_output=True, check=True, timeout=10).stdout
    return iv + out


def b64(data):
    return base64.b64encode(data).decode()


def cipher_xml(cipher):
    return ('<xenc:EncryptionMethod Algorithm="%s"/><xenc:CipherData><xenc:CipherValue>%s'
            '</xenc:CipherValue></xenc:CipherData>' % (AES128, b64(cipher)))


class Token:
    def __init__(self, serial, kind="hotp", secret=None, digits=6, period=None, counter=None):
        self.serial = serial
        self.kind = kind
        self.secret = secret if secret is not None else secrets.token_bytes(20)
        self.digits = digits
        self.period = period
        self.counter = counter

    def package(self, secret_xml):
        data = secret_xml
        if self.counter is not None:
            data += "<Counter><PlainValue>%d</PlainValue></Counter>" % self.counter
        if self.period is not None:
            data += "<TimeInterval><PlainValue>%d</PlainValue></TimeInterval>" % self.period
        return ('<KeyPackage><DeviceInfo><Manufacturer>oath.test</Manufacturer>'
                '<SerialNo>%s</SerialNo></DeviceInfo>'
                '<Key Id="id-%s" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:%s">'
                '<Issuer>Acme</Issuer><AlgorithmParameters><ResponseFormat Length="%d" '
                'Encoding="DECIMAL"/></AlgorithmParameters><Data>%s</Data></Key></KeyPackage>\n'
                % (self.serial, self.serial, self.kind, self.digits, data))


def plain_pskc(tokens):
    body = "".join(t.package("<Secret><PlainValue>%s</PlainValue></Secret>" % b64(t.secret))
                   for t in tokens)
    return '<?xml version="1.0"?>\n<KeyContainer Version="1.0" %s>\n%s</KeyContainer>\n' % (
        NS, body)


def encrypted_pskc(tokens, enc_key, encryption_key_xml, bad_mac_serial=None):
    """Figure 6/7 style: secrets under enc_key, each with an HMAC-SHA1 ValueMAC."""
    mac_key = secrets.token_bytes(20)
    head = ('<EncryptionKey>%s</EncryptionKey>\n'
            '<MACMethod Algorithm="http://www.w3.org/2000/09/xmldsig#hmac-sha1"><MACKey>%s'
            '</MACKey></MACMethod>\n' % (encryption_key_xml, cipher_xml(aes128_cbc(enc_key,
                                                                                   mac_key))))
    body = ""
    for t in tokens:
        cipher = aes128_cbc(enc_key, t.secret)
        mac = hmac.new(mac_key, cipher, hashlib.sha1).digest()
        if t.serial == bad_mac_serial:
            mac = hmac.new(mac_key, cipher + b"x", hashlib.sha1).digest()
        body += t.package('<Secret><EncryptedValue>%s</EncryptedValue><ValueMAC>%s</ValueMAC>'
                          '</Secret>' % (cipher_xml(cipher), b64(mac)))
    return '<?xml version="1.0"?>\n<KeyContainer Version="1.0" %s>\n%s%s</KeyContainer>\n' % (
        NS, head, body)


PRE_SHARED = "<ds:KeyName>Pre-shared-key</ds:KeyName>"


def pbkdf2_xml(salt, iterations):
    return ('<xenc11:DerivedKey><xenc11:KeyDerivationMethod '
            'Algorithm="http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#pbkdf2">'
            '<pkcs5:PBKDF2-params><Salt><Specified>%s</Specified></Salt>'
            '<IterationCount>%d</IterationCount><KeyLength>16</KeyLength><PRF/>'
            '</pkcs5:PBKDF2-params></xenc11:KeyDerivationMethod></xenc11:DerivedKey>'
            % (b64(salt), iterations))


class TokenImportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = OtpdServer()
        cls.server.start()
        cls.serial_no = 0

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.server.cleanup()

    # -- helpers ---------------------------------------------------------------

    def serial(self, prefix="SN"):
        TokenImportTest.serial_no += 1
        return "%s-%s-%04d" % (prefix, self._testMethodName[5:13], TokenImportTest.serial_no)

    def write(self, name, text):
        path = os.path.join(self.server.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def otpctl(self, *args):
        return self.server.otpctl(*args, check=False)

    def import_ok(self, *args):
        p = self.otpctl("token", "import", *args)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def import_refused(self, *args):
        before = self.listed()
        p = self.otpctl("token", "import", *args)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertEqual(p.stdout, "")
        self.assertTrue(p.stderr.startswith("otpctl: "), p.stderr)
        self.assertEqual(self.listed(), before, "a refused file changed the inventory")
        return p.stderr

    def listed(self, *flags):
        p = self.otpctl("token", "list", *flags)
        self.assertEqual(p.returncode, 0, p.stderr)
        return {t["serial"]: t for t in json.loads(p.stdout)}

    def assert_no_secret_in(self, text, tokens):
        for t in tokens:
            for form in (t.secret.hex(), t.secret.hex().upper(), b64(t.secret),
                         base64.b32encode(t.secret).decode().rstrip("=")):
                self.assertNotIn(form, text)

    # -- PSKC ------------------------------------------------------------------

    def test_pre_shared_key_file(self):
        key = secrets.token_bytes(16)
        tokens = [Token(self.serial(), "hotp", counter=7),
                  Token(self.serial(), "totp", secrets.token_bytes(32), digits=8, period=60)]
        path = self.write("psk.pskc", encrypted_pskc(tokens, key, PRE_SHARED))
        self.assertIn("--key", self.import_refused("--pskc", path))
        self.assertIn("wrong key or password",
                      self.import_refused("--pskc", path, "--key", secrets.token_hex(16)))
        self.assertEqual(self.import_ok("--pskc", path, "--key", key.hex()), {"imported": 2})
        listed = self.listed()
        self.assertEqual(listed[tokens[0].serial]["type"], "hotp")
        self.assertEqual(listed[tokens[0].serial]["digits"], 6)
        self.assertEqual(listed[tokens[1].serial]["type"], "totp")
        self.assertEqual(listed[tokens[1].serial]["digits"], 8)
        self.assertEqual(listed[tokens[1].serial]["period"], 60)
        for t in tokens:
            self.assertIsNone(listed[t.serial]["user_id"])
            self.assertFalse(listed[t.serial]["revoked"])
        self.assert_no_secret_in(self.otpctl("token", "list").stdout, tokens)
        # The same file again: every serial is known, nothing changes.
        self.assertIn(tokens[0].serial,
                      self.import_refused("--pskc", path, "--key", key.hex()))

    def test_pbkdf2_file(self):
        salt = secrets.token_bytes(8)
        key = hashlib.pbkdf2_hmac("sha1", b"tr0ub4dor&3", salt, 1000, 16)
        tokens = [Token(self.serial()), Token(self.serial(), "totp")]
        path = self.write("pw.pskc", encrypted_pskc(tokens, key, pbkdf2_xml(salt, 1000)))
        self.assertIn("--password", self.import_refused("--pskc", path))
        self.assertIn("wrong key or password",
                      self.import_refused("--pskc", path, "--password", "tr0ub4dor&4"))
        self.assertEqual(self.import_ok("--pskc", path, "--password", "tr0ub4dor&3"),
                         {"imported": 2})
        listed = self.listed()
        self.assertEqual(listed[tokens[1].serial]["period"], 30)

    def test_plaintext_needs_the_flag(self):
        tokens = [Token(self.serial()), Token(self.serial(), "totp", digits=7)]
        path = self.write("plain.pskc", plain_pskc(tokens))
        self.assertIn("--allow-plaintext", self.import_refused("--pskc", path))
        self.assertEqual(self.import_ok("--pskc", path, "--allow-plaintext"), {"imported": 2})
        self.assertEqual(self.listed()[tokens[1].serial]["digits"], 7)

    def test_wrong_mac_imports_nothing(self):
        key = secrets.token_bytes(16)
        tokens = [Token(self.serial()) for _ in range(3)]
        path = self.write("badmac.pskc",
                          encrypted_pskc(tokens, key, PRE_SHARED, bad_mac_serial=tokens[1].serial))
        err = self.import_refused("--pskc", path, "--key", key.hex())
        self.assertIn("key '%s': ValueMAC does not match" % tokens[1].serial, err)
        listed = self.listed()
        for t in tokens:
            self.assertNotIn(t.serial, listed)

    def test_short_seed_refused_naming_the_key(self):
        key = secrets.token_bytes(16)
        short = Token(self.serial("SHORT"), secret=secrets.token_bytes(15))
        tokens = [Token(self.serial()), short]
        path = self.write("short.pskc", encrypted_pskc(tokens, key, PRE_SHARED))
        err = self.import_refused("--pskc", path, "--key", key.hex())
        self.assertIn("key '%s'" % short.serial, err)
        self.assertIn("15 bytes", err)
        path = self.write("short-plain.pskc", plain_pskc(tokens))
        self.assertIn(short.serial, self.import_refused("--pskc", path, "--allow-plaintext"))

    def test_usage_errors(self):
        self.assertIn("--pskc FILE or --csv FILE", self.import_refused())
        self.assertIn("cannot read", self.import_refused("--csv", "/nonexistent/x.csv"))
        self.assertIn("32 hex digits", self.import_refused("--pskc", "/dev/null", "--key", "abcd"))

    # -- CSV -------------------------------------------------------------------

    def test_csv(self):
        a, b = self.serial("CSV"), self.serial("CSV")
        secret_a, secret_b = secrets.token_bytes(20), secrets.token_bytes(32)
        path = self.write("tokens.csv",
                          "serial,secret_hex,type,digits,period_or_counter\n"
                          "%s,%s,hotp,6,12\n%s,%s,totp,8,60\n"
                          % (a, secret_a.hex(), b, secret_b.hex()))
        self.assertEqual(self.import_ok("--csv", path), {"imported": 2})
        listed = self.listed()
        self.assertEqual((listed[a]["type"], listed[a]["digits"]), ("hotp", 6))
        self.assertEqual((listed[b]["type"], listed[b]["digits"], listed[b]["period"]),
                         ("totp", 8, 60))
        # A file with one new token and one known serial imports neither.
        c = self.serial("CSV")
        path = self.write("again.csv",
                          "serial,secret_hex,type,digits,period_or_counter\n"
                          "%s,%s,hotp,6,0\n%s,%s,hotp,6,0\n"
                          % (c, secrets.token_hex(20), a, secrets.token_hex(20)))
        self.assertIn(a, self.import_refused("--csv", path))
        self.assertNotIn(c, self.listed())
        # Errors name the line.
        path = self.write("bad.csv",
                          "serial,secret_hex,type,digits,period_or_counter\n"
                          "%s,%s,hotp,6,0\n%s,00112233,hotp,6,0\n"
                          % (self.serial("CSV"), secrets.token_hex(20), self.serial("CSV")))
        err = self.import_refused("--csv", path)
        self.assertIn("line 3", err)
        self.assertIn("4 bytes", err)

    # -- list, revoke ------------------------------------------------------------

    def test_list_unassigned_and_revoke(self):
        a, b = self.serial("REV"), self.serial("REV")
        path = self.write("rev.csv",
                          "serial,secret_hex,type,digits,period_or_counter\n"
                          "%s,%s,hotp,6,0\n%s,%s,totp,6,30\n"
                          % (a, secrets.token_hex(20), b, secrets.token_hex(20)))
        self.import_ok("--csv", path)
        self.assertIn(a, self.listed("--unassigned"))
        p = self.otpctl("token", "revoke", a)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout), {"serial": a, "revoked": True})
        listed = self.listed()
        self.assertTrue(listed[a]["revoked"])
        self.assertIn("revoked_at", listed[a])
        self.assertFalse(listed[b]["revoked"])
        p = self.otpctl("token", "revoke", "NO-SUCH-SERIAL")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no token 'NO-SUCH-SERIAL'", p.stderr)

    def test_database_holds_no_secret_in_clear(self):
        tokens = [Token(self.serial("DB")), Token(self.serial("DB"), "totp")]
        path = self.write("db.pskc", plain_pskc(tokens))
        self.import_ok("--pskc", path, "--allow-plaintext")
        raw = b""
        for suffix in ("", "-wal"):
            if os.path.exists(self.server.db_path + suffix):
                with open(self.server.db_path + suffix, "rb") as f:
                    raw += f.read()
        self.assertGreater(len(raw), 0)
        for t in tokens:
            self.assertIn(t.serial.encode(), raw)  # the rows are there ...
            for form in (t.secret, t.secret.hex().encode(), b64(t.secret).encode(),
                         base64.b32encode(t.secret).rstrip(b"=")):
                self.assertNotIn(form, raw)  # ... their secrets are not


def oathtool(*args):
    if shutil.which("oathtool") is None:
        raise AssertionError("oathtool is missing (Debian package oathtool)")
    return subprocess.run(["oathtool"] + list(args), capture_output=True, text=True,
                          check=True, timeout=10).stdout.strip()


class TokenBindingTest(unittest.TestCase):
    """Imported tokens bound to users over HTTP (POST /v1/users/{user}/factors with
    a serial), their codes computed by oathtool from the seed in the file."""

    @classmethod
    def setUpClass(cls):
        cls.server = OtpdServer()
        cls.server.start()
        cls.key = cls.server.create_app("tokens")["api_key"]
        cls.hotp_serial, cls.totp_serial = "BIND-HOTP-1", "BIND-TOTP-1"
        cls.hotp_secret = secrets.token_bytes(20)
        cls.totp_secret = secrets.token_bytes(20)
        key = secrets.token_bytes(16)
        path = os.path.join(cls.server.dir, "bind.pskc")
        with open(path, "w") as f:
            f.write(encrypted_pskc(
                [Token(cls.hotp_serial, "hotp", cls.hotp_secret, digits=8, counter=12),
                 Token(cls.totp_serial, "totp", cls.totp_secret, digits=6, period=60)],
                key, PRE_SHARED))
        p = cls.server.otpctl("token", "import", "--pskc", path, "--key", key.hex())
        assert json.loads(p.stdout) == {"imported": 2}, p.stdout

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.server.cleanup()

    def post(self, path, body):
        return self.server.request("POST", path, body, key=self.key)

    def listed(self, *flags):
        return {t["serial"]: t for t in json.loads(
            self.server.otpctl("token", "list", *flags).stdout)}

    def test_hotp_token_bound_activated_verified_then_revoked(self):
        r = self.post("/v1/users/alice/factors", {"type": "hotp", "serial": self.hotp_serial})
        self.assertEqual(r.status, 201, r.body)
        factor = r.json
        self.assertEqual((factor["type"], factor["status"], factor["serial"], factor["digits"]),
                         ("hotp", "unverified", self.hotp_serial, 8))
        for field in ("secret", "otpauth_uri", "qr_svg"):
            self.assertNotIn(field, factor)
        self.assertNotIn(self.hotp_secret.hex(), r.body)

        # The token's counter starts at the file's <Counter> (12).
        code = oathtool("--hotp", "-d", "8", "-c", "12", self.hotp_secret.hex())
        r = self.post("/v1/users/alice/factors/%s/activate" % factor["id"], {"code": code})
        self.assertEqual(r.json, {"valid": True, "status": "active"}, r.body)
        code = oathtool("--hotp", "-d", "8", "-c", "13", self.hotp_secret.hex())
        r = self.post("/v1/users/alice/verify", {"code": code})
        self.assertTrue(r.json["valid"], r.body)
        self.assertEqual(r.json["factor_id"], factor["id"])

        listed = self.listed()[self.hotp_serial]
        self.assertEqual((listed["user_id"], listed["factor_id"]), ("alice", factor["id"]))
        self.assertNotIn(self.hotp_serial, self.listed("--unassigned"))

        # One user at a time.
        r = self.post("/v1/users/bob/factors", {"type": "hotp", "serial": self.hotp_serial})
        self.assertEqual(r.status, 400, r.body)
        self.assertIn("serial", r.body)

        # Revoking the token deletes its factor: its codes no longer verify.
        self.server.otpctl("token", "revoke", self.hotp_serial)
        code = oathtool("--hotp", "-d", "8", "-c", "14", self.hotp_secret.hex())
        r = self.post("/v1/users/alice/verify", {"code": code})
        self.assertFalse(r.json["valid"], r.body)
        r = self.server.request("GET", "/v1/users/alice/factors", key=self.key)
        self.assertEqual(r.json["factors"], [])
        r = self.post("/v1/users/carol/factors", {"type": "hotp", "serial": self.hotp_serial})
        self.assertEqual(r.status, 400, r.body)

    def test_totp_token_bound_and_activated_with_its_own_step(self):
        r = self.post("/v1/users/dave/factors", {"type": "totp", "serial": self.totp_serial})
        self.assertEqual(r.status, 201, r.body)
        factor = r.json
        self.assertEqual((factor["period"], factor["digits"]), (60, 6))
        # Not near the end of a 60 s step, so the code and the server agree on it.
        if 60 - time.time() % 60 < 3:
            time.sleep(60 - time.time() % 60 + 0.5)
        code = oathtool("--totp", "-s", "60s", "-N", "@%d" % int(time.time()),
                        self.totp_secret.hex())
        r = self.post("/v1/users/dave/factors/%s/activate" % factor["id"], {"code": code})
        self.assertEqual(r.json, {"valid": True, "status": "active"}, r.body)
        # A serial that was never imported.
        r = self.post("/v1/users/dave/factors", {"type": "totp", "serial": "NEVER-IMPORTED"})
        self.assertEqual(r.status, 400, r.body)


if __name__ == "__main__":
    unittest.main()
