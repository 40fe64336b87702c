"""Black-box tests of the real otpctl binary: apps, keys, migrate, and codes
checked against oathtool (an implementation that is not ours)."""

import base64
import json
import os
import random
import subprocess
import tempfile
import unittest

from otpd_harness import OTPCTL_BIN


def run(*args, config=None, check=True):
    cmd = [OTPCTL_BIN] + (["--config", config] if config else []) + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (cmd, p.returncode, p.stderr))
    return p


def oathtool(*args):
    return subprocess.run(["oathtool"] + list(args), capture_output=True, text=True,
                          check=True, timeout=10).stdout.strip()


class CodeCommandTest(unittest.TestCase):
    def test_hotp_and_totp_match_oathtool(self):
        rng = random.Random(20261126)
        for _ in range(20):
            secret = bytes(rng.randrange(256) for _ in range(20))
            b32 = base64.b32encode(secret).decode().rstrip("=")
            counter = rng.randrange(0, 2**32)
            self.assertEqual(
                run("code", "hotp", "--secret", b32, "--counter", str(counter)).stdout.strip(),
                oathtool("--hotp", "-c", str(counter), secret.hex()))
            for alg, digits, t in (("SHA1", 6, rng.randrange(0, 2**31)),
                                   ("SHA256", 8, 20000000000),
                                   ("SHA512", 8, rng.randrange(0, 2**33))):
                ours = run("code", "totp", "--secret", b32, "--time", str(t), "--digits",
                           str(digits), "--algorithm", alg).stdout.strip()
                theirs = oathtool("--totp=" + alg.lower(), "-d", str(digits), "-N", "@%d" % t,
                                  secret.hex())
                self.assertEqual(ours, theirs, (alg, digits, t))

    def test_bad_input_is_refused(self):
        p = run("code", "totp", "--secret", "not base32!", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("base32", p.stderr)
        p = run("code", "hotp", "--secret", "GEZDGNBV", "--counter", "1", "--digits", "5",
                check=False)
        self.assertNotEqual(p.returncode, 0)


class AdminCommandsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.config = os.path.join(self.tmp.name, "otpd.toml")
        with open(self.config, "w") as f:
            f.write('[store]\nurl = "sqlite://%s/otpd.db"\n' % self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_migrate_app_and_key_lifecycle(self):
        self.assertEqual(json.loads(run("migrate", config=self.config).stdout), {"migrated": True})
        created = json.loads(run("app", "create", "shop", "--workflow", "sms:30,email",
                                 "--code-length", "8", "--ttl", "300",
                                 config=self.config).stdout)
        self.assertEqual(set(created), {"app_id", "api_key", "webhook_secret"})
        self.assertTrue(created["app_id"].startswith("app_"))
        self.assertGreaterEqual(len(created["api_key"]), 43)  # >= 256 bits
        self.assertTrue(created["webhook_secret"].startswith("whsec_"))
        self.assertGreaterEqual(len(base64.b64decode(created["webhook_secret"][6:])), 24)

        shown = json.loads(run("app", "show", "shop", config=self.config).stdout)
        self.assertEqual(shown["app_id"], created["app_id"])
        self.assertEqual(shown["workflow"], [{"channel": "sms", "timeout_s": 30},
                                             {"channel": "email", "timeout_s": 60}])
        self.assertEqual(shown["settings"]["code_length"], 8)
        listing = run("app", "list", config=self.config).stdout
        self.assertNotIn(created["api_key"], listing)  # keys are shown once only
        self.assertNotIn(created["webhook_secret"], listing)

        updated = json.loads(run("app", "update", created["app_id"], "--ttl", "900",
                                 "--max-checks", "3", config=self.config).stdout)
        self.assertEqual(updated["settings"]["ttl_s"], 900)
        self.assertEqual(updated["settings"]["max_checks"], 3)

        key = json.loads(run("key", "create", "shop", config=self.config).stdout)
        self.assertTrue(key["key_id"].startswith("key_"))
        self.assertEqual(json.loads(run("key", "revoke", key["key_id"], config=self.config).stdout),
                         {"key_id": key["key_id"], "revoked": True})

        with open(os.path.join(self.tmp.name, "otpd.db"), "rb") as db:
            data = db.read()
        self.assertNotIn(created["api_key"].encode(), data)  # only its SHA-256 is stored

    def test_errors_are_clear_and_change_nothing(self):
        run("app", "create", "shop", config=self.config)
        p = run("app", "create", "shop", config=self.config, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("already exists", p.stderr)
        p = run("app", "create", "x", "--workflow", "fax:10", config=self.config, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("fax", p.stderr)
        p = run("app", "create", "y", "--code-length", "3", config=self.config, check=False)
        self.assertEqual(p.returncode, 1)
        p = subprocess.run([OTPCTL_BIN, "--config", self.config, "app", "create",
                            b"bad\xff\xfename"], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"UTF-8", p.stderr)
        p = run("app", "update", "shop", "--name", "tab\there", config=self.config, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(len(json.loads(run("app", "list", config=self.config).stdout)), 1)
        p = run("key", "revoke", "key_nope", config=self.config, check=False)
        self.assertEqual(p.returncode, 1)
        p = run("app", "show", "nope", config=self.config, check=False)
        self.assertEqual(p.returncode, 1)
        p = run("frobnicate", config=self.config, check=False)
        self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    unittest.main()
