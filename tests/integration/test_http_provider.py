"""Integration tests of the `http` provider (SPEC §2 [[provider]] type "http",
§4.1 failover and delivery reports) over the real otpd binary and a real HTTP
peer: tests/peers/http_peer.py (Python standard library).

Run: OTPD_BIN=... OTPCTL_BIN=... python3 -m unittest -v test_http_provider
"""

import json
import os
import sys
import time
import unittest
import urllib.request

import otpd_harness as h

PEER = os.path.join(h.ROOT, "tests", "peers", "http_peer.py")
ACCESS_TOKEN = "wa-access-7c1e5b2d90"   # must never show in otpd's output
DLR_TOKEN = "dlr-2f9d4c8a6b1e7f3a5c0d"

# The harness's log provider carries every channel but whatsapp: whatsapp goes to
# the http providers only, so a failed whatsapp send cannot be rescued by the log.
h.ALL_CHANNELS = [c for c in h.ALL_CHANNELS if c != "whatsapp"]

WHATSAPP_BODY = (
    '{"messaging_product":"whatsapp","to":"{{to_digits}}","type":"template",'
    '"template":{"name":"otp_code","language":{"code":"{{locale}}"},"components":['
    '{"type":"body","parameters":[{"type":"text","text":"{{code}}"}]},'
    '{"type":"button","sub_type":"url","index":"0",'
    '"parameters":[{"type":"text","text":"{{code}}"}]}]}}')


class HttpPeer(h.PeerProcess):
    """tests/peers/http_peer.py on a free loopback port."""

    name = "http peer"

    def __init__(self, *flags):
        super().__init__("otpd-http-peer-")
        [self.port] = self._start([sys.executable, PEER, "--port", "0"] + list(flags))

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def _control(self, path, payload=None):
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url(path), data=data,
                                     method="GET" if data is None else "POST")
        with urllib.request.urlopen(req, timeout=15) as r:
            return json.loads(r.read().decode())

    def answer(self, *answers):
        self._control("/_peer/answers", list(answers))

    def requests(self):
        return self._control("/_peer/requests")

    def wait_requests(self, count=1, timeout=8.0):
        """The requests received, once there are at least `count`."""
        return self._wait_count("request(s)", self.requests, count, timeout)

    def post_report(self, otpd, provider, body, token=DLR_TOKEN,
                    content_type="application/json"):
        """The peer POSTs a delivery report to otpd's endpoint; returns (status, body)."""
        url = "http://127.0.0.1:%d/v1/providers/%s/dlr" % (otpd.port, provider)
        if token is not None:
            url += "?token=" + token
        r = self._control("/_peer/dlr", {"url": url, "body": body,
                                         "content_type": content_type})
        return r["status"], r["body"]


def http_provider(name, url, channels=("whatsapp",), **extra):
    lines = ['[[provider]]', 'name = "%s"' % name, 'type = "http"',
             'channels = [%s]' % ", ".join('"%s"' % c for c in channels),
             'url = "%s"' % url,
             'headers = { Authorization = "Bearer %s" }' % ACCESS_TOKEN,
             "body = '%s'" % WHATSAPP_BODY,
             'message_id = "/messages/0/id"']
    for k, v in extra.items():
        lines.append('%s = %s' % (k, json.dumps(v)))
    return "\n".join(lines) + "\n\n"


def with_reports(**extra):
    extra.update(dlr_token=DLR_TOKEN, dlr_list="/entry/*/changes/*/value/statuses",
                 dlr_id="/id", dlr_status="/status", dlr_delivered=["delivered", "read"],
                 dlr_failed=["failed"])
    return extra


def whatsapp_report(message_id, status):
    return json.dumps({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "statuses": [{"id": message_id, "status": status,
                          "recipient_id": "306912345678"}]}}]}]})


def code_of(request):
    """The code in a WhatsApp template request the peer recorded."""
    body = json.loads(request["body"])
    params = body["template"]["components"][0]["parameters"]
    return params[0]["text"]


class HttpProviderTestCase(h.ProviderTestCase):
    app_name = "waapp"
    secrets = (ACCESS_TOKEN, DLR_TOKEN,
               "/v21.0/")  # no URL in the logs

    def peer(self, *flags):
        return self.add_peer(HttpPeer(*flags))

    def assert_no_secrets(self, server, codes):
        """As the base's, and no code in any HTTP response of the run either."""
        super().assert_no_secrets(server, codes)
        for r in h.RESPONSES:
            for code in codes:
                self.assertFalse(h.contains_code(r.body, code), r)


class HttpSendTest(HttpProviderTestCase):

    def test_whatsapp_request_reaches_the_provider_templated(self):
        peer = self.peer()
        server, key = self.otpd(http_provider(
            "wa", peer.url("/v21.0/PHONE_ID/messages")))
        phone = h.next_phone()
        v = self.start(server, key, {"to": phone, "channel": "whatsapp", "locale": "el"})
        q = peer.wait_requests(1)[0]
        self.assertEqual(q["method"], "POST")
        self.assertEqual(q["path"], "/v21.0/PHONE_ID/messages")
        self.assertEqual(q["headers"]["authorization"], "Bearer " + ACCESS_TOKEN)
        self.assertEqual(q["headers"]["content-type"], "application/json")
        body = json.loads(q["body"])
        self.assertEqual(body["to"], phone[1:])
        self.assertEqual(body["template"]["language"]["code"], "el")
        code = code_of(q)
        self.assertRegex(code, r"^[0-9]{6}$")
        self.assertEqual(body["template"]["components"][1]["parameters"][0]["text"], code)
        v = self.wait_deliveries(server, key, v["id"], ["sent"])
        self.assertEqual(v["deliveries"][0]["provider"], "wa", v)
        self.assertEqual(v["deliveries"][0]["status"], "sent", v)
        self.approve(server, key, v["id"], code)
        self.assertEqual(len(peer.requests()), 1)
        self.assert_no_secrets(server, [code])
        self._clean = True

    def test_server_error_fails_over_to_the_next_provider_of_the_channel(self):
        peer = self.peer()
        peer.answer({"status": 503, "body": '{"error":"overloaded"}'})
        server, key = self.otpd(
            http_provider("wa-primary", peer.url("/v21.0/primary/messages")) +
            http_provider("wa-backup", peer.url("/v21.0/backup/messages")))
        v = self.start(server, key, {"to": h.next_phone(), "channel": "whatsapp"})
        reqs = peer.wait_requests(2)
        self.assertEqual([q["path"] for q in reqs],
                         ["/v21.0/primary/messages", "/v21.0/backup/messages"])
        self.assertEqual(code_of(reqs[0]), code_of(reqs[1]))
        # Each provider tried is one delivery.
        v = self.wait_deliveries(server, key, v["id"], ["failed", "sent"])
        self.assertEqual([(d["provider"], d["status"]) for d in v["deliveries"]],
                         [("wa-primary", "failed"), ("wa-backup", "sent")], v)
        self.assertRegex(server.stderr(),
                         r'"event":"provider_failed","provider":"wa-primary".*HTTP 503')
        self.approve(server, key, v["id"], code_of(reqs[1]))
        time.sleep(0.3)
        self.assertEqual(len(peer.requests()), 2)  # no retry of a 5xx
        self.assert_no_secrets(server, [code_of(reqs[0])])
        self._clean = True

    def test_timeout_fails_over_to_the_next_step_with_the_same_code(self):
        peer = self.peer()
        peer.answer({"status": 200, "delay_ms": 3000})
        server, key = self.otpd(http_provider("wa", peer.url("/v21.0/PHONE_ID/messages"),
                                              timeout_ms=500))
        phone = h.next_phone()
        v = self.start(server, key, {"to": phone, "workflow": [
            {"channel": "whatsapp", "timeout_s": 60}, {"channel": "sms"}]})
        sms = server.wait_messages(v["id"], 1, timeout=8)
        self.assertEqual(sms[0]["channel"], "sms")
        code = code_of(peer.requests()[0])
        self.assertEqual(sms[0]["code"], code)
        v = self.wait_deliveries(server, key, v["id"], ["failed", "sent"])
        self.assertEqual([d["status"] for d in v["deliveries"]], ["failed", "sent"], v)
        time.sleep(0.5)
        self.assertEqual(len(peer.requests()), 1)  # sent once: never retried after sending
        self.assert_no_secrets(server, [code])
        self._clean = True

    def test_refused_connection_fails_over_to_the_next_step(self):
        peer = self.peer("--listen-after-ms", "60000")  # bound, refusing connections
        server, key = self.otpd(http_provider("wa", peer.url("/v21.0/PHONE_ID/messages"),
                                              connect_retries=1))
        v = self.start(server, key, {"to": h.next_phone(), "workflow": [
            {"channel": "whatsapp", "timeout_s": 60}, {"channel": "sms"}]})
        sms = server.wait_messages(v["id"], 1, timeout=8)
        v = self.wait_deliveries(server, key, v["id"], ["failed", "sent"])
        self.assertEqual([d["channel"] for d in v["deliveries"]], ["whatsapp", "sms"], v)
        self.assertRegex(server.stderr(), r'"event":"provider_failed","provider":"wa".*2 attempts')
        self.approve(server, key, v["id"], sms[0]["code"])
        self._clean = True


class HttpDeliveryReportTest(HttpProviderTestCase):
    """Reports through POST /v1/providers/{name}/dlr (main's route)."""

    def sent(self, workflow=None):
        peer = self.peer()
        server, key = self.otpd(
            http_provider("wa", peer.url("/v21.0/PHONE_ID/messages"), **with_reports()) +
            http_provider("wa-noreports", peer.url("/v21.0/other/messages"),
                          channels=("viber",)))
        body = {"to": h.next_phone()}
        if workflow:
            body["workflow"] = workflow
        else:
            body["channel"] = "whatsapp"
        v = self.start(server, key, body)
        q = peer.wait_requests(1)[0]
        v = self.wait_deliveries(server, key, v["id"], ["sent"])
        self.assertEqual(v["deliveries"][0]["status"], "sent", v)
        return peer, server, key, v, q

    def test_delivered_report_marks_the_delivery(self):
        peer, server, key, v, q = self.sent()
        status, body = peer.post_report(server, "wa", whatsapp_report(q["id"], "delivered"))
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"accepted": 1, "matched": 1})
        v = self.wait_deliveries(server, key, v["id"], ["delivered"])
        self.assertEqual(v["deliveries"][0]["status"], "delivered", v)
        self.assertEqual(v["status"], "pending", v)
        # "sent" and "read"-style words that drive nothing are accepted, not errors.
        status, body = peer.post_report(server, "wa", whatsapp_report(q["id"], "sent"))
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["accepted"], 0, body)
        self.approve(server, key, v["id"], code_of(q))
        self.assert_no_secrets(server, [code_of(q)])
        self._clean = True

    def test_failed_report_fires_the_next_step_with_the_same_code(self):
        peer, server, key, v, q = self.sent(
            workflow=[{"channel": "whatsapp", "timeout_s": 300}, {"channel": "sms"}])
        self.assertEqual(server.messages_for(v["id"]), [])  # the sms waits for 300 s
        status, body = peer.post_report(server, "wa", whatsapp_report(q["id"], "failed"))
        self.assertEqual(status, 200, body)
        sms = server.wait_messages(v["id"], 1, timeout=5)
        self.assertEqual(sms[0]["channel"], "sms")
        self.assertEqual(sms[0]["code"], code_of(q))
        v = self.wait_deliveries(server, key, v["id"], ["failed", "sent"])
        self.assertEqual([d["status"] for d in v["deliveries"]], ["failed", "sent"], v)
        self.approve(server, key, v["id"], sms[0]["code"])
        self._clean = True

    def test_wrong_token_is_refused_and_changes_nothing(self):
        peer, server, key, v, q = self.sent(
            workflow=[{"channel": "whatsapp", "timeout_s": 300}, {"channel": "sms"}])
        report = whatsapp_report(q["id"], "failed")
        for token in ("wrong-token-of-good-length", DLR_TOKEN[:-1], "", None):
            status, body = peer.post_report(server, "wa", report, token=token)
            self.assertEqual(status, 401, (token, body))
            self.assertEqual(json.loads(body)["code"], "unauthorized", body)
        # A provider without dlr_token takes no reports, even with wa's token.
        status, body = peer.post_report(server, "wa-noreports", report)
        self.assertEqual(status, 401, body)
        status, body = peer.post_report(server, "nope", report)
        self.assertEqual(status, 404, body)
        status, body = peer.post_report(server, "wa", "{not json")
        self.assertEqual(status, 400, body)
        self.assertEqual(json.loads(body)["code"], "invalid_request", body)
        time.sleep(0.5)
        v = server.get(key, v["id"]).json
        # The whatsapp delivery is still sent; the sms step still waits for its timer.
        self.assertEqual([(d["channel"], d["status"]) for d in v["deliveries"]],
                         [("whatsapp", "sent"), ("sms", "queued")], v)
        self.assertEqual(server.messages_for(v["id"]), [])
        self.assert_no_secrets(server, [code_of(q)])
        self._clean = True


if __name__ == "__main__":
    unittest.main()
