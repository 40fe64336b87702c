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
import subprocess
import sys
import tempfile
import time
import unittest

import otpd_harness as h

ROOT = os.path.abspath(os.path.join(h.HERE, "..", ".."))
PEER = os.path.join(ROOT, "tests", "peers", "smtp_peer.js")
FROM = "Verify <no-reply@example.com>"
PASSWORD = "smtp-pw-5f1c2e9a7b"

# The harness's log provider carries every channel but email: email goes to smtp
# only, so a failed email cannot be "rescued" by the log provider.
h.ALL_CHANNELS = [c for c in h.ALL_CHANNELS if c != "email"]


def setUpModule():
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("test_smtp needs node and npm (scripts/install-deps installs them)")
    if not os.path.isdir(os.path.join(ROOT, "node_modules", "smtp-server")) or \
            not os.path.isdir(os.path.join(ROOT, "node_modules", "mailparser")):
        p = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT,
                           capture_output=True, text=True, timeout=170)
        if p.returncode != 0:
            raise RuntimeError("npm ci failed (%d):\n%s\n%s" % (p.returncode, p.stdout, p.stderr))


class SmtpPeer:
    """tests/peers/smtp_peer.js on a free loopback port, recording to a JSONL file."""

    def __init__(self, *flags):
        self.dir = tempfile.mkdtemp(prefix="otpd-smtp-")
        self.out_path = os.path.join(self.dir, "mail.jsonl")
        self.err_path = os.path.join(self.dir, "peer.stderr")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(["node", PEER, "--port", "0", "--out", self.out_path]
                                     + list(flags), stdout=subprocess.PIPE, stderr=self._err,
                                     cwd=ROOT)
        line = self.proc.stdout.readline().decode().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError("smtp peer did not start: %r\n%s" % (line, self.stderr()))
        self.port = int(line)

    def stderr(self):
        return h._read(self.err_path)

    def messages(self):
        try:
            with open(self.out_path, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def wait_messages(self, count=1, timeout=8.0):
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages()
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                raise AssertionError("smtp peer got %d message(s), want %d\n%s"
                                     % (len(found), count, self.stderr()))
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._err.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def smtp_provider(url, **extra):
    lines = ['[[provider]]', 'name = "mail"', 'type = "smtp"', 'channels = ["email"]',
             'url = "%s"' % url, 'from = "%s"' % FROM]
    for k, v in extra.items():
        lines.append('%s = %s' % (k, json.dumps(v)))
    return "\n".join(lines) + "\n"


class SmtpTestCase(unittest.TestCase):
    def setUp(self):
        self.peers = []
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            if not getattr(self, "_clean", False):  # the test did not reach its end
                sys.stderr.write("\n--- otpd stderr (%s) ---\n%s\n" % (self.id(), s.stderr()[-4000:]))
            s.stop()
            s.cleanup()
        for p in self.peers:
            p.stop()

    def peer(self, *flags):
        p = SmtpPeer(*flags)
        self.peers.append(p)
        return p

    def otpd(self, extra):
        s = h.OtpdServer(extra_config=extra)
        self.servers.append(s)
        s.start()
        key = s.create_app("mailapp")["api_key"]
        return s, key

    def start(self, server, key, body):
        r = server.start_verification(key, body)
        self.assertEqual(r.status, 201, r)
        return r.json

    def wait_delivery(self, server, key, vid, want, timeout=8.0):
        deadline = time.monotonic() + timeout
        while True:
            v = server.get(key, vid).json
            statuses = [d["status"] for d in v["deliveries"]]
            if statuses[:len(want)] == want or time.monotonic() > deadline:
                return v
            time.sleep(0.05)

    def assert_no_secrets(self, server, codes):
        err = server.all_stderr() + server.stdout()
        self.assertNotIn(PASSWORD, err)
        for code in codes:
            self.assertFalse(h.contains_code(err, code), "code %s in otpd's output" % code)

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
        v = self.wait_delivery(server, key, v["id"], ["sent"])
        self.assertEqual(v["deliveries"][0]["status"], "sent", v)
        self.assertEqual(v["deliveries"][0]["provider"], "mail", v)
        r = server.check(key, v["id"], code)
        self.assertEqual(r.status, 200, r)
        self.assertIs(r.json["valid"], True, r)
        self.assertEqual(r.json["status"], "approved", r)
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
        v = self.wait_delivery(server, key, v["id"], ["failed", "sent"])
        self.assertEqual([d["channel"] for d in v["deliveries"]], ["email", "sms"], v)
        self.assertEqual([d["status"] for d in v["deliveries"]], ["failed", "sent"], v)
        self.assertEqual(peer.messages(), [])
        self.assertRegex(server.stderr(), r'"event":"provider_failed".*550')
        r = server.check(key, v["id"], code)
        self.assertIs(r.json["valid"], True, r)
        self.assertEqual(r.json["status"], "approved", r)
        self.assert_no_secrets(server, [code])
        self._clean = True


def make_test_ca(directory):
    """A throwaway CA and a certificate for 127.0.0.1 signed by it, made with the
    openssl CLI at run time (no key is ever kept in the repository)."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)
    ca_key = os.path.join(directory, "ca.key")
    ca = os.path.join(directory, "ca.pem")
    key = os.path.join(directory, "server.key")
    csr = os.path.join(directory, "server.csr")
    cert = os.path.join(directory, "server.pem")
    ext = os.path.join(directory, "server.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=otpd test CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext)
    return ca, key, cert


class SmtpTlsTest(SmtpTestCase):
    """smtps:// and STARTTLS against a certificate from a test CA (ca_file),
    generated for this run by make_test_ca."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tls_dir = tempfile.mkdtemp(prefix="otpd-smtp-tls-")
        cls.ca, cls.key_file, cls.cert = make_test_ca(cls.tls_dir)

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
        v = self.wait_delivery(server, key, v["id"], ["failed"])
        self.assertEqual(v["deliveries"][0]["status"], "failed", v)
        self.assertEqual(peer.messages(), [])
        self.assert_no_secrets(server, [])
        self._clean = True

    def test_certificate_is_verified(self):
        peer = self.peer("--key", self.key_file, "--cert", self.cert, "--secure")
        # No ca_file: the test CA is not trusted, so the send must fail.
        server, key = self.otpd(smtp_provider("smtps://127.0.0.1:%d" % peer.port))
        v = self.start(server, key, {"to": "untrusted@example.com", "channel": "email"})
        v = self.wait_delivery(server, key, v["id"], ["failed"])
        self.assertEqual(v["deliveries"][0]["status"], "failed", v)
        self.assertEqual(peer.messages(), [])
        self._clean = True


if __name__ == "__main__":
    unittest.main()
