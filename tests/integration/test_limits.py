"""Black-box tests of otpd's limits and fraud protection (SPEC §6; SECURITY.md
6, 10, 24, 29, 30, 33) against the real otpd and otpctl: parallel checks, start
limits per recipient and per end-user IP with Retry-After, the per-app request
rate, geo permissions (block and monitor), a simulated SMS-pumping attack on one
number prefix, `otpctl fraud status|allow|disallow`, and sandbox mode.

Run: OTPD_BIN=... OTPCTL_BIN=... python3 -m unittest -v test_limits
"""

import json
import re
import threading
import time
import unittest

import otpd_harness as h
from test_verifications import OtpdTestCase

GERMAN_MOBILE = "+4915123456789"
CYPRUS_MOBILE = "+35799123456"
GREEK_UAN = "+305005000123"         # libphonenumber's Greek UAN example
GERMAN_VOICEMAIL = "+49177991234567"  # libphonenumber's German voicemail example


def parallel(n, fn):
    """Runs fn(i) for i in 0..n-1 on n threads released together; returns the results."""
    results = [None] * n
    gate = threading.Barrier(n)

    def run(i):
        gate.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def metric(text, name, **labels):
    """The value of one Prometheus sample (0 when absent)."""
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^%s\{([^}]*)\} (\S+)$" % re.escape(name), line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    return 0.0


class LimitsTestCase(OtpdTestCase):

    def app(self, name, *flags):
        return self.server.create_app(name, *flags)["api_key"]

    def metrics(self):
        return self.server.request("GET", "/metrics").body

    def assertRetryAfter(self, r, low, high):
        retry = r.header("Retry-After")
        self.assertIsNotNone(retry, r.headers)
        self.assertTrue(retry.isdigit(), retry)
        self.assertGreaterEqual(int(retry), low, r)
        self.assertLessEqual(int(retry), high, r)
        return int(retry)


class ConcurrencyTest(LimitsTestCase):
    """SECURITY.md 10: parallel requests count one by one."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.key = cls.server.create_app("concurrency")["api_key"]

    def test_sec10_twenty_parallel_wrong_checks_spend_exactly_five(self):
        v = self.start_ok(self.key, {"to": h.next_phone()})
        bad = h.wrong_code(self.server.wait_code(v["id"]))
        results = parallel(20, lambda i: self.server.check(self.key, v["id"], bad))
        ok = [r for r in results if r.status == 200]
        self.assertEqual(len(ok), 5, results)
        self.assertTrue(all(r.json["valid"] is False for r in ok), results)
        self.assertEqual(sorted(r.json["remaining_checks"] for r in ok), [0, 1, 2, 3, 4], results)
        for r in results:
            if r.status != 200:
                self.assertNotPending(r, "max_checks_reached")
        g = self.server.get(self.key, v["id"]).json
        self.assertEqual(g["check_count"], 5)
        self.assertEqual(g["status"], "max_checks_reached")

    def test_sec10_a_right_code_among_parallel_wrong_ones_succeeds_at_most_once(self):
        for _ in range(4):
            v = self.start_ok(self.key, {"to": h.next_phone()})
            code = self.server.wait_code(v["id"])
            bad = h.wrong_code(code)
            # 4 right copies among 16 wrong ones, all released at once.
            results = parallel(20, lambda i: self.server.check(
                self.key, v["id"], code if i % 5 == 0 else bad))
            valid = [r for r in results if r.status == 200 and r.json["valid"]]
            spent = [r for r in results if r.status == 200]
            self.assertLessEqual(len(valid), 1, results)
            self.assertLessEqual(len(spent), 5, results)
            g = self.server.get(self.key, v["id"]).json
            self.assertEqual(g["check_count"], len(spent))
            if valid:
                self.assertEqual(g["status"], "approved")
            else:
                self.assertEqual(g["status"], "max_checks_reached")
            # Never again, whatever comes later.
            self.assertNotPending(self.server.check(self.key, v["id"], code), g["status"])


class ResendTest(LimitsTestCase):
    """SECURITY.md 5: a resend never resets the failure count."""

    def test_sec5_a_resend_never_resets_the_check_count(self):
        key = self.app("resends", "--resend-cooldown", "0")
        v = self.start_ok(key, {"to": h.next_phone()})
        code = self.server.wait_code(v["id"])
        for _ in range(3):
            self.assertEqual(self.server.check(key, v["id"], h.wrong_code(code)).status, 200)
        r = self.server.resend(key, v["id"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["check_count"], 3)
        self.server.wait_messages(v["id"], 2)
        r = self.server.check(key, v["id"], h.wrong_code(code))
        self.assertEqual(r.json["remaining_checks"], 1, r)
        r = self.server.check(key, v["id"], h.wrong_code(code))
        self.assertEqual(r.json["status"], "max_checks_reached", r)
        self.assertNotPending(self.server.check(key, v["id"], code), "max_checks_reached")


class StartLimitsTest(LimitsTestCase):
    """SECURITY.md 6 and 30: starts per recipient and per end-user IP."""

    def test_sec6_sixth_start_per_recipient_waits_for_the_oldest_to_leave(self):
        key = self.app("recipients")
        phone = h.next_phone()
        first = time.monotonic()
        for _ in range(5):
            self.start_ok(key, {"to": phone})
        r = self.server.start_verification(key, {"to": phone})
        self.assertProblem(r, 429, "rate_limited")
        elapsed = int(time.monotonic() - first) + 1
        self.assertRetryAfter(r, 600 - elapsed - 1, 600)
        # Concurrent starts cannot all pass: 10 at once to a fresh number store 5.
        phone = h.next_phone()
        results = parallel(10, lambda i: self.server.start_verification(key, {"to": phone}))
        self.assertEqual(sorted(r.status for r in results), [201] * 5 + [429] * 5, results)

    def test_sec30_starts_per_ip_across_recipients(self):
        key = self.app("per-ip", "--starts-per-ip", "3")
        for _ in range(3):
            self.start_ok(key, {"to": h.next_phone(), "ip": "198.51.100.23"})
        r = self.server.start_verification(key, {"to": h.next_phone(), "ip": "198.51.100.23"})
        body = self.assertProblem(r, 429, "rate_limited")
        self.assertIn("IP", body["detail"])
        self.assertRetryAfter(r, 590, 600)
        # Another IP, an IPv6 of another /64, or no ip at all still start.
        self.start_ok(key, {"to": h.next_phone(), "ip": "198.51.100.24"})
        self.start_ok(key, {"to": h.next_phone(), "ip": "2001:db8:1:2::1"})
        self.start_ok(key, {"to": h.next_phone()})
        # The same /64 counts as one end user.
        for i in range(2):
            self.start_ok(key, {"to": h.next_phone(), "ip": "2001:db8:1:2::%x" % (i + 2)})
        r = self.server.start_verification(key, {"to": h.next_phone(), "ip": "2001:db8:1:2:ffff::9"})
        self.assertProblem(r, 429, "rate_limited")
        # Not an address: 400 naming the field; nothing stored.
        r = self.server.start_verification(key, {"to": h.next_phone(), "ip": "example.com"})
        body = self.assertProblem(r, 400, "invalid_request")
        self.assertIn("ip", [e["field"] for e in body["errors"]])
        self.assertGreaterEqual(metric(self.metrics(), "otpd_abuse_guard_total",
                                       guard="ip", action="blocked"), 2)

    def test_sec30_starts_per_ip_off(self):
        key = self.app("per-ip-off", "--starts-per-ip", "0")
        for _ in range(12):
            self.start_ok(key, {"to": h.next_phone(), "ip": "203.0.113.5"})


class RequestRateTest(LimitsTestCase):
    """The per-app request rate: a token bucket in the store."""

    def test_per_app_request_rate_answers_429_with_retry_after(self):
        key = self.app("slow", "--request-rate", "1", "--request-burst", "5")
        other = self.app("unhurried")
        path = "/v1/verifications/ver_000000000000000000000000"
        statuses = [self.server.request("GET", path, key=key).status for _ in range(8)]
        self.assertEqual(statuses[:5], [404] * 5, statuses)
        self.assertIn(429, statuses[5:], statuses)
        r = self.server.request("GET", path, key=key)
        self.assertProblem(r, 429, "rate_limited")
        self.assertRetryAfter(r, 1, 1)
        # The check path (answered without a worker thread) is limited too.
        r = self.server.check(key, "ver_000000000000000000000000", "123456")
        self.assertProblem(r, 429, "rate_limited")
        # Another app has its own bucket; unauthenticated routes have none.
        self.assertEqual(self.server.request("GET", path, key=other).status, 404)
        self.assertEqual(self.server.request("GET", "/healthz").status, 200)
        # A token a second: after a wait, one more request passes.
        time.sleep(1.2)
        self.assertEqual(self.server.request("GET", path, key=key).status, 404)
        self.assertGreaterEqual(metric(self.metrics(), "otpd_abuse_guard_total",
                                       guard="app_rate", action="blocked"), 2)

    def test_request_rate_zero_is_off(self):
        key = self.app("unlimited", "--request-rate", "0")
        path = "/v1/verifications/ver_000000000000000000000000"
        statuses = {self.server.request("GET", path, key=key).status for _ in range(300)}
        self.assertEqual(statuses, {404})


class GeoPermissionsTest(LimitsTestCase):
    """SECURITY.md 29 and 24."""

    def test_sec29_country_blocked_by_the_allowed_list(self):
        key = self.app("greek-only", "--allowed-countries", "GR,CY")
        r = self.server.start_verification(key, {"to": GERMAN_MOBILE})
        body = self.assertProblem(r, 403, "country_blocked")
        self.assertIn("DE", body["detail"])
        v = self.start_ok(key, {"to": CYPRUS_MOBILE})
        self.assertEqual(v["flags"], [])
        self.start_ok(key, {"to": h.next_phone()})
        self.assertGreaterEqual(metric(self.metrics(), "otpd_abuse_guard_total",
                                       guard="country_blocked", action="blocked"), 1)

    def test_sec29_per_channel_lists(self):
        key = self.app("no-greek-calls", "--workflow", "sms:60,voice:60",
                       "--blocked-countries", "voice:GR")
        # The voice step would call Greece: refused whole, nothing sent.
        r = self.server.start_verification(key, {"to": h.next_phone()})
        self.assertProblem(r, 403, "country_blocked")
        v = self.start_ok(key, {"to": h.next_phone(), "channel": "sms"})
        self.start_ok(key, {"to": GERMAN_MOBILE})  # both steps to Germany
        # A resend on voice is refused as well.
        r = self.server.resend(key, v["id"], {"channel": "voice"})
        self.assertProblem(r, 403, "country_blocked")

    def test_sec29_monitor_mode_lets_it_through_flagged(self):
        key = self.app("geo-monitor", "--blocked-countries", "DE", "--geo-mode", "monitor")
        before = metric(self.metrics(), "otpd_abuse_guard_total",
                        guard="country_blocked", action="flagged")
        v = self.start_ok(key, {"to": GERMAN_MOBILE})
        self.assertEqual(v["flags"], ["country_blocked"])
        self.assertEqual(self.server.get(key, v["id"]).json["flags"], ["country_blocked"])
        self.server.wait_code(v["id"])  # it was sent
        self.assertEqual(self.start_ok(key, {"to": h.next_phone()})["flags"], [])
        after = metric(self.metrics(), "otpd_abuse_guard_total",
                       guard="country_blocked", action="flagged")
        self.assertEqual(after, before + 1)

    def test_sec24_uan_voicemail_premium_and_invalid_numbers_are_refused(self):
        key = self.app("numbers")
        for number in (GREEK_UAN, GERMAN_VOICEMAIL, "+4490 0123 4567", "+44 845 464 0000",
                       "+1234", "+30691"):
            r = self.server.start_verification(key, {"to": number})
            self.assertProblem(r, 400, "invalid_recipient")
        # On a phone step's own number too.
        r = self.server.start_verification(
            key, {"to": "a@example.com",
                  "workflow": [{"channel": "email"}, {"channel": "sms", "to": GREEK_UAN}]})
        self.assertProblem(r, 400, "invalid_recipient")

    def test_geo_flags_are_validated_by_otpctl(self):
        p = self.server.otpctl("app", "create", "bad-geo", "--allowed-countries", "UK", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("UK", p.stderr)
        p = self.server.otpctl("app", "create", "bad-geo2", "--blocked-countries", "email:GR",
                               check=False)
        self.assertNotEqual(p.returncode, 0)
        p = self.server.otpctl("app", "create", "bad-geo3", "--geo-mode", "warn", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.app("good-geo", "--allowed-countries", "sms:GR,CY", "--blocked-countries", "RU")
        shown = json.loads(self.server.otpctl("app", "show", "good-geo").stdout)["settings"]
        self.assertEqual(shown["channel_countries"], {"sms": {"allowed": ["GR", "CY"],
                                                              "blocked": []}})
        self.assertEqual(shown["countries"], {"allowed": [], "blocked": ["RU"]})
        self.assertEqual(shown["geo_mode"], "block")
        # An empty list clears it.
        self.server.otpctl("app", "update", "good-geo", "--allowed-countries", "sms:")
        shown = json.loads(self.server.otpctl("app", "show", "good-geo").stdout)["settings"]
        self.assertEqual(shown["channel_countries"], {})


class PumpingTest(LimitsTestCase):
    """SECURITY.md 30: a simulated SMS-pumping attack against one prefix."""

    ATTACKED = "+30691555"  # the attacked prefix: +30 691 555 xxxx

    def test_sec30_simulated_pumping_attack_is_blocked_within_its_threshold(self):
        app = self.server.create_app("pumped", "--fraud-threshold", "10",
                                     "--fraud-min-conversion", "20")
        key = app["api_key"]
        blocked_before = metric(self.metrics(), "otpd_abuse_guard_total",
                                guard="pumping_suspected", action="blocked")
        attack_results = []
        legit = []
        for i in range(30):
            # The attacker: fresh numbers of one prefix, never confirmed.
            attack_results.append(self.server.start_verification(
                key, {"to": "%s%04d" % (self.ATTACKED, 1000 + i)}))
            # Real users meanwhile, on other prefixes, confirming their codes.
            if i % 3 == 0:
                phone = h.next_phone()
                while phone.startswith(self.ATTACKED):
                    phone = h.next_phone()
                legit.append(self.start_ok(key, {"to": phone}))
        created = [r for r in attack_results if r.status == 201]
        refused = [r for r in attack_results if r.status != 201]
        self.assertEqual(len(created), 10, attack_results)
        self.assertEqual(attack_results[:10], created)  # the first 10, then none
        for r in refused:
            body = self.assertProblem(r, 429, "rate_limited")
            self.assertIn("SMS-pumping guard", body["detail"])
            self.assertRetryAfter(r, 3500, 3660)
        for v in legit:
            code = self.server.wait_code(v["id"])
            r = self.server.check(key, v["id"], code)
            self.assertIs(r.json["valid"], True, r)
        # Nothing was sent to the refused numbers.
        sent_to = {m["to"] for m in self.server.messages()}
        self.assertFalse(any(("%s%04d" % (self.ATTACKED, 1000 + i)) in sent_to
                             for i in range(10, 30)))

        # The operator sees it ...
        status = json.loads(self.server.otpctl("fraud", "status", "--app", "pumped").stdout)
        self.assertEqual(len(status), 1)
        st = status[0]
        self.assertEqual(st["mode"], "block")
        attacked = [p for p in st["prefixes"] if p["prefix"] == self.ATTACKED]
        self.assertEqual(len(attacked), 1, st)
        self.assertEqual(attacked[0]["starts"], 10)
        self.assertEqual(attacked[0]["approvals"], 0)
        self.assertEqual(attacked[0]["conversion"], 0)
        self.assertEqual(attacked[0]["state"], "blocked")
        others = [p for p in st["prefixes"] if p["prefix"] != self.ATTACKED]
        self.assertTrue(others and all(p["state"] == "ok" for p in others), st)
        self.assertTrue(all(p["approvals"] == p["starts"] for p in others), st)
        gr = [r for r in st["regions"] if r["region"] == "GR"]
        self.assertEqual(gr[0]["starts"], 10 + len(legit))
        self.assertEqual(gr[0]["approvals"], len(legit))
        self.assertEqual(gr[0]["state"], "not_judged")
        self.assertEqual(metric(self.metrics(), "otpd_abuse_guard_total",
                                guard="pumping_suspected", action="blocked"), blocked_before + 20)

        # ... and safe-lists one real customer of that prefix.
        customer = self.ATTACKED + "9999"
        r = self.server.start_verification(key, {"to": customer})
        self.assertProblem(r, 429, "rate_limited")
        out = json.loads(self.server.otpctl("fraud", "allow", "pumped", customer).stdout)
        self.assertEqual(out, {"app_id": app["app_id"], "entry": customer, "safe_listed": True})
        v = self.start_ok(key, {"to": customer})
        self.server.wait_code(v["id"])
        st = json.loads(self.server.otpctl("fraud", "status", "--app", "pumped").stdout)[0]
        self.assertEqual(st["safe_list"], [customer])
        self.assertEqual([p["starts"] for p in st["prefixes"] if p["prefix"] == self.ATTACKED],
                         [10])  # a safe-listed start is not counted
        # Disallowed again, the number is judged with its prefix once more.
        self.server.otpctl("fraud", "disallow", "pumped", customer)
        r = self.server.start_verification(key, {"to": customer})
        self.assertProblem(r, 429, "rate_limited")
        p = self.server.otpctl("fraud", "disallow", "pumped", customer, check=False)
        self.assertNotEqual(p.returncode, 0)
        p = self.server.otpctl("fraud", "allow", "pumped", "30691", check=False)
        self.assertNotEqual(p.returncode, 0)
        # A whole prefix can be safe-listed too.
        self.server.otpctl("fraud", "allow", "pumped", self.ATTACKED)
        self.start_ok(key, {"to": self.ATTACKED + "8888"})

    def test_sec30_monitor_mode_flags_instead_of_blocking(self):
        key = self.app("pump-monitor", "--fraud-mode", "monitor", "--fraud-threshold", "3")
        flags = [self.start_ok(key, {"to": "+30691666%04d" % i})["flags"] for i in range(5)]
        self.assertEqual(flags, [[], [], [], ["pumping_suspected"], ["pumping_suspected"]])
        st = json.loads(self.server.otpctl("fraud", "status", "--app", "pump-monitor").stdout)[0]
        self.assertEqual([p["state"] for p in st["prefixes"] if p["prefix"] == "+30691666"],
                         ["flagged"])

    def test_sec30_fraud_off(self):
        key = self.app("pump-off", "--fraud-mode", "off", "--fraud-threshold", "1")
        for i in range(4):
            self.assertEqual(self.start_ok(key, {"to": "+30691777%04d" % i})["flags"], [])


class NoExistenceOracleTest(LimitsTestCase):
    """SECURITY.md 33: answers do not reveal whether a number is known."""

    def strip(self, body):
        return {k: v for k, v in body.items() if k not in ("id",)}

    def test_sec33_same_answers_for_known_and_unknown_numbers(self):
        key = self.app("oracle", "--fraud-threshold", "2")
        known = h.next_phone()
        v = self.start_ok(key, {"to": known})
        code = self.server.wait_code(v["id"])
        self.assertIs(self.server.check(key, v["id"], code).json["valid"], True)
        unknown = h.next_phone()
        # Check by recipient: no pending verification, known or not, answers alike.
        a = self.server.request("POST", "/v1/verifications/check",
                                {"to": known, "code": "123456"}, key=key)
        b = self.server.request("POST", "/v1/verifications/check",
                                {"to": unknown, "code": "123456"}, key=key)
        self.assertEqual((a.status, a.body), (b.status, b.body))
        self.assertProblem(a, 404, "not_found")
        # A start to a known and to a fresh number: the same shape and fields.
        x = self.start_ok(key, {"to": known})
        y = self.start_ok(key, {"to": unknown})
        self.assertEqual(sorted(x), sorted(y))
        self.assertEqual((x["status"], x["send_count"], x["check_count"], x["flags"]),
                         (y["status"], y["send_count"], y["check_count"], y["flags"]))
        # A blocked prefix answers the same for a number seen before and a fresh one.
        self.start_ok(key, {"to": "+306918880001"})
        self.start_ok(key, {"to": "+306918880002"})
        seen = self.server.start_verification(key, {"to": "+306918880001"})
        fresh = self.server.start_verification(key, {"to": "+306918889999"})
        self.assertEqual((seen.status, seen.body), (fresh.status, fresh.body))


class SandboxTest(LimitsTestCase):
    """Sandbox apps: log providers only, no start limits, no cooldown, no pumping guard."""

    def test_sandbox_relaxes_start_limits_cooldown_and_the_guard(self):
        app = self.server.create_app("sandbox", "--sandbox", "--fraud-threshold", "1",
                                     "--starts-per-ip", "1")
        key = app["api_key"]
        shown = json.loads(self.server.otpctl("app", "show", "sandbox").stdout)["settings"]
        self.assertIs(shown["sandbox"], True)
        phone = h.next_phone()
        for _ in range(8):
            v = self.start_ok(key, {"to": phone, "ip": "192.0.2.1"})
            self.assertEqual(v["flags"], [])
        self.server.wait_code(v["id"])
        self.assertEqual(self.server.resend(key, v["id"]).status, 200)  # no cooldown
        # What still holds: max_checks, geo permissions, number validation.
        code = self.server.wait_code(v["id"])
        for _ in range(5):
            self.assertEqual(self.server.check(key, v["id"], h.wrong_code(code)).status, 200)
        self.assertNotPending(self.server.check(key, v["id"], code), "max_checks_reached")
        self.server.otpctl("app", "update", "sandbox", "--blocked-countries", "DE")
        time.sleep(1.1)  # otpd's key cache holds an app for up to 1 s
        self.assertProblem(self.server.start_verification(key, {"to": GERMAN_MOBILE}), 403,
                           "country_blocked")
        self.assertProblem(self.server.start_verification(key, {"to": GREEK_UAN}), 400,
                           "invalid_recipient")
        st = json.loads(self.server.otpctl("fraud", "status", "--app", "sandbox").stdout)[0]
        self.assertEqual(st["mode"], "off (sandbox)")
        self.assertEqual(st["prefixes"], [])
        # Leaving sandbox mode brings the limits back.
        self.server.otpctl("app", "update", "sandbox", "--no-sandbox")
        time.sleep(1.1)
        r = self.server.start_verification(key, {"to": phone})
        self.assertProblem(r, 429, "rate_limited")

    def test_limit_flags_are_validated(self):
        for flags in (("--request-rate", "-1"), ("--request-burst", "0"),
                      ("--starts-per-ip", "-2"), ("--fraud-mode", "loud"),
                      ("--fraud-min-conversion", "101"), ("--fraud-window", "90"),
                      ("--fraud-threshold", "0"), ("--starts-per-recipient", "0")):
            p = self.server.otpctl("app", "create", "bad-%s" % flags[0].strip("-"), *flags,
                                   check=False)
            self.assertNotEqual(p.returncode, 0, flags)
            self.assertTrue(p.stderr.strip(), flags)
        shown = json.loads(self.server.otpctl("app", "show", self.server.create_app(
            "defaults")["app_id"]).stdout)["settings"]
        for k, want in (("starts_per_recipient", 5), ("starts_window_s", 600),
                        ("starts_per_ip", 10), ("ip_window_s", 600), ("request_rate", 100),
                        ("request_burst", 200), ("sandbox", False), ("geo_mode", "block"),
                        ("fraud_mode", "block"), ("fraud_prefix_threshold", 30),
                        ("fraud_region_threshold", 0), ("fraud_min_conversion_pct", 20),
                        ("fraud_window_s", 3600)):
            self.assertEqual(shown[k], want, k)


if __name__ == "__main__":
    unittest.main()
