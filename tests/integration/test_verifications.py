"""Black-box integration tests of otpd's verification API (SPEC §2–§4.1, §7;
SECURITY.md 1–6, 20, 23, 31).

Run: OTPD_BIN=... OTPCTL_BIN=... python3 -m unittest -v test_verifications
(without the variables the binaries are taken from build/dev/apps/).
Set OTPD_KEEP_TMP=1 to keep each server's temporary directory.
"""

import datetime
import json
import re
import sys
import threading
import time
import unittest

import otpd_harness as h

PROBLEM = "application/problem+json"


def parse_time(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


class OtpdTestCase(unittest.TestCase):
    """One otpd per test class; its stderr is printed when a test fails."""

    server = None

    @classmethod
    def setUpClass(cls):
        cls.server = h.OtpdServer()
        try:
            cls.server.start()
        except Exception:
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        server = cls.server
        rc = server.stop()
        try:
            if rc != 0:
                raise AssertionError("otpd exited with %r on SIGTERM, want 0\n--- stderr ---\n%s"
                                     % (rc, server.stderr()[-4000:]))
        finally:
            server.cleanup()

    def setUp(self):
        self._stderr_mark = len(self.server.stderr())

    def tearDown(self):
        if self._failed():
            sys.stderr.write("\n--- otpd stderr during %s ---\n%s\n--- end ---\n"
                             % (self.id(), self.server.stderr()[self._stderr_mark:][-6000:]))

    def _failed(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result is None:
            return outcome is not None and not outcome.success
        return any(test is self for test, _ in list(result.failures) + list(result.errors))

    # -- assertions shared by the tests ---------------------------------------

    def assertProblem(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.content_type, PROBLEM, r)
        body = r.json
        self.assertEqual(body.get("code"), code, r)
        for field in ("type", "title", "status", "code", "detail"):
            self.assertIn(field, body, r)
        return body

    def assertNotPending(self, r, status):
        body = self.assertProblem(r, 409, "verification_not_pending")
        self.assertEqual(body.get("status"), status, r)

    def start_ok(self, key, body, headers=None):
        r = self.server.start_verification(key, body, headers)
        self.assertEqual(r.status, 201, r)
        return r.json


class VerificationApiTest(OtpdTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.app = cls.server.create_app("main")
            cls.key = cls.app["api_key"]
            cls.fast = cls.server.create_app("fast-resend", "--resend-cooldown", "1")
            cls.other = cls.server.create_app("other")
        except Exception:
            cls.server.cleanup()
            raise

    # 1 ---------------------------------------------------------------------------
    def test_start_returns_verification_and_sends_code(self):
        r = self.server.start_verification(self.key, {"to": "+30 691 234 5678"})
        self.assertEqual(r.status, 201, r)
        self.assertTrue(r.content_type == "application/json", r.headers)
        v = r.json
        self.assertRegex(v["id"], r"^ver_[A-Za-z0-9_]+$")
        self.assertEqual(v["status"], "pending")
        self.assertEqual(v["to"], "+306912345678")
        self.assertEqual(v["channel"], "sms")
        self.assertEqual(v["send_count"], 1)
        self.assertEqual(v["check_count"], 0)
        self.assertEqual(v["max_checks"], 5)
        self.assertEqual(v["metadata"], {})
        self.assertEqual(v["locale"], "el")  # from the number's region (SPEC §4.1)
        self.assertIsInstance(v["workflow"], list)
        self.assertEqual(v["workflow"][0]["channel"], "sms")
        self.assertIsInstance(v["deliveries"], list)
        self.assertEqual(len(v["deliveries"]), 1)
        self.assertEqual(v["deliveries"][0]["channel"], "sms")
        created = parse_time(v["created_at"])
        expires = parse_time(v["expires_at"])
        parse_time(v["updated_at"])
        self.assertTrue(v["expires_at"].endswith("Z"), v["expires_at"])
        # Default TTL 600 s (SPEC §4.1, SECURITY.md 2: at most 10 minutes).
        self.assertAlmostEqual((expires - created).total_seconds(), 600, delta=1)

        m = self.server.wait_messages(v["id"])[0]
        self.assertEqual(m["to"], "+306912345678")
        self.assertEqual(m["channel"], "sms")
        self.assertEqual(m["provider"], h.PROVIDER_NAME)
        self.assertRegex(m["code"], r"^[0-9]{6}$")
        self.assertIn(m["code"], m["text"])
        self.assertEqual(m["verification_id"], v["id"])
        self.assertEqual(m["locale"], "el")

        deadline = time.monotonic() + 5
        while True:
            g = self.server.get(self.key, v["id"])
            self.assertEqual(g.status, 200, g)
            d = g.json["deliveries"]
            if d and d[0]["status"] == "sent" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        got = g.json
        self.assertEqual(got["id"], v["id"])
        self.assertEqual(got["to"], "+306912345678")
        self.assertEqual(got["status"], "pending")
        self.assertEqual(len(got["deliveries"]), 1, got)
        self.assertEqual(got["deliveries"][0]["status"], "sent", got)
        self.assertEqual(got["deliveries"][0]["provider"], h.PROVIDER_NAME, got)
        self.assertEqual(got["deliveries"][0]["channel"], "sms", got)

    def test_start_with_ttl_and_code_length(self):
        v = self.start_ok(self.key, {"to": h.next_phone(), "ttl_s": 60, "code_length": 8,
                                     "metadata": {"order": "A-1"}})
        self.assertAlmostEqual((parse_time(v["expires_at"]) -
                                parse_time(v["created_at"])).total_seconds(), 60, delta=1)
        self.assertEqual(v["metadata"], {"order": "A-1"})
        self.assertRegex(self.server.wait_code(v["id"]), r"^[0-9]{8}$")

    # 2 ---------------------------------------------------------------------------
    def test_wrong_then_right_code_then_single_use(self):
        v = self.start_ok(self.key, {"to": h.next_phone()})
        code = self.server.wait_code(v["id"])

        r = self.server.check(self.key, v["id"], h.wrong_code(code))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"id": v["id"], "status": "pending", "valid": False,
                                  "remaining_checks": 4})

        r = self.server.check(self.key, v["id"], code)
        self.assertEqual(r.status, 200, r)
        self.assertIs(r.json["valid"], True)
        self.assertEqual(r.json["status"], "approved")
        self.assertEqual(r.json["id"], v["id"])

        r = self.server.check(self.key, v["id"], code)
        self.assertNotPending(r, "approved")
        self.assertEqual(self.server.get(self.key, v["id"]).json["status"], "approved")

    def test_code_of_one_verification_fails_on_another(self):
        # SECURITY.md 3: verification A's code fails on B.
        a = self.start_ok(self.key, {"to": h.next_phone()})
        b = self.start_ok(self.key, {"to": h.next_phone()})
        code_a = self.server.wait_code(a["id"])
        code_b = self.server.wait_code(b["id"])
        if code_a == code_b:
            self.skipTest("the two random codes collided")
        r = self.server.check(self.key, b["id"], code_a)
        self.assertEqual(r.status, 200, r)
        self.assertIs(r.json["valid"], False)
        self.assertEqual(r.json["status"], "pending")
        self.assertIs(self.server.check(self.key, a["id"], code_a).json["valid"], True)

    def test_concurrent_wrong_checks_count_one_by_one(self):
        # SECURITY.md 10: parallel requests count one by one; never more than 5 checks.
        v = self.start_ok(self.key, {"to": h.next_phone()})
        code = self.server.wait_code(v["id"])
        bad = h.wrong_code(code)
        results = [None] * 10

        def worker(i):
            results[i] = self.server.check(self.key, v["id"], bad)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        statuses = sorted(r.status for r in results)
        self.assertEqual(statuses.count(200), 5, results)
        self.assertEqual(statuses.count(409), 5, results)
        self.assertEqual(sorted(r.json["remaining_checks"] for r in results if r.status == 200),
                         [0, 1, 2, 3, 4], results)
        g = self.server.get(self.key, v["id"]).json
        self.assertEqual(g["check_count"], 5)
        self.assertEqual(g["status"], "max_checks_reached")

    # 3 ---------------------------------------------------------------------------
    def test_five_wrong_codes_reach_max_checks(self):
        v = self.start_ok(self.key, {"to": h.next_phone()})
        code = self.server.wait_code(v["id"])
        bad = h.wrong_code(code)
        for i in range(1, 6):
            r = self.server.check(self.key, v["id"], bad)
            self.assertEqual(r.status, 200, r)
            self.assertIs(r.json["valid"], False, r)
            self.assertEqual(r.json["remaining_checks"], 5 - i, r)
            self.assertEqual(r.json["status"], "pending" if i < 5 else "max_checks_reached", r)
        r = self.server.check(self.key, v["id"], code)
        self.assertNotPending(r, "max_checks_reached")
        g = self.server.get(self.key, v["id"]).json
        self.assertEqual(g["status"], "max_checks_reached")
        self.assertEqual(g["check_count"], 5)

    # 4 ---------------------------------------------------------------------------
    def test_check_by_recipient_uses_newest_pending(self):
        phone = h.next_phone()
        spaced = "%s %s %s %s" % (phone[:3], phone[3:6], phone[6:9], phone[9:])
        older = self.start_ok(self.key, {"to": phone})
        newer = self.start_ok(self.key, {"to": spaced})
        self.assertEqual(newer["to"], phone)
        code_old = self.server.wait_code(older["id"])
        code_new = self.server.wait_code(newer["id"])
        if code_old == code_new:
            self.skipTest("the two random codes collided")

        # The older one's code is checked against the newest pending one: wrong.
        r = self.server.request("POST", "/v1/verifications/check",
                                {"to": phone, "code": code_old}, key=self.key)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["id"], newer["id"])
        self.assertIs(r.json["valid"], False)
        self.assertEqual(r.json["remaining_checks"], 4)

        r = self.server.request("POST", "/v1/verifications/check",
                                {"to": spaced, "code": code_new}, key=self.key)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["id"], newer["id"])
        self.assertIs(r.json["valid"], True)
        self.assertEqual(r.json["status"], "approved")
        self.assertEqual(self.server.get(self.key, older["id"]).json["status"], "pending")

        # Now the older one is the newest pending one.
        r = self.server.request("POST", "/v1/verifications/check",
                                {"to": phone, "code": code_old}, key=self.key)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["id"], older["id"])
        self.assertIs(r.json["valid"], True)

        # Nothing pending left for this number.
        r = self.server.request("POST", "/v1/verifications/check",
                                {"to": phone, "code": code_old}, key=self.key)
        self.assertProblem(r, 404, "not_found")

    # 5 ---------------------------------------------------------------------------
    def test_resend_inside_default_cooldown_is_rate_limited(self):
        v = self.start_ok(self.key, {"to": h.next_phone()})
        r = self.server.resend(self.key, v["id"])
        self.assertProblem(r, 429, "rate_limited")
        retry = r.header("Retry-After")
        self.assertIsNotNone(retry, r.headers)
        self.assertTrue(retry.isdigit(), retry)
        self.assertTrue(25 <= int(retry) <= 30, retry)
        self.assertEqual(self.server.get(self.key, v["id"]).json["send_count"], 1)

    def test_resend_sends_same_code_until_max_sends(self):
        key = self.fast["api_key"]
        v = self.start_ok(key, {"to": h.next_phone()})
        first = self.server.wait_messages(v["id"], 1)[0]
        code = first["code"]
        # One wrong check before the resends: a resend never resets it (SECURITY.md 5).
        r = self.server.check(key, v["id"], h.wrong_code(code))
        self.assertEqual(r.json["remaining_checks"], 4, r)

        sent_at = time.monotonic()
        for n in range(2, 6):
            time.sleep(max(0.0, sent_at + 1.15 - time.monotonic()))
            r = self.server.resend(key, v["id"])
            sent_at = time.monotonic()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json["send_count"], n, r)
            self.assertEqual(r.json["check_count"], 1, r)
            self.assertEqual(r.json["status"], "pending", r)
            msgs = self.server.wait_messages(v["id"], n)
            self.assertEqual(msgs[-1]["code"], code, "a resend must send the same code")
            self.assertEqual(msgs[-1]["to"], first["to"])
            if n == 2:
                # Immediately after a resend the (1 s) cooldown applies again.
                again = self.server.resend(key, v["id"])
                self.assertProblem(again, 429, "rate_limited")
                self.assertIsNotNone(again.header("Retry-After"))

        time.sleep(max(0.0, sent_at + 1.15 - time.monotonic()))
        r = self.server.resend(key, v["id"])
        self.assertProblem(r, 429, "max_sends_reached")
        time.sleep(0.3)
        self.assertEqual(len(self.server.messages_for(v["id"])), 5)

        g = self.server.get(key, v["id"]).json
        self.assertEqual(g["send_count"], 5)
        self.assertEqual(g["check_count"], 1)
        r = self.server.check(key, v["id"], h.wrong_code(code))
        self.assertEqual(r.json["remaining_checks"], 3, r)
        r = self.server.check(key, v["id"], code)
        self.assertIs(r.json["valid"], True, r)

    def test_resend_on_another_channel(self):
        key = self.fast["api_key"]
        v = self.start_ok(key, {"to": h.next_phone()})
        code = self.server.wait_code(v["id"])
        time.sleep(1.1)
        r = self.server.resend(key, v["id"], {"channel": "voice"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["send_count"], 2)
        msgs = self.server.wait_messages(v["id"], 2)
        self.assertEqual(msgs[1]["channel"], "voice")
        self.assertEqual(msgs[1]["to"], v["to"])
        self.assertEqual(msgs[1]["code"], code)
        # A phone verification cannot be resent by email without an address.
        time.sleep(1.1)
        r = self.server.resend(key, v["id"], {"channel": "email"})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json["code"], "invalid_recipient", r)
        self.assertProblem(self.server.resend(key, v["id"], {"channel": "pigeon"}), 400,
                           "invalid_request")
        self.assertEqual(self.server.get(key, v["id"]).json["send_count"], 2)

    def test_email_verification(self):
        addr = "Person.%s@Example.com" % h.next_phone()[1:]
        r = self.server.start_verification(self.key, {"to": addr})
        # The app's workflow is sms: an address cannot receive it.
        self.assertProblem(r, 400, "invalid_recipient")
        v = self.start_ok(self.key, {"to": addr, "channel": "email"})
        self.assertEqual(v["channel"], "email")
        m = self.server.wait_messages(v["id"])[0]
        self.assertEqual(m["channel"], "email")
        self.assertEqual(m["to"].lower(), addr.lower())
        self.assertIn(m["code"], m["text"])
        r = self.server.request("POST", "/v1/verifications/check",
                                {"to": addr, "code": m["code"]}, key=self.key)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["id"], v["id"])
        self.assertIs(r.json["valid"], True)

    def test_sixth_start_for_one_recipient_is_rate_limited(self):
        # SECURITY.md 6: 5 starts per recipient per 10 minutes.
        phone = h.next_phone()
        for _ in range(5):
            self.start_ok(self.key, {"to": phone})
        r = self.server.start_verification(self.key, {"to": phone})
        self.assertProblem(r, 429, "rate_limited")
        retry = r.header("Retry-After")
        self.assertTrue(retry is not None and retry.isdigit() and 0 < int(retry) <= 600, r.headers)
        # Another app has its own count; another number is not affected.
        self.start_ok(self.other["api_key"], {"to": phone})
        self.start_ok(self.key, {"to": h.next_phone()})

    # 6 ---------------------------------------------------------------------------
    def test_cancel(self):
        v = self.start_ok(self.key, {"to": h.next_phone()})
        code = self.server.wait_code(v["id"])
        r = self.server.cancel(self.key, v["id"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "canceled")
        self.assertEqual(r.json["id"], v["id"])
        self.assertNotPending(self.server.check(self.key, v["id"], code), "canceled")
        self.assertNotPending(self.server.cancel(self.key, v["id"]), "canceled")
        self.assertNotPending(self.server.resend(self.key, v["id"]), "canceled")
        self.assertEqual(self.server.get(self.key, v["id"]).json["status"], "canceled")

    # 7 ---------------------------------------------------------------------------
    def test_idempotency_key(self):
        phone = h.next_phone()
        body = {"to": phone, "metadata": {"n": 1}}
        headers = {"Idempotency-Key": "idem-%s" % phone[1:]}
        first = self.server.start_verification(self.key, body, headers)
        self.assertEqual(first.status, 201, first)
        second = self.server.start_verification(self.key, body, headers)
        self.assertEqual(second.status, 201, second)
        self.assertEqual(second.json["id"], first.json["id"])
        self.assertEqual(second.json, first.json)

        self.server.wait_messages(first.json["id"])
        time.sleep(0.6)  # let a wrongly queued second send show up
        to_phone = [m for m in self.server.messages() if m["to"] == phone]
        self.assertEqual(len(to_phone), 1, to_phone)

        r = self.server.start_verification(self.key, {"to": phone, "metadata": {"n": 2}}, headers)
        self.assertProblem(r, 422, "idempotency_key_reused")
        time.sleep(0.3)
        self.assertEqual(len([m for m in self.server.messages() if m["to"] == phone]), 1)

        # Another app may use the same key string for its own request.
        r = self.server.start_verification(self.other["api_key"], body, headers)
        self.assertEqual(r.status, 201, r)
        self.assertNotEqual(r.json["id"], first.json["id"])

    def test_concurrent_requests_with_one_idempotency_key_start_once(self):
        phone = h.next_phone()
        body = {"to": phone}
        headers = {"Idempotency-Key": "race-%s" % phone[1:]}
        results = [None] * 6

        def worker(i):
            results[i] = self.server.start_verification(self.key, body, headers)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        self.assertEqual([r.status for r in results], [201] * 6, results)
        self.assertEqual(len({r.json["id"] for r in results}), 1, results)
        self.server.wait_messages(results[0].json["id"])
        time.sleep(0.6)
        self.assertEqual(len([m for m in self.server.messages() if m["to"] == phone]), 1)

    # 8 ---------------------------------------------------------------------------
    def test_other_apps_verification_is_not_found(self):
        v = self.start_ok(self.key, {"to": h.next_phone()})
        code = self.server.wait_code(v["id"])
        other = self.other["api_key"]
        unknown = "ver_" + "0" * 24

        def calls(vid):
            return {
                "get": self.server.get(other, vid),
                "check": self.server.check(other, vid, code),
                "resend": self.server.resend(other, vid),
                "cancel": self.server.cancel(other, vid),
            }

        foreign = calls(v["id"])
        missing = calls(unknown)
        for name in foreign:
            with self.subTest(call=name):
                body = self.assertProblem(foreign[name], 404, "not_found")
                self.assertProblem(missing[name], 404, "not_found")
                # Exactly the answer an unknown id gets (nothing reveals it exists).
                self.assertEqual(body, missing[name].json)
                self.assertNotIn(v["id"], foreign[name].body)

        # The owner's verification is untouched.
        g = self.server.get(self.key, v["id"])
        self.assertEqual(g.status, 200, g)
        self.assertEqual(g.json["status"], "pending")
        self.assertEqual(g.json["check_count"], 0)
        self.assertEqual(g.json["send_count"], 1)
        # By recipient, the other app has no pending verification for this number.
        r = self.server.request("POST", "/v1/verifications/check",
                                {"to": v["to"], "code": code}, key=other)
        self.assertProblem(r, 404, "not_found")
        self.assertIs(self.server.check(self.key, v["id"], code).json["valid"], True)

    def test_missing_invalid_or_revoked_key_is_unauthorized(self):
        path = "/v1/verifications"
        body = {"to": h.next_phone()}
        cases = {
            "no header": self.server.request("POST", path, body),
            "unknown key": self.server.request("POST", path, body, key="k_" + "a" * 40),
            "empty bearer": self.server.request("POST", path, body,
                                                headers={"Authorization": "Bearer "}),
            "basic scheme": self.server.request("POST", path, body,
                                                headers={"Authorization": "Basic " + self.key}),
            "get unknown key": self.server.request("GET", "/v1/verifications/ver_" + "0" * 24,
                                                   key="nope"),
        }
        for name, r in cases.items():
            with self.subTest(case=name):
                self.assertProblem(r, 401, "unauthorized")

        extra = self.server.create_key(self.app["app_id"])
        self.assertTrue(extra["key_id"])
        v = self.start_ok(extra["api_key"], {"to": h.next_phone()})
        self.assertEqual(self.server.get(self.key, v["id"]).status, 200)
        self.server.otpctl("key", "revoke", extra["key_id"])
        # otpd remembers known keys for 1 s (README): the revocation holds within that.
        deadline = time.monotonic() + 3
        while self.server.get(extra["api_key"], v["id"]).status != 401:
            self.assertLess(time.monotonic(), deadline, "revoked key still accepted after 3 s")
            time.sleep(0.1)
        self.assertProblem(self.server.get(extra["api_key"], v["id"]), 401, "unauthorized")
        self.assertProblem(self.server.start_verification(extra["api_key"], {"to": h.next_phone()}),
                           401, "unauthorized")
        # The app's first key still works.
        self.assertEqual(self.server.get(self.key, v["id"]).status, 200)

    # 9 ---------------------------------------------------------------------------
    def test_validation_errors(self):
        before = len(self.server.messages())
        path = "/v1/verifications"

        r = self.server.request("POST", path, raw='{"to": "+306912345678",', key=self.key)
        self.assertProblem(r, 400, "invalid_request")

        r = self.server.request("POST", path, raw="[1,2]", key=self.key)
        self.assertProblem(r, 400, "invalid_request")

        r = self.server.request("POST", path, {"channel": "sms"}, key=self.key)
        body = self.assertProblem(r, 400, "invalid_request")
        self.assertIn("errors", body, r)
        self.assertIn("to", [e.get("field") for e in body["errors"]], r)

        r = self.server.request("POST", path, {"to": 306912345678}, key=self.key)
        body = self.assertProblem(r, 400, "invalid_request")
        self.assertIn("to", [e.get("field") for e in body["errors"]], r)

        r = self.server.request("POST", path, {"to": "+1234"}, key=self.key)
        self.assertProblem(r, 400, "invalid_recipient")

        r = self.server.request("POST", path, {"to": "not-an-email@"}, key=self.key)
        self.assertProblem(r, 400, "invalid_recipient")

        for bad in (3, 11, "6"):
            with self.subTest(code_length=bad):
                r = self.server.request("POST", path, {"to": h.next_phone(), "code_length": bad},
                                        key=self.key)
                body = self.assertProblem(r, 400, "invalid_request")
                self.assertIn("code_length", [e.get("field") for e in body["errors"]], r)

        for bad in (59, 86401):
            with self.subTest(ttl_s=bad):
                r = self.server.request("POST", path, {"to": h.next_phone(), "ttl_s": bad},
                                        key=self.key)
                body = self.assertProblem(r, 400, "invalid_request")
                self.assertIn("ttl_s", [e.get("field") for e in body["errors"]], r)

        r = self.server.request("POST", path, {"to": h.next_phone(), "colour": "blue"},
                                key=self.key)
        body = self.assertProblem(r, 400, "invalid_request")
        self.assertIn("colour", [e.get("field") for e in body["errors"]], r)

        r = self.server.request("POST", path, {"to": h.next_phone(), "channel": "pigeon"},
                                key=self.key)
        self.assertProblem(r, 400, "invalid_request")

        r = self.server.request("POST", path, {"to": h.next_phone(), "channel": "sms",
                                               "workflow": [{"channel": "sms"}]}, key=self.key)
        self.assertProblem(r, 400, "invalid_request")

        r = self.server.request("POST", path, {"to": h.next_phone(),
                                               "workflow": [{"channel": "sms", "timeout_s": 0}]},
                                key=self.key)
        self.assertProblem(r, 400, "invalid_request")

        deep = '{"to":"%s","metadata":%s}' % (h.next_phone(), '{"a":' * 40 + "1" + "}" * 40)
        r = self.server.request("POST", path, raw=deep, key=self.key)
        self.assertProblem(r, 400, "invalid_request")

        r = self.server.request("POST", path, {"to": h.next_phone(), "metadata": "x"},
                                key=self.key)
        self.assertProblem(r, 400, "invalid_request")

        r = self.server.request("POST", path,
                                {"to": h.next_phone(), "metadata": {"pad": "x" * 5000}},
                                key=self.key)
        self.assertProblem(r, 400, "invalid_request")

        # Check bodies are validated too.
        v = self.start_ok(self.key, {"to": h.next_phone()})
        self.server.wait_messages(v["id"])
        before += 1
        r = self.server.request("POST", "/v1/verifications/%s/check" % v["id"], {},
                                key=self.key)
        body = self.assertProblem(r, 400, "invalid_request")
        self.assertIn("code", [e.get("field") for e in body["errors"]], r)
        r = self.server.request("POST", "/v1/verifications/%s/check" % v["id"],
                                {"code": 123456}, key=self.key)
        body = self.assertProblem(r, 400, "invalid_request")
        self.assertIn("code", [e.get("field") for e in body["errors"]], r)
        r = self.server.request("POST", "/v1/verifications/%s/check" % v["id"],
                                raw="{not json", key=self.key)
        self.assertProblem(r, 400, "invalid_request")
        # ... and spend no check.
        self.assertEqual(self.server.get(self.key, v["id"]).json["check_count"], 0)

        time.sleep(0.3)
        self.assertEqual(len(self.server.messages()), before,
                         "a refused request must send nothing")

    def test_body_over_max_body_bytes_is_413(self):
        pad = "x" * 70000  # default max_body_bytes is 65536
        raw = json.dumps({"to": h.next_phone(), "metadata": {"pad": pad}})
        try:
            r = self.server.request("POST", "/v1/verifications", raw=raw, key=self.key)
        except (ConnectionError, OSError) as e:
            self.fail("otpd dropped the connection instead of answering 413: %r" % e)
        self.assertProblem(r, 413, "payload_too_large")
        # The server is still fine afterwards.
        self.assertEqual(self.server.request("GET", "/healthz").status, 200)

    # 14 --------------------------------------------------------------------------
    def test_operations_endpoints(self):
        r = self.server.request("GET", "/healthz")
        self.assertEqual(r.status, 200, r)
        r = self.server.request("GET", "/readyz")
        self.assertEqual(r.status, 200, r)

        # Make sure at least one verification was started on this server.
        self.start_ok(self.key, {"to": h.next_phone()})
        r = self.server.request("GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.content_type.startswith("text/plain"), r.headers)
        self.assertIn("otpd_http_requests_total", r.body)
        self.assertIn("otpd_verifications_started_total", r.body)
        self.assertRegex(r.body, r'otpd_verifications_started_total\{channel="sms"\} [1-9]')

        r = self.server.request("GET", "/openapi.json")
        self.assertEqual(r.status, 200, r)
        doc = r.json
        self.assertIn("openapi", doc)
        self.assertIn("paths", doc)


# 12 ------------------------------------------------------------------------------
class WorkflowFailoverTest(OtpdTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.key = cls.server.create_app("failover")["api_key"]
        except Exception:
            cls.server.cleanup()
            raise

    def test_next_step_fires_after_timeout_with_same_code(self):
        t0 = time.monotonic()
        v = self.start_ok(self.key, {
            "to": h.next_phone(),
            "workflow": [{"channel": "sms", "timeout_s": 1},
                         {"channel": "email", "to": "a@example.com"}]})
        self.assertEqual(v["workflow"][0], {"channel": "sms", "timeout_s": 1})
        self.assertEqual(v["workflow"][1]["channel"], "email")
        self.assertEqual(v["workflow"][1]["to"], "a@example.com")
        msgs = self.server.wait_messages(v["id"], 2, timeout=4)
        elapsed = time.monotonic() - t0
        self.assertLessEqual(elapsed, 3.5)
        self.assertEqual(msgs[0]["channel"], "sms")
        self.assertEqual(msgs[0]["to"], v["to"])
        self.assertEqual(msgs[1]["channel"], "email")
        self.assertEqual(msgs[1]["to"], "a@example.com")
        self.assertEqual(msgs[1]["code"], msgs[0]["code"])
        self.assertIn(msgs[1]["code"], msgs[1]["text"])

        deadline = time.monotonic() + 3
        while True:
            g = self.server.get(self.key, v["id"]).json
            if all(d["status"] == "sent" for d in g["deliveries"]) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual([d["channel"] for d in g["deliveries"]], ["sms", "email"], g)
        self.assertEqual([d["status"] for d in g["deliveries"]], ["sent", "sent"], g)
        self.assertEqual(g["send_count"], 1, "failover is not a resend")  # noqa: informational
        self.assertIs(self.server.check(self.key, v["id"], msgs[1]["code"]).json["valid"], True)

    def test_no_next_step_after_approval(self):
        t0 = time.monotonic()
        v = self.start_ok(self.key, {
            "to": h.next_phone(),
            "workflow": [{"channel": "sms", "timeout_s": 2},
                         {"channel": "email", "to": "b@example.com"}]})
        code = self.server.wait_code(v["id"])
        r = self.server.check(self.key, v["id"], code)
        self.assertIs(r.json["valid"], True, r)
        self.assertLess(time.monotonic() - t0, 2.0, "approval came too late for this test")
        time.sleep(max(0.0, t0 + 3.2 - time.monotonic()))
        msgs = self.server.messages_for(v["id"])
        self.assertEqual([m["channel"] for m in msgs], ["sms"], msgs)
        g = self.server.get(self.key, v["id"]).json
        self.assertEqual(g["status"], "approved")
        self.assertNotIn("sent", [d["status"] for d in g["deliveries"][1:]], g)

    def test_no_next_step_after_cancel(self):
        v = self.start_ok(self.key, {
            "to": h.next_phone(),
            "workflow": [{"channel": "sms", "timeout_s": 1},
                         {"channel": "email", "to": "c@example.com"}]})
        self.server.wait_messages(v["id"])
        self.assertEqual(self.server.cancel(self.key, v["id"]).status, 200)
        time.sleep(2.0)
        self.assertEqual([m["channel"] for m in self.server.messages_for(v["id"])], ["sms"])


# 11 ------------------------------------------------------------------------------
class RestartTest(OtpdTestCase):

    def test_state_survives_restart(self):
        key = self.server.create_app("durable")["api_key"]
        a = self.start_ok(key, {"to": h.next_phone()})
        b = self.start_ok(key, {"to": h.next_phone()})
        code_a = self.server.wait_code(a["id"])
        code_b = self.server.wait_code(b["id"])
        r = self.server.check(key, b["id"], h.wrong_code(code_b))
        self.assertEqual(r.json["remaining_checks"], 4, r)
        r = self.server.check(key, b["id"], h.wrong_code(h.wrong_code(code_b)))
        self.assertEqual(r.json["remaining_checks"], 3, r)

        rc = self.server.stop()
        self.assertEqual(rc, 0, "otpd must exit 0 on SIGTERM\n" + self.server.stderr()[-3000:])
        self.server.start()

        ga = self.server.get(key, a["id"])
        self.assertEqual(ga.status, 200, ga)
        self.assertEqual(ga.json["status"], "pending")
        self.assertEqual(ga.json["check_count"], 0)
        r = self.server.check(key, a["id"], code_a)
        self.assertEqual(r.status, 200, r)
        self.assertIs(r.json["valid"], True)
        self.assertEqual(r.json["status"], "approved")

        gb = self.server.get(key, b["id"]).json
        self.assertEqual(gb["check_count"], 2, gb)
        r = self.server.check(key, b["id"], h.wrong_code(code_b))
        self.assertEqual(r.json["remaining_checks"], 2, r)
        self.assertIs(self.server.check(key, b["id"], code_b).json["valid"], True)
        # Nothing was sent again by the restart.
        time.sleep(0.5)
        self.assertEqual(len(self.server.messages_for(a["id"])), 1)
        self.assertEqual(len(self.server.messages_for(b["id"])), 1)

    def test_pending_failover_timer_survives_restart(self):
        key = self.server.create_app("durable-timer")["api_key"]
        v = self.start_ok(key, {
            "to": h.next_phone(),
            "workflow": [{"channel": "sms", "timeout_s": 2},
                         {"channel": "email", "to": "timer@example.com"}]})
        first = self.server.wait_messages(v["id"])[0]
        self.assertEqual(self.server.stop(), 0)
        self.server.start()
        msgs = self.server.wait_messages(v["id"], 2, timeout=5)
        self.assertEqual(msgs[1]["channel"], "email")
        self.assertEqual(msgs[1]["code"], first["code"])

    def test_kill_9_loses_no_answered_state(self):
        # Whatever otpd answered before a SIGKILL is on disk: the approval, the
        # spent checks and the queued failover step.
        key = self.server.create_app("durable-kill")["api_key"]
        a = self.start_ok(key, {"to": h.next_phone()})
        b = self.start_ok(key, {
            "to": h.next_phone(),
            "workflow": [{"channel": "sms", "timeout_s": 2},
                         {"channel": "email", "to": "kill@example.com"}]})
        code_a = self.server.wait_code(a["id"])
        code_b = self.server.wait_code(b["id"])
        self.assertIs(self.server.check(key, a["id"], code_a).json["valid"], True)
        self.assertIs(self.server.check(key, b["id"], h.wrong_code(code_b)).json["valid"], False)
        self.server.kill()  # SIGKILL: no draining, no shutdown code runs
        self.server.start()
        self.assertEqual(self.server.get(key, a["id"]).json["status"], "approved")
        self.assertEqual(self.server.get(key, b["id"]).json["check_count"], 1)
        msgs = self.server.wait_messages(b["id"], 2, timeout=6)
        self.assertEqual(msgs[1]["channel"], "email")
        self.assertEqual(msgs[1]["code"], code_b)
        self.assertIs(self.server.check(key, b["id"], code_b).json["valid"], True)


class AppTemplateTest(OtpdTestCase):
    """otpctl app update --template: the app's own text is what the person gets."""

    def test_app_template_replaces_the_built_in_text(self):
        self.server.create_app("templated")
        self.server.otpctl("app", "update", "templated",
                           "--template", "sms:en=Shop code {{code}} ({{ttl_minutes}} min)")
        key = self.server.create_key("templated")["api_key"]
        v = self.start_ok(key, {"to": h.next_phone(), "locale": "en"})
        m = self.server.wait_messages(v["id"])[0]
        self.assertEqual(m["text"], "Shop code %s (10 min)" % m["code"])
        # Another locale keeps the built-in text.
        v = self.start_ok(key, {"to": h.next_phone(), "locale": "de"})
        m = self.server.wait_messages(v["id"])[0]
        self.assertIn("Bestätigungscode", m["text"])
        # A template without the code is refused and changes nothing.
        p = self.server.otpctl("app", "update", "templated", "--template", "sms:en=no code",
                               check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("{{code}}", p.stderr)


# 13 ------------------------------------------------------------------------------
class SecretsTest(OtpdTestCase):
    """Runs last (see load_tests): looks at everything the run observed."""

    def exercise(self):
        app = self.server.create_app("secrets", "--resend-cooldown", "1")
        key = app["api_key"]
        v = self.start_ok(key, {"to": h.next_phone(),
                                "workflow": [{"channel": "sms", "timeout_s": 1},
                                             {"channel": "email", "to": "s@example.com"}]},
                          headers={"Idempotency-Key": "secrets-1"})
        code = self.server.wait_code(v["id"])
        self.server.check(key, v["id"], h.wrong_code(code))
        time.sleep(1.1)
        self.server.resend(key, v["id"])
        self.server.wait_messages(v["id"], 3)
        self.server.get(key, v["id"])
        self.server.start_verification(key, {"to": v["to"],
                                             "workflow": [{"channel": "sms", "timeout_s": 1},
                                                          {"channel": "email",
                                                           "to": "s@example.com"}]},
                                       headers={"Idempotency-Key": "secrets-1"})
        self.server.request("POST", "/v1/verifications/check", {"to": v["to"], "code": code},
                            key=key)
        self.server.check(key, v["id"], code)
        self.server.request("GET", "/metrics")
        return app

    def test_no_secret_in_responses_or_logs(self):
        app = self.exercise()
        self.assertEqual(self.server.stop(), 0)
        self.server.messages()  # collect this server's codes
        for s in h.SERVERS:
            if s.proc is None:
                try:
                    s.messages()
                except Exception:
                    pass
        self.assertTrue(h.CODES, "no code was observed")
        codes = sorted(h.CODES)

        for r in h.RESPONSES:
            if r.path.startswith("/dev/inbox"):
                continue  # the development inbox shows codes on purpose
            text = r.body + "\n" + "\n".join("%s: %s" % kv for kv in r.headers)
            for code in codes:
                self.assertFalse(h.contains_code(text, code),
                                 "code %s appears in the answer to %s %s: %s"
                                 % (code, r.method, r.path, text[:1000]))

        for label, out, err in h.OUTPUTS:
            for code in codes:
                self.assertFalse(h.contains_code(out, code), "code %s in otpd stdout (%s)"
                                 % (code, label))
                self.assertFalse(h.contains_code(err, code), "code %s in otpd stderr (%s)"
                                 % (code, label))
            for to in h.RECIPIENTS:
                full = to.lstrip("+")
                self.assertNotIn(full, err, "full recipient %s in otpd stderr (%s)" % (to, label))
                if "@" in to:
                    self.assertNotIn(to, err, "full address %s in otpd stderr (%s)" % (to, label))
            for api_key in h.OTPCTL_KEYS:
                self.assertNotIn(api_key, out, "API key in otpd stdout (%s)" % label)
                self.assertNotIn(api_key, err, "API key in otpd stderr (%s)" % label)
            # The first-start banner may show the demo app's key once, on stdout only.
            demo = re.findall(r"OTPD_KEY=(\S+)", out)
            self.assertLessEqual(len(demo), 1, label)
            for k in demo:
                self.assertEqual(out.count(k), 1, "demo key printed more than once (%s)" % label)
                self.assertNotIn(k, err, "demo key in otpd stderr (%s)" % label)

        # Masked numbers do appear (last 4 digits kept), so the log is useful.
        err = self.server.all_stderr()
        self.assertRegex(err, r"\*+[0-9]{4}")
        # otpctl keys never come back in any HTTP answer either.
        for r in h.RESPONSES:
            for api_key in h.OTPCTL_KEYS:
                self.assertNotIn(api_key, r.body)
        self.assertTrue(app["api_key"])
        self.server.start()  # tearDownClass stops it again


def load_tests(loader, tests, pattern):
    # The secrets test looks at what the others observed, so it runs last.
    suite = unittest.TestSuite()
    for cls in (VerificationApiTest, WorkflowFailoverTest, RestartTest, AppTemplateTest,
                SecretsTest):
        suite.addTests(loader.loadTestsFromTestCase(cls))
    return suite


if __name__ == "__main__":
    unittest.main()
