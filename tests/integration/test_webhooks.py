"""Black-box tests of webhooks and the audit trail (SPEC §5, §6; SECURITY.md 26, 27,
28, 31, 32) against the real otpd and otpctl binaries.

A receiver on a loopback port (Python's http.server) stands in for the app's
endpoint; otpd runs with `[webhooks] allow_private_targets = true` so that it may
send there, and `first_retry_s = 1` so that a retry comes within seconds (the
schedule itself is tested in src/service/webhooks_test.cc with an injected clock).
Signatures are verified here with Python's hmac and base64, not with otpd's code.
A second otpd without the flag shows a loopback target refused.
"""

import base64
import hashlib
import hmac
import http.server
import json
import shutil
import sqlite3
import ssl
import tempfile
import threading
import time
import unittest

import otpd_harness as h
from test_verifications import OtpdTestCase

WEBHOOK_CONFIG = "[webhooks]\nallow_private_targets = true\nfirst_retry_s = 1\n"


class Receiver:
    """An HTTP endpoint on 127.0.0.1: records every POST (path, headers, body, time)
    and answers each path from its script of statuses (then 200)."""

    def __init__(self, tls=None):
        """tls: (cert, key) PEM paths to serve HTTPS instead of HTTP."""
        self.tls = tls
        self.requests = []
        self.scripts = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode("utf-8")
                with receiver.lock:
                    script = receiver.scripts.get(self.path, [])
                    status = script.pop(0) if script else 200
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                              "body": body, "at": time.monotonic(),
                                              "status": status})
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return "%s://127.0.0.1:%d%s" % ("https" if self.tls else "http", self.port, path)

    def script(self, path, statuses):
        with self.lock:
            self.scripts[path] = list(statuses)

    def received(self, path, type_=None):
        with self.lock:
            out = [r for r in self.requests if r["path"] == path]
        if type_ is not None:
            out = [r for r in out if json.loads(r["body"])["type"] == type_]
        return out

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def standard_webhooks_valid(secret, headers, body):
    """The Standard Webhooks check, written here from the spec: HMAC-SHA256 over
    id.timestamp.body with the base64-decoded whsec_ secret, base64 in the header."""
    key = base64.b64decode(secret[len("whsec_"):])
    signed = "%s.%s.%s" % (headers["webhook-id"], headers["webhook-timestamp"], body)
    expected = base64.b64encode(hmac.new(key, signed.encode(), hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(s, "v1," + expected)
               for s in headers["webhook-signature"].split(" "))


def masked(number):
    """All but the last 4 digits of an E.164 number masked, '+' kept."""
    return "+" + "*" * (len(number) - 5) + number[-4:]


class WebhookTestCase(OtpdTestCase):
    extra_config = WEBHOOK_CONFIG

    @classmethod
    def setUpClass(cls):
        cls.receiver = Receiver()
        cls.server = h.OtpdServer(extra_config=cls.extra_config)
        try:
            cls.server.start()
        except Exception:
            cls.server.cleanup()
            cls.receiver.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.receiver.stop()

    def app_with_webhook(self, path):
        name = "wh-" + path.strip("/").replace("/", "-")
        return self.server.create_app(name, "--webhook-url", self.receiver.url(path))

    def start(self, app, **extra):
        body = {"to": h.next_phone()}
        body.update(extra)
        r = self.server.start_verification(app["api_key"], body)
        self.assertEqual(r.status, 201, r)
        return r.json

    def event_rows(self, vid=None):
        con = sqlite3.connect(self.server.db_path, timeout=10)
        try:
            rows = con.execute("SELECT id, type, data, state, attempts, last_status, last_error "
                               "FROM events ORDER BY id").fetchall()
        finally:
            con.close()
        return [r for r in rows if vid is None or json.loads(r[2]).get("id") == vid]


class WebhookDeliveryTest(WebhookTestCase):

    def test_sec26_approved_event_is_signed_masked_and_carries_no_code(self):
        app = self.app_with_webhook("/approved")
        v = self.start(app, metadata={"order": "A-17"})
        code = self.server.wait_code(v["id"])
        r = self.server.check(app["api_key"], v["id"], code)
        self.assertEqual(r.json["status"], "approved", r)

        got = h.wait_until("verification.approved at the receiver",
                           lambda: self.receiver.received("/approved", "verification.approved"))
        self.assertEqual(len(got), 1)
        req = got[0]
        headers = {k.lower(): v for k, v in req["headers"].items()}
        self.assertTrue(standard_webhooks_valid(app["webhook_secret"], headers, req["body"]),
                        headers)
        self.assertFalse(standard_webhooks_valid(app["webhook_secret"], headers,
                                                 req["body"] + " "))
        self.assertLess(abs(int(headers["webhook-timestamp"]) - time.time()), 60)
        self.assertTrue(headers["webhook-id"])
        body = json.loads(req["body"])
        self.assertEqual(set(body), {"type", "timestamp", "data"})
        data = body["data"]
        self.assertEqual(data["id"], v["id"])
        self.assertEqual(data["status"], "approved")
        self.assertEqual(data["to"], masked(v["to"]))
        self.assertEqual(data["metadata"], {"order": "A-17"})
        self.assertNotIn(v["to"], req["body"])
        self.assertNotIn(v["to"][1:], req["body"])
        # The delivery's own event comes too. It may come after the approval:
        # the code can be read from the log provider's file and checked before
        # the dispatcher has committed the send's outcome.
        h.wait_until("delivery.updated at the receiver",
                     lambda: self.receiver.received("/approved", "delivery.updated"))
        # No code in any request the receiver got.
        for r in self.receiver.received("/approved"):
            self.assertFalse(h.contains_code(r["body"], code), r["body"])
            self.assertNotIn(v["to"][1:], r["body"])

    def test_sec27_a_failing_receiver_gets_a_retry_with_the_same_id(self):
        self.receiver.script("/flaky", [500])
        app = self.app_with_webhook("/flaky")
        v = self.start(app)
        self.assertEqual(self.server.cancel(app["api_key"], v["id"]).status, 200)

        def retried():
            # Whichever event got the 500 (delivery.updated or verification.canceled,
            # as the sender happened to order them), its tries so far.
            got = self.receiver.received("/flaky")
            failed = [r for r in got if r["status"] == 500]
            if not failed:
                return None
            tries = [r for r in got
                     if r["headers"]["webhook-id"] == failed[0]["headers"]["webhook-id"]]
            return tries if len(tries) >= 2 else None

        first, second = h.wait_until("a retry of the event answered 500", retried, timeout=15)
        self.assertEqual((first["status"], second["status"]), (500, 200))
        self.assertEqual(first["body"], second["body"])
        self.assertGreaterEqual(second["at"] - first["at"], 0.45)  # first_retry_s = 1, jitter ≥ ½
        self.assertTrue(standard_webhooks_valid(
            app["webhook_secret"], {k.lower(): x for k, x in second["headers"].items()},
            second["body"]))
        event_id = int(first["headers"]["webhook-id"][len("evt_"):])
        rows = h.wait_until("the event recorded as delivered",
                            lambda: [r for r in self.event_rows(v["id"])
                                     if r[0] == event_id and r[3] == "delivered"])
        self.assertEqual(rows[0][4], 2)      # attempts
        self.assertEqual(rows[0][5], 200)    # last_status

    def test_sec27_gone_disables_the_endpoint_until_the_url_is_given_again(self):
        self.receiver.script("/gone", [410])
        app = self.app_with_webhook("/gone")
        v1 = self.start(app)
        self.server.cancel(app["api_key"], v1["id"])
        h.wait_until("the 410", lambda: self.receiver.received("/gone"))
        shown = h.wait_until(
            "the app shown disabled",
            lambda: (lambda j: j if j["webhook_disabled"] else None)(
                json.loads(self.server.otpctl("app", "show", app["app_id"]).stdout)))
        self.assertIn("410", shown["webhook_disabled_reason"])
        count = len(self.receiver.received("/gone"))
        v2 = self.start(app)
        self.server.cancel(app["api_key"], v2["id"])
        time.sleep(1.5)
        self.assertEqual(len(self.receiver.received("/gone")), count,
                         "a disabled endpoint receives nothing")
        updated = json.loads(self.server.otpctl("app", "update", app["app_id"], "--webhook-url",
                                                self.receiver.url("/gone")).stdout)
        self.assertFalse(updated["webhook_disabled"])
        tail = [json.loads(line) for line in self.server.otpctl(
            "audit", "tail", "--app", app["app_id"], "-n", "50").stdout.splitlines()]
        self.assertEqual([(a["actor"], a["detail"]) for a in tail if a["action"] == "app.update"],
                         [("otpctl", "webhook enabled again")])
        v3 = self.start(app)
        self.server.cancel(app["api_key"], v3["id"])
        got = h.wait_until("events again after re-enabling",
                           lambda: [r for r in self.receiver.received("/gone",
                                                                      "verification.canceled")
                                    if json.loads(r["body"])["data"]["id"] == v3["id"]])
        self.assertEqual(len(got), 1)

    def test_sec18_recovery_code_events_reach_the_webhook(self):
        app = self.app_with_webhook("/recovery")
        r = self.server.request("POST", "/v1/users/rita/recovery-codes", key=app["api_key"])
        self.assertEqual(r.status, 201, r)
        codes = r.json["codes"]
        r = self.server.request("POST", "/v1/users/rita/verify", {"code": codes[0]},
                                key=app["api_key"])
        self.assertTrue(r.json["valid"], r)
        issued = h.wait_until("recovery_codes.issued",
                              lambda: self.receiver.received("/recovery", "recovery_codes.issued"))
        used = h.wait_until("recovery_code.used",
                            lambda: self.receiver.received("/recovery", "recovery_code.used"))
        self.assertEqual(json.loads(issued[0]["body"])["data"], {"user_id": "rita", "count": 10})
        self.assertEqual(json.loads(used[0]["body"])["data"], {"user_id": "rita", "remaining": 9})
        for req in issued + used:
            headers = {k.lower(): v for k, v in req["headers"].items()}
            self.assertTrue(standard_webhooks_valid(app["webhook_secret"], headers, req["body"]))
            for c in codes:
                self.assertNotIn(c, req["body"])

    def test_sec32_log_lines_cannot_be_forged_by_input(self):
        forged = '"}\n{"ts":"x","level":"info","event":"forged","to":"+306912345678'
        app = self.app_with_webhook("/forge")
        key = app["api_key"]
        quoted = "".join("%%%02X" % b for b in forged.encode())
        self.server.request("GET", "/v1/verifications/" + quoted, key=key)
        self.server.request("POST", "/v1/verifications/%s/check" % quoted, {"code": "123456"},
                            key=key)
        self.server.request("POST", "/v1/verifications", {"to": forged}, key=key)
        self.server.start_verification(key, {"to": h.next_phone(), "metadata": {"x": forged}},
                                       headers={"Idempotency-Key": "k" + quoted})
        v = self.start(app, metadata={"note": forged})
        self.server.cancel(key, v["id"])
        h.wait_until("the canceled event", lambda: self.receiver.received(
            "/forge", "verification.canceled"))
        time.sleep(0.3)  # the log is flushed in batches
        for line in self.server.stderr().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)  # every line is one JSON object
            self.assertNotEqual(entry.get("event"), "forged", line)

    def test_otpctl_webhook_test_sends_a_signed_ping(self):
        app = self.app_with_webhook("/ping")
        p = self.server.otpctl("webhook", "test", app["app_id"])
        self.assertEqual(json.loads(p.stdout), {"status": 200, "delivered": True})
        got = self.receiver.received("/ping", "ping")
        self.assertEqual(len(got), 1)
        headers = {k.lower(): v for k, v in got[0]["headers"].items()}
        self.assertTrue(standard_webhooks_valid(app["webhook_secret"], headers, got[0]["body"]))
        # A receiver that answers 500: not delivered, non-zero exit.
        self.receiver.script("/ping", [500])
        p = self.server.otpctl("webhook", "test", app["app_id"], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(json.loads(p.stdout), {"status": 500, "delivered": False})
        tail = [json.loads(line) for line in self.server.otpctl(
            "audit", "tail", "--app", app["app_id"], "-n", "5").stdout.splitlines()]
        tests = [a for a in tail if a["action"] == "webhook.test"]
        self.assertEqual([a["result"] for a in tests], ["delivered", "failed"])
        self.assertEqual({a["actor"] for a in tests}, {"otpctl"})

    def test_sec32_audit_tail_shows_check_decisions_masked_and_never_a_code(self):
        app = self.app_with_webhook("/audit")
        v = self.start(app)
        code = self.server.wait_code(v["id"])
        wrong = h.wrong_code(code)
        self.assertFalse(self.server.check(app["api_key"], v["id"], wrong).json["valid"])
        self.assertTrue(self.server.check(app["api_key"], v["id"], code).json["valid"])
        p = self.server.otpctl("audit", "tail", "--app", "wh-audit", "-n", "50")
        rows = [json.loads(line) for line in p.stdout.splitlines()]
        self.assertTrue(all(set(r) == {"id", "at", "app_id", "actor", "action", "subject",
                                       "result", "detail"} for r in rows))
        self.assertEqual([r["id"] for r in rows], sorted(r["id"] for r in rows), "oldest first")
        mine = [r for r in rows if r["subject"] == v["id"]]
        self.assertEqual([(r["action"], r["result"]) for r in mine],
                         [("verification.start", "started"), ("verification.check", "invalid"),
                          ("verification.check", "valid")])
        for r in mine:
            self.assertEqual(r["app_id"], app["app_id"])
            self.assertIn(masked(v["to"]), r["detail"])
            self.assertTrue(r["at"].endswith("Z"), r["at"])
        self.assertIn(("app.create", "otpctl"), [(r["action"], r["actor"]) for r in rows])
        self.assertNotIn(v["to"][1:], p.stdout)
        for c in (code, wrong):
            self.assertFalse(h.contains_code(p.stdout, c))
            self.assertFalse(h.contains_code(self.server.stderr(), c), "code in otpd's log")
        # The database: audit and events hold no code and no full number.
        con = sqlite3.connect(self.server.db_path, timeout=10)
        try:
            texts = [row[0] for row in con.execute(
                "SELECT detail || ' ' || subject || ' ' || result FROM audit UNION ALL "
                "SELECT data FROM events")]
        finally:
            con.close()
        for t in texts:
            self.assertFalse(h.contains_code(t, code), t)
            self.assertNotIn(v["to"][1:], t)
        # The audit table refuses changes (append-only).
        con = sqlite3.connect(self.server.db_path, timeout=10)
        try:
            with self.assertRaises(sqlite3.DatabaseError):
                con.execute("DELETE FROM audit")
        finally:
            con.close()


class WebhookTlsTest(WebhookTestCase):
    """An https receiver whose certificate comes from a CA otpd does not trust: the
    webhook is not delivered (SECURITY.md 21: outbound TLS verifies certificates)."""

    @classmethod
    def setUpClass(cls):
        cls.ca_dir = tempfile.mkdtemp(prefix="otpd-wh-ca-")
        _, key, cert = h.make_test_ca(cls.ca_dir)
        super().setUpClass()
        cls.receiver.stop()
        cls.receiver = Receiver(tls=(cert, key))

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.ca_dir, ignore_errors=True)

    def test_sec21_an_untrusted_certificate_is_not_sent_to(self):
        app = self.app_with_webhook("/tls")
        self.assertTrue(self.receiver.url("/tls").startswith("https://"))
        v = self.start(app)
        self.server.cancel(app["api_key"], v["id"])
        rows = h.wait_until(
            "the failed TLS try recorded on the event",
            lambda: [r for r in self.event_rows(v["id"])
                     if r[1] == "verification.canceled" and r[4] >= 1 and r[6]])
        self.assertEqual(rows[0][3], "pending")
        self.assertEqual(rows[0][5], 0)  # no HTTP answer
        # curl's words for a certificate that does not verify.
        self.assertIn("SSL peer certificate", rows[0][6])
        self.assertEqual(self.receiver.received("/tls"), [])


class WebhookPrivateTargetTest(WebhookTestCase):
    """otpd on its defaults: a loopback webhook target is refused (SECURITY.md 28)."""

    extra_config = ""

    def test_sec28_a_loopback_target_is_refused_and_receives_nothing(self):
        app = self.app_with_webhook("/private")
        v = self.start(app)
        self.server.cancel(app["api_key"], v["id"])
        rows = h.wait_until(
            "the refusal recorded on the event",
            lambda: [r for r in self.event_rows(v["id"])
                     if r[1] == "verification.canceled" and r[4] >= 1 and r[6]])
        self.assertIn("refused", rows[0][6])
        self.assertIn("127.0.0.1 (loopback)", rows[0][6])
        self.assertEqual(rows[0][3], "pending")  # retried on the schedule, never sent
        self.assertEqual(self.receiver.received("/private"), [])
        p = self.server.otpctl("webhook", "test", app["app_id"], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("loopback", p.stderr)
        self.assertEqual(self.receiver.received("/private"), [])
        self.assertIn('"result":"refused"', self.server.stderr())


if __name__ == "__main__":
    unittest.main()
