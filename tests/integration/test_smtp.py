"""Integration tests of the `smtp` provider (SPEC §2 [[provider]] type "smtp", §4.1)
against a real SMTP server: tests/peers/smtp_peer.js (npm smtp-server + mailparser).

Run: OTPD_BIN=... OTPCTL_BIN=... python3 -m unittest -v test_smtp
Needs node and npm; the npm packages pinned in the repo's package-lock.json are
installed with `npm ci` when node_modules is missing.
"""

import json
import os
import re
import shutil
import tempfile
import unittest

import otpd_harness as h

PEER = os.path.join(h.ROOT, "tests", "peers", "smtp_peer.js")
FROM = "Verify <no-reply@example.com>"
PASSWORD = "smtp-pw-5f1c2e9a7b"

# The harness's log provider carries every channel but email: email goes to smtp
# only, so a failed email cannot be "rescued" by the log provider.
h.ALL_CHANNELS = [c for c in h.ALL_CHANNELS if c != "email"]


def setUpModule():
    h.require_node_packages("test_smtp", "smtp-server", "mailparser")


class SmtpPeer(h.PeerProcess):
    """tests/peers/smtp_peer.js on a free loopback port, recording to a JSONL file."""

    name = "smtp peer"

    def __init__(self, *flags):
        super().__init__("otpd-smtp-")
        self.out_path = os.path.join(self.dir, "mail.jsonl")
        [self.port] = self._start(["node", PEER, "--port", "0", "--out", self.out_path]
                                  + list(flags))

    def messages(self):
        try:
            with open(self.out_path, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def wait_messages(self, count=1, timeout=8.0):
        """The messages received, once there are at least `count`."""
        return self._wait_count("message(s)", self.messages, count, timeout)


def smtp_provider(url, **extra):
    lines = ['[[provider]]', 'name = "mail"', 'type = "smtp"', 'channels = ["email"]',
             'url = "%s"' % url, 'from = "%s"' % FROM]
    for k, v in extra.items():
        lines.append('%s = %s' % (k, json.dumps(v)))
    return "\n".join(lines) + "\n"


class SmtpTestCase(h.ProviderTestCase):
    app_name = "mailapp"
    secrets = (PASSWORD,)

    def peer(self, *flags):
        return self.add_peer(SmtpPeer(*flags))

    def deliver_greek(self, server, key, peer, to):
        v = self.start(server, key, {"to": to, "channel": "email", "locale": "el"})
        msgs = peer.wait_messages(1)
        self.assertEqual(len(msgs), 1, msgs)
        m = msgs[0]
        self.assertEqual(m["to"], [to])
        self.assertEqual(m["from"], "no-reply@example.com")
        self.assertEqual(m["subject"], "Ο κωδικός επαλήθευσης mailapp")
        match = re.search(r"είναι ([0-9]{4,10})\.", m["text"])
        self.assertIsNotNone(match, m["text"])
        code = match.group(1)
        self.assertEqual(m["text"].rstrip("\n"),
                         "Ο κωδικός επαλήθευσης mailapp είναι %s.\n\nΛήγει σε 10 λεπτά. "
                         "Αν δεν τον ζητήσατε, αγνοήστε αυτό το μήνυμα." % code)
        self.assertIn("<strong>%s</strong>" % code, m["html"])
        for header in ("from", "to", "subject", "date", "message-id", "mime-version",
                       "content-type"):
            self.assertIn(header, m["raw_headers"], m["raw_headers"])
        self.assertIn("multipart/alternative", m["raw_headers"]["content-type"])
        self.assertRegex(m["raw_headers"]["message-id"], r"<[0-9a-f]{32}@example\.com>")
        v = self.wait_deliveries(server, key, v["id"], ["sent"])
        self.assertEqual(v["deliveries"][0]["status"], "sent", v)
        self.assertEqual(v["deliveries"][0]["provider"], "mail", v)
        self.approve(server, key, v["id"], code)
        return m, code


class SmtpDeliveryTest(SmtpTestCase):

    def test_greek_email_arrives_and_its_code_approves(self):
        peer = self.peer()
        server, key = self.otpd(smtp_provider("smtp://127.0.0.1:%d" % peer.port,
                                              username="otpd", password=PASSWORD))
        m, code = self.deliver_greek(server, key, peer, "someone@example.com")
        self.assertEqual(m["auth_user"], "otpd")
        self.assertFalse(m["secure"])
        self.assert_no_secrets(server, [code])
        self._clean = True

    def test_rejected_recipient_fails_over_to_sms_with_same_code(self):
        peer = self.peer("--reject-rcpt")
        server, key = self.otpd(smtp_provider("smtp://127.0.0.1:%d" % peer.port,
                                              username="otpd", password=PASSWORD))
        phone = h.next_phone()
        v = self.start(server, key, {"to": "someone@example.com",
                                     "workflow": [{"channel": "email"},
                                                  {"channel": "sms", "to": phone}]})
        sms = server.wait_messages(v["id"], 1, timeout=8)
        self.assertEqual(sms[0]["channel"], "sms")
        self.assertEqual(sms[0]["to"], phone)
        code = sms[0]["code"]
        v = self.wait_deliveries(server, key, v["id"], ["failed", "sent"])
        self.assertEqual([d["channel"] for d in v["deliveries"]], ["email", "sms"], v)
        self.assertEqual([d["status"] for d in v["deliveries"]], ["failed", "sent"], v)
        self.assertEqual(peer.messages(), [])
        self.assertRegex(server.stderr(), r'"event":"provider_failed".*550')
        r = server.check(key, v["id"], code)
        self.assertIs(r.json["valid"], True, r)
        self.assertEqual(r.json["status"], "approved", r)
        self.assert_no_secrets(server, [code])
        self._clean = True


class SmtpTlsTest(SmtpTestCase):
    """smtps:// and STARTTLS against a certificate from a test CA (ca_file),
    generated for this run by otpd_harness.make_test_ca."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tls_dir = tempfile.mkdtemp(prefix="otpd-smtp-tls-")
        cls.ca, cls.key_file, cls.cert = h.make_test_ca(cls.tls_dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tls_dir, ignore_errors=True)
        super().tearDownClass()

    def test_smtps_implicit_tls(self):
        peer = self.peer("--key", self.key_file, "--cert", self.cert, "--secure")
        server, key = self.otpd(smtp_provider("smtps://127.0.0.1:%d" % peer.port,
                                              ca_file=self.ca))
        m, code = self.deliver_greek(server, key, peer, "tls@example.com")
        self.assertTrue(m["secure"])
        self.assert_no_secrets(server, [code])
        self._clean = True

    def test_starttls_required(self):
        peer = self.peer("--key", self.key_file, "--cert", self.cert)
        server, key = self.otpd(smtp_provider("smtp://127.0.0.1:%d" % peer.port,
                                              starttls=True, ca_file=self.ca,
                                              username="otpd", password=PASSWORD))
        m, code = self.deliver_greek(server, key, peer, "starttls@example.com")
        self.assertTrue(m["secure"])
        self.assert_no_secrets(server, [code])
        self._clean = True

    def test_starttls_required_but_not_offered_fails(self):
        peer = self.peer()  # no certificate: STARTTLS is not offered
        server, key = self.otpd(smtp_provider("smtp://127.0.0.1:%d" % peer.port,
                                              starttls=True, ca_file=self.ca,
                                              username="otpd", password=PASSWORD))
        v = self.start(server, key, {"to": "plain@example.com", "channel": "email"})
        v = self.wait_deliveries(server, key, v["id"], ["failed"])
        self.assertEqual(v["deliveries"][0]["status"], "failed", v)
        self.assertEqual(peer.messages(), [])
        self.assert_no_secrets(server, [])
        self._clean = True

    def test_sec21_certificate_is_verified(self):
        peer = self.peer("--key", self.key_file, "--cert", self.cert, "--secure")
        # No ca_file: the test CA is not trusted, so the send must fail.
        server, key = self.otpd(smtp_provider("smtps://127.0.0.1:%d" % peer.port))
        v = self.start(server, key, {"to": "untrusted@example.com", "channel": "email"})
        v = self.wait_deliveries(server, key, v["id"], ["failed"])
        self.assertEqual(v["deliveries"][0]["status"], "failed", v)
        self.assertEqual(peer.messages(), [])
        self._clean = True


if __name__ == "__main__":
    unittest.main()
