"""Input hardening and slow clients against the real otpd (SECURITY.md 22, 25, 32).

- 25: header count and size, request-target length, every string field bounded,
  deep JSON, metadata over 4 KiB: each a problem+json answer with its documented
  code, and nothing stored; 200 slowloris connections do not stop a normal client
  and are closed at the head deadline; past max_connections a client is told 503.
- 32: input cannot forge or split a log line.
- 22: no route takes a code or key in the URL; the DLR token is the one query secret.

Run: OTPD_BIN=... OTPCTL_BIN=... python3 -m unittest -v test_hardening
"""

import http.client
import json
import select
import socket
import sqlite3
import time
import unittest

import otpd_harness as h


def raw_request(port, data, timeout=10.0):
    """Sends `data` (bytes) on a new connection; returns (status, headers, json body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        r = http.client.HTTPResponse(s)
        r.begin()
        body = r.read().decode()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), json.loads(body)


def table_counts(db_path):
    """Rows in every table of otpd's SQLite store, but the per-app request
    buckets: every request, a refused one too, spends the app's request rate
    (so a flood of bad requests is limited like any other)."""
    db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=10)
    try:
        names = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name <> 'request_buckets'")]
        return {n: db.execute('SELECT COUNT(*) FROM "%s"' % n).fetchone()[0] for n in names}
    finally:
        db.close()


class HardeningCase(unittest.TestCase):
    server_config = ""

    def setUp(self):
        self.server = h.OtpdServer(server_config=self.server_config)
        self.server.start()
        self.key = self.server.create_app("hard")["api_key"]

    def tearDown(self):
        self.server.stop()
        self.server.cleanup()

    def assert_problem(self, r, status, code, field=None):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.content_type, "application/problem+json", r)
        self.assertEqual(r.json["code"], code, r)
        if field is not None:
            fields = [e["field"] for e in r.json.get("errors", [])]
            self.assertIn(field, fields, r)


class InputLimitsTest(HardeningCase):

    def test_sec25_header_count_header_size_and_url_length(self):
        port = self.server.port
        many = "".join("X-H%d: v\r\n" % i for i in range(100))  # + Host = 101 fields
        status, headers, body = raw_request(
            port, ("GET /healthz HTTP/1.1\r\nHost: t\r\n%s\r\n" % many).encode())
        self.assertEqual((status, body["code"]), (431, "invalid_request"), body)
        self.assertEqual(headers["content-type"], "application/problem+json")
        self.assertIn("header fields", body["detail"])

        status, _, body = raw_request(
            port, ("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: %s\r\n\r\n"
                   % ("a" * 20000)).encode())
        self.assertEqual((status, body["code"]), (431, "invalid_request"), body)

        for length in (9000, 100000):
            status, _, body = raw_request(
                port, ("GET /v1/verifications/%s HTTP/1.1\r\nHost: t\r\n\r\n"
                       % ("v" * length)).encode())
            self.assertEqual((status, body["code"]), (414, "invalid_request"), body)

        # Within the limits (Host, 98 more and a 4 KB one: 100 fields) it is served.
        fine = "".join("X-H%d: v\r\n" % i for i in range(98))
        status, _, _ = raw_request(
            port, ("GET /healthz HTTP/1.1\r\nHost: t\r\n%sX-Big: %s\r\n\r\n"
                   % (fine, "a" * 4000)).encode())
        self.assertEqual(status, 200)

    def test_sec25_every_string_field_is_bounded_and_bad_input_stores_nothing(self):
        s, key = self.server, self.key
        phone = h.next_phone()
        before = table_counts(s.db_path)
        ver = "/v1/verifications/ver_0123456789abcdef"
        fac = "/v1/users/alice/factors/fac_0123456789abcdef"
        cases = [
            ("/v1/verifications", {"to": "+30" + "1" * 252}, {}, "to"),
            ("/v1/verifications", {"to": "a" * 245 + "@example.com"}, {}, "to"),
            ("/v1/verifications", {"to": phone, "channel": "s" * 17}, {}, "channel"),
            ("/v1/verifications", {"to": phone, "locale": "en-" + "a" * 33}, {}, "locale"),
            ("/v1/verifications", {"to": phone, "workflow": [{"channel": "s" * 17}]}, {},
             "workflow[0].channel"),
            ("/v1/verifications", {"to": phone, "workflow": [{"channel": "email",
                                                               "to": "e" * 255}]}, {},
             "workflow[0].to"),
            ("/v1/verifications", {"to": phone, "metadata": {"a": "x" * 4089}}, {}, "metadata"),
            ("/v1/verifications", {"to": phone}, {"Idempotency-Key": "k" * 256},
             "Idempotency-Key"),
            ("/v1/verifications/check", {"to": "1" * 255, "code": "123456"}, {}, "to"),
            ("/v1/verifications/check", {"to": phone, "code": "1" * 65}, {}, "code"),
            (ver + "/check", {"code": "1" * 65}, {}, "code"),
            (ver + "/resend", {"channel": "s" * 17}, {}, "channel"),
            ("/v1/users/alice/factors", {"type": "totp", "label": "l" * 129}, {}, "label"),
            ("/v1/users/alice/factors", {"type": "totp", "issuer": "i" * 129}, {}, "issuer"),
            ("/v1/users/alice/factors", {"type": "totp", "algorithm": "S" * 17}, {},
             "algorithm"),
            ("/v1/users/alice/factors", {"type": "t" * 9}, {}, "type"),
            ("/v1/users/alice/factors", {"type": "hotp", "serial": "s" * 65}, {}, "serial"),
            ("/v1/users/alice/verify", {"code": "1" * 65}, {}, "code"),
            ("/v1/users/alice/verify", {"code": "123456", "factor_id": "f" * 65}, {},
             "factor_id"),
            (fac + "/activate", {"code": "1" * 65}, {}, "code"),
            (fac + "/resync", {"code1": "1" * 65, "code2": "123456"}, {}, "code1"),
            (fac + "/resync", {"code1": "123456", "code2": "1" * 65}, {}, "code2"),
            ("/v1/users/%s/factors" % ("u" * 129), {"type": "totp"}, {}, "user"),
            ("/v1/users/a%0Ab/factors", {"type": "totp"}, {}, "user"),
            ("/v1/users/a%20b/verify", {"code": "123456"}, {}, "user"),
        ]
        for path, body, headers, field in cases:
            with self.subTest(path=path, field=field):
                r = s.request("POST", path, body, key=key, headers=headers)
                self.assert_problem(r, 400, "invalid_request", field)
        # Nested deeper than 16 levels.
        deep = {"to": phone, "metadata": {}}
        node = deep["metadata"]
        for _ in range(20):
            node["a"] = {}
            node = node["a"]
        self.assert_problem(s.request("POST", "/v1/verifications", deep, key=key), 400,
                            "invalid_request", "body")
        # Over max_body_bytes (65536).
        self.assert_problem(
            s.request("POST", "/v1/verifications", {"to": phone, "x": "y" * 70000}, key=key),
            413, "payload_too_large")

        time.sleep(0.3)
        self.assertEqual(table_counts(s.db_path), before)
        self.assertEqual(s.messages(), [])

        # At the limits everything is accepted: 4096-byte metadata, 128-character label.
        r = s.start_verification(key, {"to": phone, "metadata": {"a": "x" * 4088}},
                                 headers={"Idempotency-Key": "k" * 255})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(len(json.dumps(r.json["metadata"], separators=(",", ":"))), 4096)
        r = s.request("POST", "/v1/users/%s/factors" % ("u" * 128),
                      {"type": "totp", "label": "l" * 128, "issuer": "i" * 128}, key=key)
        self.assertEqual(r.status, 201, r)


class SlowClientTest(HardeningCase):
    server_config = "header_timeout_s = 3"

    def test_sec25_slowloris_does_not_stop_a_normal_client(self):
        idle = []
        try:
            for i in range(200):
                c = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
                c.sendall(b"POST /v1/verifications HTTP/1.1\r\nHost: t\r\nX-Slow-%d: " % i)
                idle.append(c)
            sent = time.monotonic()

            t0 = time.monotonic()
            r = self.server.start_verification(self.key, {"to": h.next_phone()})
            self.assertEqual(r.status, 201, r)
            code = self.server.wait_code(r.json["id"])
            r = self.server.check(self.key, r.json["id"], code)
            self.assertEqual((r.status, r.json["status"]), (200, "approved"), r)
            self.assertLess(time.monotonic() - t0, 2.5, "the normal client was held up")

            # Each idle connection is closed at the head deadline (3 s), unanswered.
            closed = {}
            open_socks = list(idle)
            deadline = sent + 10
            while open_socks and time.monotonic() < deadline:
                ready, _, _ = select.select(open_socks, [], [], 0.5)
                for c in ready:
                    try:
                        data = c.recv(4096)
                    except ConnectionResetError:
                        data = b""
                    closed[c] = (time.monotonic() - sent, data)
                    open_socks.remove(c)
            self.assertEqual(open_socks, [], "%d connections still open after 10 s"
                             % len(open_socks))
            times = sorted(t for t, _ in closed.values())
            self.assertGreaterEqual(times[0], 2.0, "closed before the head deadline")
            self.assertLess(times[-1], 8.0)
            self.assertEqual({d for _, d in closed.values()}, {b""}, "slow clients got an answer")
        finally:
            for c in idle:
                c.close()
        self.assertEqual(self.server.request("GET", "/healthz").status, 200)


class ConnectionCapTest(HardeningCase):
    server_config = "max_connections = 20"

    def test_sec25_past_max_connections_clients_are_told_503(self):
        held = [socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
                for _ in range(20)]
        try:
            r = h.wait_until("a 503 past the cap",
                             lambda: (lambda x: x if x.status == 503 else None)(
                                 self.server.request("GET", "/readyz")))
            self.assert_problem(r, 503, "unavailable")
            self.assertEqual(r.header("Retry-After"), "1")
            held.pop().close()
            h.wait_until("a free connection slot",
                         lambda: self.server.request("GET", "/readyz").status == 200)
        finally:
            for c in held:
                c.close()


class LogForgingTest(HardeningCase):

    def test_sec32_input_cannot_forge_a_log_line(self):
        s, key = self.server, self.key
        forged = '\n{"ts":"2020-01-01T00:00:00.000Z","level":"error","event":"forged"}\n'
        sent = 0

        def send(method, path, body=None, headers=None, raw=None, k=key):
            nonlocal sent
            s.request(method, path, body, key=k, headers=headers, raw=raw)
            sent += 1

        enc = "%0A%7B%22event%22%3A%22forged%22%7D%0D%0A"
        send("POST", "/v1/verifications", {"to": "+3069" + forged})
        send("POST", "/v1/verifications", {"to": h.next_phone(), "locale": forged})
        send("POST", "/v1/verifications", {"to": h.next_phone()},
             headers={"Idempotency-Key": '"},"event":"forged'})
        send("POST", "/v1/verifications", raw='{"to":"' + forged.replace("\n", "\\n") + '"')
        send("GET", "/v1/verifications/ver_" + enc)
        send("POST", "/v1/users/" + enc + "/verify", {"code": forged})
        send("POST", "/v1/users/alice/verify", {"code": forged})
        send("POST", "/v1/providers/" + enc + "/dlr?token=" + enc, raw=forged)
        send("GET", "/nowhere/" + enc)
        send("POST", "/v1/verifications", {"to": h.next_phone()}, k='x","event":"forged')
        self.assertEqual(s.stop(), 0)

        lines = s.stderr().splitlines()
        requests = 0
        for line in lines:
            entry = json.loads(line)  # every line is one JSON object
            self.assertIsInstance(entry, dict, line)
            self.assertNotEqual(entry.get("event"), "forged", line)
            if entry.get("event") == "request":
                requests += 1
                self.assertEqual(set(entry), {"ts", "level", "event", "method", "route",
                                              "status", "ms"}, line)
        self.assertEqual(requests, sent, "one request line per request:\n" + s.stderr())


class NoSecretsInUrlsTest(HardeningCase):

    def test_sec22_no_code_or_key_in_a_url(self):
        spec = self.server.request("GET", "/openapi.json").json
        shared = spec["components"]["parameters"]

        def resolve(p):
            return shared[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p

        query, path_params = [], set()
        for path, item in spec["paths"].items():
            ops = [v for k, v in item.items() if k in ("get", "post", "put", "patch", "delete")]
            params = [resolve(p) for p in item.get("parameters", [])]
            for op in ops:
                params += [resolve(p) for p in op.get("parameters", [])]
            for p in params:
                if p["in"] == "query":
                    query.append((path, p["name"]))
                if p["in"] == "path":
                    path_params.add(p["name"])
        self.assertEqual(query, [("/v1/providers/{name}/dlr", "token")])
        self.assertEqual(path_params, {"id", "user", "name"})

        # A code in the query string is never read: the check needs it in the body.
        r = self.server.start_verification(self.key, {"to": h.next_phone()})
        vid = r.json["id"]
        code = self.server.wait_code(vid)
        r = self.server.request("POST", "/v1/verifications/%s/check?code=%s" % (vid, code), {},
                                key=self.key)
        self.assert_problem(r, 400, "invalid_request", "code")
        r = self.server.request("POST", "/v1/verifications/%s/check?code=%s" % (vid, code),
                                {"code": h.wrong_code(code)}, key=self.key)
        self.assertIs(r.json["valid"], False, r)
        # Nor is an API key.
        r = self.server.request("GET", "/v1/verifications/%s?api_key=%s" % (vid, self.key))
        self.assert_problem(r, 401, "unauthorized")
        self.assertEqual(self.server.get(self.key, vid).json["status"], "pending")


if __name__ == "__main__":
    unittest.main()
