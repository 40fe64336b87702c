"""TLS, end to end (SECURITY.md 21): otpd's HTTPS listener against the openssl
command line, curl and Python's ssl module, certificate reload on SIGHUP, and
outbound TLS of the http provider refusing a certificate it does not trust.

Every certificate is made at run time by the openssl CLI (otpd_harness.make_test_ca);
no key is kept in the repository.

Run: OTPD_BIN=... OTPCTL_BIN=... python3 -m unittest -v test_tls
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

import otpd_harness as h

HTTP_PEER = os.path.join(h.ROOT, "tests", "peers", "http_peer.py")


def openssl(*args, stdin=b"", timeout=20):
    return subprocess.run(["openssl"] + list(args), input=stdin, capture_output=True,
                          timeout=timeout)


def new_server_cert(directory, ca, name):
    """A fresh key and certificate for 127.0.0.1, signed by the CA of
    make_test_ca in `directory`; returns (key, cert) paths named after `name`."""
    key = os.path.join(directory, name + ".key")
    csr = os.path.join(directory, name + ".csr")
    cert = os.path.join(directory, name + ".pem")
    for args in (
            ("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"),
            ("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", os.path.join(directory, "ca.key"),
             "-CAcreateserial", "-out", cert, "-days", "2",
             "-extfile", os.path.join(directory, "server.ext"))):
        p = openssl(*args)
        assert p.returncode == 0, p.stderr.decode()
    return key, cert


def fingerprint_of_file(cert_path):
    with open(cert_path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def served_fingerprint(port, ca):
    """SHA-256 of the certificate a new, verified connection to otpd is shown."""
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


class TlsCase(unittest.TestCase):
    """One otpd over HTTPS with a certificate from a throwaway CA, per class."""

    @classmethod
    def setUpClass(cls):
        cls.tls_dir = tempfile.mkdtemp(prefix="otpd-tls-")
        cls.ca, cls.key_file, cls.cert = h.make_test_ca(cls.tls_dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tls_dir, ignore_errors=True)

    def setUp(self):
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            if s.proc is not None and s.proc.poll() is not None:
                sys.stderr.write("\n--- otpd stderr (%s) ---\n%s\n" % (self.id(), s.stderr()))
            s.stop()
            s.cleanup()

    def https_otpd(self, cert=None, key=None, extra_server=""):
        server = h.OtpdServer(
            server_config='tls_cert = "%s"\ntls_key = "%s"\n%s'
                          % (cert or self.cert, key or self.key_file, extra_server),
            ca_file=self.ca)
        self.servers.append(server)
        server.start()
        return server

    def s_client(self, port, *args):
        return openssl("s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", self.ca,
                       "-verify_return_error", "-brief", *args)


class HttpsListenerTest(TlsCase):

    def test_sec21_tls12_and_tls13_succeed_tls11_fails(self):
        server = self.https_otpd()
        for flag, version in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            p = self.s_client(server.port, flag)
            out = (p.stdout + p.stderr).decode()
            self.assertEqual(p.returncode, 0, out)
            self.assertIn("Protocol version: " + version, out)
            self.assertIn("Verification: OK", out)
        for flag in ("-tls1_1", "-tls1"):
            # Security level 0 lets this client offer the old version: the refusal
            # ("protocol version" alert) is otpd's.
            p = self.s_client(server.port, flag, "-cipher", "DEFAULT:@SECLEVEL=0")
            out = (p.stdout + p.stderr).decode()
            self.assertNotEqual(p.returncode, 0, out)
            self.assertIn("alert protocol version", out)

    def test_sec21_tls12_weak_ciphers_are_refused(self):
        server = self.https_otpd()
        # CBC (no AEAD) with and without ECDHE, and RSA key exchange (no forward secrecy).
        for cipher in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "AES128-SHA",
                       "AES128-GCM-SHA256"):
            p = self.s_client(server.port, "-tls1_2", "-cipher", cipher + ":@SECLEVEL=0")
            out = (p.stdout + p.stderr).decode()
            self.assertNotEqual(p.returncode, 0, cipher + ": " + out)
            self.assertIn("alert handshake failure", out)  # otpd shares no cipher with it
        for cipher in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"):
            p = self.s_client(server.port, "-tls1_2", "-cipher", cipher)
            out = (p.stdout + p.stderr).decode()
            self.assertEqual(p.returncode, 0, cipher + ": " + out)
            self.assertIn("Ciphersuite: " + cipher, out)

    def test_sec21_no_compression_no_renegotiation(self):
        server = self.https_otpd()
        p = openssl("s_client", "-connect", "127.0.0.1:%d" % server.port, "-CAfile", self.ca,
                    "-tls1_2")
        out = p.stdout.decode()
        self.assertIn("Compression: NONE", out)
        # A client-initiated renegotiation ("R" on s_client's stdin) is refused.
        p = openssl("s_client", "-connect", "127.0.0.1:%d" % server.port, "-CAfile", self.ca,
                    "-tls1_2", stdin=b"R\n")
        out = (p.stdout + p.stderr).decode()
        self.assertIn("RENEGOTIATING", out)
        self.assertIn("no renegotiation", out)

    def test_sec21_curl_over_https_starts_and_checks_a_verification(self):
        server = self.https_otpd()
        key = server.create_app("tls")["api_key"]
        base = "https://127.0.0.1:%d" % server.port

        def curl(path, body):
            p = subprocess.run(
                ["curl", "-sS", "--fail-with-body", "--cacert", self.ca, "--tlsv1.2",
                 "-H", "Authorization: Bearer " + key, "-H", "Content-Type: application/json",
                 "-d", json.dumps(body), base + path],
                capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr + p.stdout)
            return json.loads(p.stdout)

        started = curl("/v1/verifications", {"to": h.next_phone()})
        self.assertEqual(started["status"], "pending")
        code = server.wait_code(started["id"])
        checked = curl("/v1/verifications/%s/check" % started["id"], {"code": code})
        self.assertEqual(checked["status"], "approved")
        self.assertIs(checked["valid"], True)
        # Without the CA, curl refuses otpd's certificate (and sends nothing).
        p = subprocess.run(["curl", "-sS", base + "/healthz"], capture_output=True, text=True,
                           timeout=30)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        # Plain HTTP to the TLS port gets no HTTP answer.
        p = subprocess.run(["curl", "-sS", "http://127.0.0.1:%d/healthz" % server.port],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn('"tls":true', server.stderr())

    def test_sec21_sighup_reloads_the_certificate_and_a_bad_reload_keeps_it(self):
        # otpd reads copies, so the test can replace them like an operator would.
        cert = os.path.join(self.tls_dir, "live.pem")
        key = os.path.join(self.tls_dir, "live.key")
        shutil.copy(self.cert, cert)
        shutil.copy(self.key_file, key)
        server = self.https_otpd(cert=cert, key=key)
        first = served_fingerprint(server.port, self.ca)
        self.assertEqual(first, fingerprint_of_file(self.cert))

        new_key, new_cert = new_server_cert(self.tls_dir, self.ca, "renewed")
        shutil.copy(new_cert, cert)
        shutil.copy(new_key, key)
        server.proc.send_signal(signal.SIGHUP)
        second = fingerprint_of_file(new_cert)
        self.assertNotEqual(first, second)
        h.wait_until("the renewed certificate",
                     lambda: served_fingerprint(server.port, self.ca) == second)
        h.wait_until("the reload log line", lambda: '"event":"tls_reloaded"' in server.stderr())
        self.assertIsNone(server.proc.poll(), "otpd exited on SIGHUP")
        self.assertEqual(server.request("GET", "/healthz").status, 200)

        # A broken key: otpd says why and keeps serving the renewed certificate.
        with open(key, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        server.proc.send_signal(signal.SIGHUP)
        h.wait_until("the failed reload log line",
                     lambda: '"event":"tls_reload_failed"' in server.stderr())
        failed = [json.loads(line) for line in server.stderr().splitlines()
                  if '"tls_reload_failed"' in line]
        self.assertIn(key, failed[0]["error"])
        self.assertIsNone(server.proc.poll(), "otpd exited on a bad reload")
        self.assertEqual(served_fingerprint(server.port, self.ca), second)
        self.assertEqual(server.request("GET", "/healthz").status, 200)
        self.assertEqual(server.stop(), 0)

    def test_sec21_handshake_deadline_closes_silent_connections(self):
        server = self.https_otpd(extra_server="header_timeout_s = 1")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as silent:
            t0 = time.monotonic()
            self.assertEqual(silent.recv(100), b"")  # closed by otpd, nothing said
            self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(server.request("GET", "/healthz").status, 200)


class TlsStartupTest(TlsCase):
    """TLS settings otpd refuses to start with, and the plain-HTTP warning."""

    def run_otpd(self, config_text, wait_for=None, timeout=10):
        """Runs otpd on `config_text`; without `wait_for`, returns (rc, stderr) once it
        exits; with it, waits for that text on stderr, stops otpd and returns them."""
        d = tempfile.mkdtemp(prefix="otpd-tls-start-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "otpd.toml")
        with open(path, "w") as f:
            f.write(config_text + '\n[store]\nurl = "sqlite://%s/otpd.db"\n[security]\n'
                    'master_key_file = "%s/master.key"\n' % (d, d))
        err_path = os.path.join(d, "stderr")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTPD_")}
        with open(err_path, "wb") as err:
            proc = subprocess.Popen([h.OTPD_BIN, "--config", path], stdout=subprocess.DEVNULL,
                                    stderr=err, cwd=d, env=env)
            try:
                if wait_for is None:
                    return proc.wait(timeout), h._read(err_path)
                h.wait_until(lambda: "%r on otpd's stderr: %s" % (wait_for, h._read(err_path)),
                             lambda: wait_for in h._read(err_path), timeout)
                proc.send_signal(signal.SIGTERM)
                return proc.wait(timeout), h._read(err_path)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    def test_sec21_half_set_or_unusable_tls_files_stop_the_start(self):
        port = h.free_port()
        rc, err = self.run_otpd('[server]\nlisten = "127.0.0.1:%d"\ntls_cert = "%s"\n'
                                % (port, self.cert))
        self.assertEqual(rc, 1)
        self.assertIn("server.tls_cert is set without server.tls_key", err)
        missing = os.path.join(self.tls_dir, "missing.pem")
        rc, err = self.run_otpd('[server]\nlisten = "127.0.0.1:%d"\ntls_cert = "%s"\n'
                                'tls_key = "%s"\n' % (port, missing, self.key_file))
        self.assertEqual(rc, 1)
        self.assertIn(missing, err)
        other_key, _ = new_server_cert(self.tls_dir, self.ca, "mismatch")
        rc, err = self.run_otpd('[server]\nlisten = "127.0.0.1:%d"\ntls_cert = "%s"\n'
                                'tls_key = "%s"\n' % (port, self.cert, other_key))
        self.assertEqual(rc, 1)
        self.assertIn("mismatch", err)

    def test_plain_http_on_a_non_loopback_address_warns(self):
        port = h.free_port()
        rc, err = self.run_otpd('[server]\nlisten = "0.0.0.0:%d"\n' % port,
                                wait_for='"event":"listening"')
        self.assertEqual(rc, 0, err)
        warning = [json.loads(line) for line in err.splitlines() if "plain_http_listener" in line]
        self.assertEqual(len(warning), 1, err)
        self.assertEqual(warning[0]["level"], "warning")
        rc, err = self.run_otpd('[server]\nlisten = "127.0.0.1:%d"\n' % port,
                                wait_for='"event":"listening"')
        self.assertNotIn("plain_http_listener", err)


class HttpPeer(h.PeerProcess):
    """tests/peers/http_peer.py speaking HTTPS with its own throwaway CA."""

    name = "https peer"

    def __init__(self):
        super().__init__("otpd-https-peer-")
        [self.port] = self._start([sys.executable, HTTP_PEER, "--port", "0",
                                   "--tls-dir", self.dir])
        self.ca = os.path.join(self.dir, "ca.pem")

    def requests(self):
        ctx = ssl.create_default_context(cafile=self.ca)
        import urllib.request
        with urllib.request.urlopen("https://127.0.0.1:%d/_peer/requests" % self.port,
                                    context=ctx, timeout=15) as r:
            return json.loads(r.read().decode())


class OutboundTlsTest(h.ProviderTestCase):
    """An http provider must verify the certificate of an https URL (ASVS 9.2.1)."""

    def provider(self, peer, ca_file=None):
        lines = ['[[provider]]', 'name = "wa"', 'type = "http"', 'channels = ["whatsapp"]',
                 'url = "https://127.0.0.1:%d/send"' % peer.port,
                 'body = \'{"to":"{{to}}","code":"{{code}}"}\'',
                 'message_id = "/messages/0/id"', 'timeout_ms = 5000']
        if ca_file:
            lines.append('ca_file = "%s"' % ca_file)
        return "\n".join(lines) + "\n"

    def setUp(self):
        super().setUp()
        # whatsapp only through the http provider: a refused send cannot be rescued.
        self._channels = h.ALL_CHANNELS
        h.ALL_CHANNELS = [c for c in h.ALL_CHANNELS if c != "whatsapp"]

    def tearDown(self):
        h.ALL_CHANNELS = self._channels
        super().tearDown()

    def test_sec21_http_provider_refuses_an_untrusted_certificate(self):
        peer = self.add_peer(HttpPeer())
        server, key = self.otpd(self.provider(peer))
        v = self.start(server, key, {"to": h.next_phone(), "channel": "whatsapp"})
        last = self.wait_deliveries(server, key, v["id"], ["failed"])
        self.assertEqual(last["status"], "undeliverable", last)
        self.assertEqual(peer.requests(), [], "a request crossed an unverified TLS connection")
        self.assertRegex(server.all_stderr(), r"SSL|certificate")

        # The same peer, trusted through ca_file: delivered (the test above can fail).
        trusted, key2 = self.otpd(self.provider(peer, ca_file=peer.ca))
        v = self.start(trusted, key2, {"to": h.next_phone(), "channel": "whatsapp"})
        self.wait_deliveries(trusted, key2, v["id"], ["sent"])
        self.assertEqual(len(peer.requests()), 1)
        self._clean = True


if __name__ == "__main__":
    unittest.main()
