"""Black-box tests of the factors API (SPEC §4.2) over HTTP against the real otpd
binary: enrollment, activation, verification, replay refusal, concurrent
double-submit, deletion, restart, throttling and lockout, `otpctl user unlock`,
recovery codes, and the SQLite file holding no secret in clear.

Codes are computed by third-party implementations only, from the otpauth_uri the
API returns: `oathtool` (OATH Toolkit) and Python's `pyotp` (Debian's
python3-pyotp, run through /usr/bin/python3 because the `python3` running these
tests may be another interpreter). Neither missing is a skip: the test fails.

No test waits for a TOTP step to pass: activation uses the previous step's code
(inside the ±1 window), verification the current one, and the next check the
next step's. The only sleep is a guard of at most a few seconds when a step is
about to end, so that the codes computed and the server's clock agree.
"""

import base64
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

import otpd_harness as h
from test_verifications import OtpdTestCase

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-pyotp

PYOTP_SCRIPT = r"""
import sys, pyotp
otp = pyotp.parse_uri(sys.argv[1])
if sys.argv[2] == "now":
    print(otp.now())
else:
    print(otp.at(int(sys.argv[2])))
"""


def pyotp_code(uri, at="now"):
    """pyotp's code for `uri`: `pyotp.parse_uri(uri).now()`, or .at(N) (a unix time
    for TOTP, a counter for HOTP)."""
    if not os.path.exists(SYSTEM_PYTHON):
        raise AssertionError("%s is missing (pyotp needs Debian's python3-pyotp)" % SYSTEM_PYTHON)
    p = subprocess.run([SYSTEM_PYTHON, "-c", PYOTP_SCRIPT, uri, str(at)], capture_output=True,
                       text=True, timeout=20)
    if p.returncode != 0:
        raise AssertionError("pyotp failed (install python3-pyotp): %s" % p.stderr)
    return p.stdout.strip()


def uri_params(uri):
    parsed = urllib.parse.urlparse(uri)
    q = dict(urllib.parse.parse_qsl(parsed.query))
    return parsed.netloc, q  # netloc is the type: "totp" / "hotp"


def oathtool_code(uri, at=None, counter=None):
    """oathtool's code for the secret and parameters of `uri`."""
    kind, q = uri_params(uri)
    if shutil.which("oathtool") is None:
        raise AssertionError("oathtool is missing (Debian package oathtool)")
    args = ["oathtool", "-b", "-d", q.get("digits", "6")]
    if kind == "totp":
        args += ["--totp=" + q.get("algorithm", "SHA1").lower(), "-s", q.get("period", "30") + "s",
                 "-N", "@%d" % at]
    else:
        if q.get("algorithm", "SHA1") != "SHA1":
            raise AssertionError("oathtool's HOTP is SHA1 only")
        args += ["--hotp", "-c", str(counter)]
    args.append(q["secret"])
    return subprocess.run(args, capture_output=True, text=True, check=True,
                          timeout=10).stdout.strip()


def step_guard(period, margin=4.0):
    """Returns the current unix time once at least `margin` seconds remain in the
    current TOTP step (sleeping into the next step otherwise)."""
    now = time.time()
    into = now % period
    if into > period - margin:
        time.sleep(period - into + 0.05)
        now = time.time()
    return int(now)


class FactorTestCase(OtpdTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.app = cls.server.create_app("factors-" + cls.__name__)
        cls.key = cls.app["api_key"]

    def create(self, user, body, status=201):
        r = self.server.request("POST", "/v1/users/%s/factors" % user, body, key=self.key)
        self.assertEqual(r.status, status, r)
        return r.json

    def activate(self, user, fid, code):
        r = self.server.request("POST", "/v1/users/%s/factors/%s/activate" % (user, fid),
                                {"code": code}, key=self.key)
        self.assertEqual(r.status, 200, r)
        return r.json

    def verify(self, user, code, factor_id=None, key=None):
        body = {"code": code}
        if factor_id:
            body["factor_id"] = factor_id
        return self.server.request("POST", "/v1/users/%s/verify" % user, body,
                                   key=key or self.key)

    def verify_ok(self, user, code, **kw):
        r = self.verify(user, code, **kw)
        self.assertEqual(r.status, 200, r)
        return r.json

    def enroll_totp(self, user, body=None):
        """A TOTP factor, activated with the previous step's code; returns
        (factor, unix time of the step guard)."""
        f = self.create(user, dict({"type": "totp"}, **(body or {})))
        period = int(uri_params(f["otpauth_uri"])[1].get("period", "30"))
        t = step_guard(period)
        a = self.activate(user, f["id"], oathtool_code(f["otpauth_uri"], at=t - period))
        self.assertEqual(a, {"valid": True, "status": "active"})
        return f, t

    def db_rows(self, sql, *args):
        con = sqlite3.connect(self.server.db_path, timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()


class FactorLifecycleTest(FactorTestCase):
    def test_enroll_verify_replay_concurrency_restart_delete(self):
        s = self.server
        f = self.create("alice", {"type": "totp", "issuer": "Shop", "label": "alice"})
        self.assertEqual(f["status"], "unverified")
        uri = f["otpauth_uri"]
        self.assertTrue(uri.startswith("otpauth://totp/Shop:alice?secret=" + f["secret"]), uri)
        self.assertNotIn("=", f["secret"])  # base32 without padding (Key Uri Format)
        # The QR codes (SVG in the answer, PNG from its endpoint) decode to the exact URI.
        self.assertEqual(self.decode_qr_png(self.fetch_png("alice", f["id"])), uri)
        self.assertEqual(self.decode_qr_svg(f["qr_svg"]), uri)

        # Unverified: a right code does not verify yet.
        t = step_guard(30)
        self.assertEqual(self.verify_ok("alice", oathtool_code(uri, at=t)), {"valid": False})
        a = self.activate("alice", f["id"], oathtool_code(uri, at=t - 30))
        self.assertEqual(a, {"valid": True, "status": "active"})
        r = s.request("GET", "/v1/users/alice/factors/%s/qr.png" % f["id"], key=self.key)
        self.assertEqual(r.status, 404, r)  # the secret is not shown again

        code = oathtool_code(uri, at=t)
        v = self.verify_ok("alice", code)
        self.assertEqual(v, {"valid": True, "factor_id": f["id"], "type": "totp"})
        self.assertEqual(self.verify_ok("alice", code), {"valid": False})  # replay
        # The replay is in the audit table, without the code.
        replays = self.db_rows("SELECT subject, result, detail FROM audit WHERE "
                               "action = 'factor.replay' AND app_id = ?", self.app["app_id"])
        self.assertEqual(len(replays), 1, replays)
        self.assertEqual(replays[0][0], f["id"])
        self.assertNotIn(code, replays[0][2])

        # The list shows no secret.
        lst = s.request("GET", "/v1/users/alice/factors", key=self.key)
        self.assertEqual(lst.status, 200, lst)
        self.assertEqual([x["id"] for x in lst.json["factors"]], [f["id"]])
        self.assertNotIn(f["secret"], lst.body)

        # A HOTP factor too; then restart and find everything as it was.
        hf = self.create("alice", {"type": "hotp"})
        self.assertTrue(self.activate("alice", hf["id"],
                                      oathtool_code(hf["otpauth_uri"], counter=0))["valid"])
        self.assertTrue(self.verify_ok("alice",
                                       oathtool_code(hf["otpauth_uri"], counter=3))["valid"])
        codes = s.request("POST", "/v1/users/alice/recovery-codes", key=self.key)
        self.assertEqual(codes.status, 201, codes)

        self.assertEqual(s.stop(), 0)
        s.start()
        self.assertEqual(self.verify_ok("alice", code), {"valid": False})  # still a replay
        self.assertEqual(self.verify_ok("alice", oathtool_code(hf["otpauth_uri"], counter=3)),
                         {"valid": False})  # the counter survived
        v = self.verify_ok("alice", oathtool_code(hf["otpauth_uri"], counter=4))
        self.assertEqual(v, {"valid": True, "factor_id": hf["id"], "type": "hotp"})
        self.assertEqual(self.verify_ok("alice", codes.json["codes"][0]),
                         {"valid": True, "type": "recovery_code"})
        self.assertEqual(self.verify_ok("alice", codes.json["codes"][0]), {"valid": False})

        # Concurrent double-submit of the next step's code (no step past the current
        # one was accepted yet): exactly one valid:true.
        t = step_guard(30)
        nxt = oathtool_code(uri, at=t + 30)
        answers = []
        barrier = threading.Barrier(4)

        def submit():
            barrier.wait()
            answers.append(self.verify("alice", nxt))

        threads = [threading.Thread(target=submit) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.assertEqual([a.status for a in answers], [200] * 4, answers)
        self.assertEqual(sorted(a.json["valid"] for a in answers), [False, False, False, True])

        # Another app sees none of it.
        other = s.create_app("factors-other")["api_key"]
        r = s.request("GET", "/v1/users/alice/factors", key=other)
        self.assertEqual(r.json, {"factors": []})
        r = s.request("DELETE", "/v1/users/alice/factors/" + hf["id"], key=other)
        self.assertEqual(r.status, 404, r)
        self.assertEqual(self.verify_ok("alice", oathtool_code(hf["otpauth_uri"], counter=5),
                                        key=other), {"valid": False})

        # Delete takes effect at once: HOTP counter 5 (unused, in the look-ahead) now fails.
        d = s.request("DELETE", "/v1/users/alice/factors/" + hf["id"], key=self.key)
        self.assertEqual(d.status, 204, d)
        self.assertEqual(d.body, "")
        self.assertEqual(self.verify_ok("alice", oathtool_code(hf["otpauth_uri"], counter=5)),
                         {"valid": False})
        self.assertEqual(s.request("DELETE", "/v1/users/alice/factors/" + hf["id"],
                                   key=self.key).status, 404)
        self.assertEqual(s.request("DELETE", "/v1/users/alice/factors/" + f["id"],
                                   key=self.key).status, 204)
        lst = s.request("GET", "/v1/users/alice/factors", key=self.key)
        self.assertEqual(lst.json, {"factors": []})
        events = [e for (e,) in self.db_rows("SELECT type FROM events WHERE app_id = ? "
                                             "ORDER BY id", self.app["app_id"])]
        for want in ("factor.created", "factor.activated", "recovery_codes.issued",
                     "recovery_code.used", "factor.deleted"):
            self.assertIn(want, events)

    def fetch_png(self, user, fid):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            conn.request("GET", "/v1/users/%s/factors/%s/qr.png" % (user, fid),
                         headers={"Authorization": "Bearer " + self.key})
            r = conn.getresponse()
            body = r.read()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("Content-Type"), "image/png")
            return body
        finally:
            conn.close()

    def decode_qr_png(self, png):
        if shutil.which("zbarimg") is None:
            raise AssertionError("zbarimg is missing (Debian package zbar-tools)")
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "qr.png")
            with open(path, "wb") as fh:
                fh.write(png)
            p = subprocess.run(["zbarimg", "--raw", "-q", path], capture_output=True,
                               timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            return p.stdout.decode().rstrip("\n")

    def decode_qr_svg(self, svg):
        if shutil.which("rsvg-convert") is None:
            raise AssertionError("rsvg-convert is missing (Debian package librsvg2-bin)")
        p = subprocess.run(["rsvg-convert", "-w", "400", "-f", "png"], input=svg.encode(),
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return self.decode_qr_png(p.stdout)


class ThirdPartyCodesTest(FactorTestCase):
    """Codes from oathtool and pyotp, computed from the returned otpauth_uri, verify."""

    def test_totp_all_algorithms_and_digits(self):
        for alg in ("SHA1", "SHA256", "SHA512"):
            for digits in (6, 8):
                with self.subTest(alg=alg, digits=digits):
                    user = "u-%s-%d" % (alg.lower(), digits)
                    f = self.create(user, {"type": "totp", "algorithm": alg, "digits": digits})
                    uri = f["otpauth_uri"]
                    _, q = uri_params(uri)
                    self.assertEqual((q["algorithm"], q["digits"]), (alg, str(digits)))
                    secret = base64.b32decode(f["secret"] + "=" * (-len(f["secret"]) % 8))
                    self.assertEqual(len(secret), {"SHA1": 20, "SHA256": 32, "SHA512": 64}[alg])
                    t = step_guard(30)
                    # oathtool for the activation (previous step), pyotp.now() for the
                    # current step, oathtool again for the next.
                    self.assertEqual(pyotp_code(uri, t - 30), oathtool_code(uri, at=t - 30))
                    self.assertTrue(self.activate(user, f["id"],
                                                  oathtool_code(uri, at=t - 30))["valid"])
                    v = self.verify_ok(user, pyotp_code(uri, "now"))
                    self.assertEqual(v, {"valid": True, "factor_id": f["id"], "type": "totp"})
                    self.assertTrue(self.verify_ok(user, oathtool_code(uri, at=t + 30))["valid"])

    def test_totp_with_a_longer_period(self):
        f = self.create("u-period", {"type": "totp", "period": 60, "digits": 8})
        uri = f["otpauth_uri"]
        t = step_guard(60)
        self.assertTrue(self.activate("u-period", f["id"], pyotp_code(uri, t - 60))["valid"])
        self.assertTrue(self.verify_ok("u-period", oathtool_code(uri, at=t))["valid"])

    def test_totp_window_is_an_app_setting(self):
        name = "factors-" + type(self).__name__
        p = self.server.otpctl("app", "update", name, "--totp-window", "11", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("totp_window", p.stderr)
        out = json.loads(self.server.otpctl("app", "update", name, "--totp-window", "0").stdout)
        self.assertEqual(out["settings"]["totp_window"], 0)
        try:
            time.sleep(1.5)  # a running otpd re-reads an app within 1 s (AppService::kKeyCacheTtl)
            f = self.create("u-window", {"type": "totp"})
            uri = f["otpauth_uri"]
            t = step_guard(30)
            # ±0 steps: the previous step's code no longer activates, the current one does.
            self.assertFalse(self.activate("u-window", f["id"], oathtool_code(uri, at=t - 30))["valid"])
            self.assertTrue(self.activate("u-window", f["id"], oathtool_code(uri, at=t))["valid"])
            self.assertFalse(self.verify_ok("u-window", oathtool_code(uri, at=t + 30))["valid"])
        finally:
            self.server.otpctl("app", "update", name, "--totp-window", "1")
            time.sleep(1.5)

    def test_hotp_by_both_tools_and_look_ahead(self):
        f = self.create("u-hotp", {"type": "hotp", "digits": 8})
        uri = f["otpauth_uri"]
        self.assertEqual(pyotp_code(uri, 0), oathtool_code(uri, counter=0))
        self.assertTrue(self.activate("u-hotp", f["id"], pyotp_code(uri, 0))["valid"])
        # Next expected: 1. Look-ahead 10: counter 11 is accepted, 23 (> 12 + 10) is not.
        self.assertTrue(self.verify_ok("u-hotp", oathtool_code(uri, counter=11))["valid"])
        self.assertFalse(self.verify_ok("u-hotp", pyotp_code(uri, 23))["valid"])
        self.assertTrue(self.verify_ok("u-hotp", pyotp_code(uri, 12))["valid"])
        # Resync with two consecutive codes within the next 100 counters.
        r = self.server.request("POST", "/v1/users/u-hotp/factors/%s/resync" % f["id"],
                                {"code1": oathtool_code(uri, counter=80),
                                 "code2": pyotp_code(uri, 81)}, key=self.key)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"valid": True, "status": "active"})
        self.assertFalse(self.verify_ok("u-hotp", pyotp_code(uri, 81))["valid"])
        self.assertTrue(self.verify_ok("u-hotp", pyotp_code(uri, 82))["valid"])


class ThrottleTest(FactorTestCase):
    def test_throttled_then_locked_then_unlocked_by_otpctl(self):
        f, t = self.enroll_totp("mallory")
        uri = f["otpauth_uri"]
        for _ in range(5):
            self.assertEqual(self.verify_ok("mallory", "000000000"), {"valid": False})
        # The 6th attempt, even with a right code: 429 with Retry-After.
        r = self.verify("mallory", oathtool_code(uri, at=t))
        self.assertProblem(r, 429, "user_throttled")
        self.assertIn(int(r.header("Retry-After")), (29, 30), r.headers)

        # The store holds the count: bring it to 99 failures with the delay over
        # (what 94 more failures and a few hours would do), then one failure locks.
        con = sqlite3.connect(self.server.db_path, timeout=10)
        with con:
            con.execute("UPDATE user_throttles SET failures = 99, blocked_until = NULL "
                        "WHERE app_id = ? AND user_id = ?", (self.app["app_id"], "mallory"))
        con.close()
        self.assertEqual(self.verify_ok("mallory", "000000000"), {"valid": False})
        t = step_guard(30)
        self.assertProblem(self.verify("mallory", oathtool_code(uri, at=t)), 423, "factor_locked")
        r = self.server.request("POST", "/v1/users/mallory/factors/%s/resync" % f["id"],
                                {"code1": "1", "code2": "2"}, key=self.key)
        self.assertProblem(r, 423, "factor_locked")
        locked = self.db_rows("SELECT COUNT(*) FROM events WHERE type = 'factor.locked' "
                              "AND app_id = ?", self.app["app_id"])
        self.assertEqual(locked[0][0], 1)

        # Another user of the app is not affected.
        self.assertEqual(self.verify_ok("trent", "000000"), {"valid": False})

        out = json.loads(self.server.otpctl("user", "unlock", "factors-ThrottleTest",
                                            "mallory").stdout)
        self.assertEqual(out["was_locked"], True)
        self.assertEqual(out["unlocked"], True)
        v = self.verify_ok("mallory", oathtool_code(uri, at=t))
        self.assertEqual(v, {"valid": True, "factor_id": f["id"], "type": "totp"})
        p = self.server.otpctl("user", "unlock", "no-such-app", "mallory", check=False)
        self.assertNotEqual(p.returncode, 0)
        audit = self.db_rows("SELECT actor, result FROM audit WHERE action = 'user.unlock'")
        self.assertIn(("otpctl", "unlocked"), audit)


class NoSecretInClearTest(FactorTestCase):
    def test_database_file_holds_no_secret_or_recovery_code(self):
        needles = []
        for alg in ("SHA1", "SHA512"):
            f = self.create("carol", {"type": "totp", "algorithm": alg})
            padded = f["secret"] + "=" * (-len(f["secret"]) % 8)
            raw = base64.b32decode(padded)
            needles += [f["secret"].encode(), f["secret"].lower().encode(), raw,
                        raw.hex().encode(), raw.hex().upper().encode()]
        hf = self.create("carol", {"type": "hotp"})
        needles.append(hf["secret"].encode())
        r = self.server.request("POST", "/v1/users/carol/recovery-codes", key=self.key)
        self.assertEqual(r.status, 201, r)
        codes = r.json["codes"]
        self.assertEqual(len(codes), 10)
        self.assertEqual(len(set(codes)), 10)
        for c in codes:
            self.assertRegex(c, r"^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$")
            needles += [c.encode(), c.replace("-", "").encode(),
                        c.replace("-", "").upper().encode()]
        # A recovery code works typed in capitals without dashes (then never again).
        self.assertEqual(self.verify_ok("carol", codes[3].replace("-", "").upper()),
                         {"valid": True, "type": "recovery_code"})
        self.assertEqual(self.verify_ok("carol", codes[3]), {"valid": False})

        def check_files():
            blobs = {}
            for suffix in ("", "-wal"):
                path = self.server.db_path + suffix
                if os.path.exists(path):
                    with open(path, "rb") as fh:
                        blobs[path] = fh.read()
            self.assertIn(self.server.db_path, blobs)
            for path, data in blobs.items():
                for n in needles:
                    self.assertNotIn(n, data, "%r found in %s" % (n[:40], path))

        check_files()  # while running (the WAL holds the recent writes)
        self.assertEqual(self.server.stop(), 0)
        check_files()  # and after the checkpoint on close
        self.server.start()


if __name__ == "__main__":
    unittest.main()
