"""Integration tests of the `smpp` provider (SPEC §2 [[provider]] type "smpp", §4.1
failover and delivery reports) against a real SMSC: tests/peers/smpp_peer.js (npm
smpp), and the SMTP peer for the email steps.

Run: OTPD_BIN=... OTPCTL_BIN=... python3 -m unittest -v test_smpp
Needs node and npm; the npm packages pinned in the repo's package-lock.json are
installed with `npm ci` when node_modules is missing.
"""

import json
import os
import re
import shutil
import tempfile
import time
import unittest
import urllib.request

import otpd_harness as h
from test_smtp import SmtpPeer

PEER = os.path.join(h.ROOT, "tests", "peers", "smpp_peer.js")
PASSWORD = "pw7c1e9a"  # SMPP passwords are at most 8 characters
APP = "smppapp"

# The harness's log provider carries neither sms nor email here: sms goes to the
# SMSC peers only and email to the SMTP peer only, so nothing is "rescued" by it.
h.ALL_CHANNELS = [c for c in h.ALL_CHANNELS if c not in ("sms", "email")]


def setUpModule():
    h.require_node_packages("test_smpp", "smpp", "smtp-server", "mailparser")


class SmppPeer(h.PeerProcess):
    """tests/peers/smpp_peer.js on free loopback ports, driven over its control port."""

    name = "smpp peer"

    def __init__(self, mode=None, extra_args=()):
        super().__init__("otpd-smpp-")
        cmd = ["node", PEER, "--port", "0", "--control-port", "0",
               "--out", os.path.join(self.dir, "submits.jsonl"), "--password", PASSWORD]
        if mode:
            cmd += ["--mode", json.dumps(mode)]
        self.port, self.control_port = self._start(cmd + list(extra_args), ports=2)

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.control_port, path),
                                     data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read().decode())

    def state(self):
        return self._call("GET", "/state")

    def set_mode(self, **mode):
        return self._call("POST", "/mode", mode)

    def submits(self, to=None, answer=None):
        out = self.state()["submits"]
        if to is not None:
            out = [s for s in out if s["to"] == to.lstrip("+")]
        if answer is not None:
            out = [s for s in out if s["answer"] == answer]
        return out

    def wait_submit(self, to, answer="ok", timeout=8.0):
        """The first submit to `to` answered `answer`, waiting for it."""
        return h.wait_until(lambda: "a submit_sm to %s answered %s\n%s"
                            % (to, answer, self.stderr()),
                            lambda: self.submits(to, answer), timeout)[0]

    def binds(self, system_id=None):
        return [b for b in self.state()["binds"]
                if system_id is None or b["system_id"] == system_id]


def smpp_provider(name, port, **extra):
    options = {"host": "127.0.0.1", "port": port, "system_id": "otpd", "password": PASSWORD,
               "source_addr": "VERIFY", "reconnect_min_ms": 100, "reconnect_max_ms": 1000,
               "connect_timeout_s": 2, "submit_timeout_s": 3, "throttle_ms": 200}
    options.update(extra)
    lines = ['[[provider]]', 'name = "%s"' % name, 'type = "smpp"', 'channels = ["sms"]']
    for k, v in options.items():
        lines.append('%s = %s' % (k, json.dumps(v)))
    return "\n".join(lines) + "\n\n"


def smtp_provider(port):
    return ('[[provider]]\nname = "mail"\ntype = "smtp"\nchannels = ["email"]\n'
            'url = "smtp://127.0.0.1:%d"\nfrom = "Verify <no-reply@example.com>"\n\n' % port)


def code_in(text):
    m = re.search(r"(?<![0-9])([0-9]{4,10})(?![0-9])", text)
    if m is None:
        raise AssertionError("no code in %r" % text)
    return m.group(1)


class SmppTestCase(h.ProviderTestCase):
    app_name = APP
    secrets = (PASSWORD,)

    def server_log(self, server):
        """All of otpd's runs but the request lines, the last 6000 characters."""
        lines = [x for x in server.all_stderr().splitlines() if '"event":"request"' not in x]
        return "\n".join(lines)[-6000:]

    def peer_log(self, peer):
        return peer.stderr()[-2000:] if isinstance(peer, SmppPeer) else None

    def smsc(self, mode=None, extra_args=()):
        return self.add_peer(SmppPeer(mode, extra_args))

    def mail(self):
        return self.add_peer(SmtpPeer())

    def wait_taken_by(self, server, key, vid, provider, timeout=8.0):
        """Polls until one of the verification's deliveries was taken by `provider`."""
        def check():
            v = server.get(key, vid).json
            return v if any(d.get("provider") == provider and d["status"] in ("sent", "delivered")
                            for d in v["deliveries"]) else None
        return h.wait_until("delivery of %s by %s" % (vid, provider), check, timeout)

    @staticmethod
    def taken(server, key, vid):
        """The verification if any of its deliveries was taken by a provider, else None."""
        v = server.get(key, vid).json
        return v if any(d["status"] in ("sent", "delivered") for d in v["deliveries"]) else None


class SmppDeliveryTest(SmppTestCase):

    def test_sms_submitted_and_its_receipt_acknowledged(self):
        peer = self.smsc()
        server, key = self.otpd(smpp_provider("smsc", peer.port))
        phone = h.next_phone()
        v = self.start(server, key, {"to": phone, "channel": "sms", "locale": "en"})
        s = peer.wait_submit(phone)
        code = code_in(s["text"])
        self.assertEqual(s["text"], "%s is your %s verification code. It expires in 10 minutes."
                         % (code, APP))
        self.assertEqual(s["data_coding"], 0)
        self.assertEqual(s["via"], "short_message")
        self.assertEqual(s["registered_delivery"], 1)
        self.assertEqual((s["from"], s["source_ton"], s["dest_ton"]), ("VERIFY", 5, 1))
        self.assertEqual(s["system_id"], "otpd")
        v = self.wait_taken_by(server, key, v["id"], "smsc")
        h.wait_until("the deliver_sm_resp", lambda: peer.state()["receipt_resps"] >= 1)
        self.approve(server, key, v["id"], code)
        self.assertEqual(len(peer.submits()), 1)
        self.assertRegex(server.all_stderr(), r'"event":"smpp_receipt","provider":"smsc".*'
                                              r'"stat":"DELIVRD"')
        self.assert_no_secrets(server, [code])
        self._clean = True

    def test_greek_text_arrives_ucs2_and_decodes(self):
        peer = self.smsc()
        server, key = self.otpd(smpp_provider("smsc", peer.port))
        phone = h.next_phone()  # +30: locale el from the number's region
        v = self.start(server, key, {"to": phone, "channel": "sms"})
        s = peer.wait_submit(phone)
        self.assertEqual(s["data_coding"], 8)
        code = code_in(s["text"])
        want = "Ο κωδικός επαλήθευσης %s είναι %s. Λήγει σε 10 λεπτά." % (APP, code)
        self.assertEqual(s["text"], want)
        self.assertEqual(bytes.fromhex(s["hex"]), want.encode("utf-16-be"))
        self.assertEqual(s["via"], "short_message" if len(want) <= 70 else "message_payload")
        self.approve(server, key, v["id"], code)
        self.assertEqual(server.stop(), 0)  # SIGTERM with a live bind still exits cleanly
        self._clean = True

    def test_gsm7_extension_characters_and_long_text(self):
        peer = self.smsc()
        text = "Code {{code}} [ok] {braces} 10€ ~^|\\ " + "x" * 150
        server, key = self.otpd(smpp_provider("smsc", peer.port))
        app = server.create_app("gsmapp")
        server.otpctl("app", "update", app["app_id"], "--template", "sms:en=" + text)
        phone = h.next_phone()
        self.start(server, app["api_key"], {"to": phone, "channel": "sms", "locale": "en"})
        s = peer.wait_submit(phone)
        code = code_in(s["text"])
        self.assertEqual(s["data_coding"], 0)
        self.assertEqual(s["text"], text.replace("{{code}}", code))
        self.assertEqual(s["via"], "message_payload")  # over 160 septets
        self._clean = True

    def test_throttled_submit_is_retried_on_the_same_provider(self):
        peer = self.smsc({"throttle": 2})
        other = self.smsc()
        server, key = self.otpd(smpp_provider("smsc", peer.port) +
                                smpp_provider("smsc-2", other.port))
        phone = h.next_phone()
        v = self.start(server, key, {"to": phone, "channel": "sms"})
        s = peer.wait_submit(phone)
        self.assertEqual([x["answer"] for x in peer.submits(phone)],
                         ["throttled", "throttled", "ok"])
        v = self.wait_taken_by(server, key, v["id"], "smsc")
        self.assertEqual(other.submits(), [])
        self.approve(server, key, v["id"], code_in(s["text"]))
        self.assertRegex(server.all_stderr(), r'"event":"smpp_throttled"')
        self._clean = True


class SmppFailoverTest(SmppTestCase):

    def test_rejected_submit_goes_to_the_second_sms_provider(self):
        refusing = self.smsc({"reject": -1})
        good = self.smsc()
        server, key = self.otpd(smpp_provider("smsc-a", refusing.port) +
                                smpp_provider("smsc-b", good.port))
        phone = h.next_phone()
        v = self.start(server, key, {"to": phone, "channel": "sms"})
        s = good.wait_submit(phone)
        rejected = refusing.submits(phone)
        self.assertEqual([x["answer"] for x in rejected], ["rejected"])
        self.assertEqual(code_in(rejected[0]["text"]), code_in(s["text"]))  # the same code
        v = self.wait_taken_by(server, key, v["id"], "smsc-b")
        self.assertEqual([(d["provider"], d["status"]) for d in v["deliveries"]][0],
                         ("smsc-a", "failed"), v)
        self.assertRegex(server.all_stderr(),
                         r'"event":"provider_failed","provider":"smsc-a".*ESME_RSUBMITFAIL')
        self.approve(server, key, v["id"], code_in(s["text"]))
        self._clean = True

    def test_smsc_down_fails_over_to_email_with_the_code(self):
        peer = self.smsc({"down": True})
        mail = self.mail()
        server, key = self.otpd(smpp_provider("smsc", peer.port) + smtp_provider(mail.port))
        phone = h.next_phone()
        started = time.monotonic()
        v = self.start(server, key, {"to": phone, "workflow": [
            {"channel": "sms", "timeout_s": 60}, {"channel": "email", "to": "down@example.com"}]})
        msgs = mail.wait_messages(1, timeout=5)
        self.assertLess(time.monotonic() - started, 5.0)
        self.assertEqual(msgs[0]["to"], ["down@example.com"])
        code = code_in(msgs[0]["text"])
        v = self.wait_deliveries(server, key, v["id"], ["failed", "sent"])
        self.assertEqual(v["deliveries"][0]["provider"], "smsc", v)
        self.assertEqual(peer.submits(), [])
        self.approve(server, key, v["id"], code)
        self.assert_no_secrets(server, [code])
        self._clean = True

    def test_timeout_fires_the_next_step_with_the_same_code(self):
        peer = self.smsc({"receipt": "none"})
        mail = self.mail()
        server, key = self.otpd(smpp_provider("smsc", peer.port) + smtp_provider(mail.port))
        phone = h.next_phone()
        v = self.start(server, key, {"to": phone, "workflow": [
            {"channel": "sms", "timeout_s": 2}, {"channel": "email", "to": "late@example.com"}]})
        s = peer.wait_submit(phone)
        sent_at = time.monotonic()
        msgs = mail.wait_messages(1, timeout=10)
        self.assertGreaterEqual(time.monotonic() - sent_at, 1.0)  # not before the timeout
        self.assertEqual(code_in(msgs[0]["text"]), code_in(s["text"]))
        v = self.wait_deliveries(server, key, v["id"], ["sent", "sent"])
        self.approve(server, key, v["id"], code_in(s["text"]))
        self._clean = True

    def test_approval_before_the_timeout_sends_nothing_more(self):
        peer = self.smsc({"receipt": "none"})
        mail = self.mail()
        server, key = self.otpd(smpp_provider("smsc", peer.port) + smtp_provider(mail.port))
        phone = h.next_phone()
        v = self.start(server, key, {"to": phone, "workflow": [
            {"channel": "sms", "timeout_s": 2}, {"channel": "email", "to": "never@example.com"}]})
        s = peer.wait_submit(phone)
        self.approve(server, key, v["id"], code_in(s["text"]))
        # Past the step's timeout (2 s) with margin, nothing else went out.
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            self.assertEqual(mail.messages(), [])
            self.assertEqual(len(peer.submits()), 1)
            time.sleep(0.2)
        v = server.get(key, v["id"]).json
        self.assertEqual(v["status"], "approved", v)
        self.assertNotIn("sent", [d["status"] for d in v["deliveries"][1:]], v)
        self._clean = True


class SmppReportTest(SmppTestCase):
    """Receipts reaching the store: the delivery's status and failover on
    undelivered/failed (SPEC §4.1). These need the dispatcher's report sink
    (ProviderSet::SetReportSink) to update deliveries; ctest integration.smpp_reports."""

    def test_delivrd_receipt_marks_the_delivery_delivered(self):
        peer = self.smsc()
        server, key = self.otpd(smpp_provider("smsc", peer.port))
        phone = h.next_phone()
        v = self.start(server, key, {"to": phone, "channel": "sms"})
        s = peer.wait_submit(phone)
        v = self.wait_deliveries(server, key, v["id"], ["delivered"])
        self.assertEqual(v["deliveries"][0]["provider"], "smsc", v)
        # Every attempt is in /metrics too: the send, its time, the receipt, the bind.
        # The receipt can be applied before the send's own outcome is committed
        # (FinishJobAsync), so the send's counter and the queue depth may lag
        # the delivery's status by a moment: wait for all of them.
        lines = ['otpd_deliveries_total{provider="smsc",channel="sms",status="sent"} 1',
                 'otpd_delivery_send_seconds_count{provider="smsc"} 1',
                 'otpd_delivery_reports_total{provider="smsc",channel="sms",status="delivered"} 1',
                 'otpd_delivery_report_seconds_count{provider="smsc"} 1',
                 'otpd_delivery_queue_depth 0',
                 'otpd_provider_bound{provider="smsc",type="smpp"} 1']
        seen = {"body": ""}

        def all_lines():
            seen["body"] = server.request("GET", "/metrics").body
            return all(line + "\n" in seen["body"] for line in lines)

        h.wait_until(lambda: "every delivery metric; missing: %s" % [
            line for line in lines if line + "\n" not in seen["body"]], all_lines, timeout=10)
        self.approve(server, key, v["id"], code_in(s["text"]))
        # An SMSC that goes away shows as unbound.
        peer.stop()
        h.wait_until("otpd_provider_bound 0 after the SMSC stopped",
                     lambda: 'otpd_provider_bound{provider="smsc",type="smpp"} 0\n'
                     in server.request("GET", "/metrics").body)
        self._clean = True

    def test_undeliv_receipt_fires_the_next_step_at_once(self):
        peer = self.smsc({"receipt": "UNDELIV"})
        mail = self.mail()
        server, key = self.otpd(smpp_provider("smsc", peer.port) + smtp_provider(mail.port))
        phone = h.next_phone()
        v = self.start(server, key, {"to": phone, "workflow": [
            {"channel": "sms", "timeout_s": 60}, {"channel": "email", "to": "undeliv@example.com"}]})
        s = peer.wait_submit(phone)
        msgs = mail.wait_messages(1, timeout=8)  # long before the 60 s timeout
        self.assertEqual(code_in(msgs[0]["text"]), code_in(s["text"]))
        v = self.wait_deliveries(server, key, v["id"], ["undelivered", "sent"])
        self.approve(server, key, v["id"], code_in(s["text"]))
        self._clean = True

    def test_receipt_tlvs_drive_failover_too(self):
        peer = self.smsc({"receipt": "REJECTD", "receipt_tlvs": True})
        mail = self.mail()
        server, key = self.otpd(smpp_provider("smsc", peer.port) + smtp_provider(mail.port))
        phone = h.next_phone()
        v = self.start(server, key, {"to": phone, "workflow": [
            {"channel": "sms", "timeout_s": 60}, {"channel": "email", "to": "tlv@example.com"}]})
        peer.wait_submit(phone)
        mail.wait_messages(1, timeout=8)
        self.wait_deliveries(server, key, v["id"], ["failed", "sent"])
        self._clean = True


class SmppConnectionTest(SmppTestCase):

    def test_dropped_connection_mid_window_loses_nothing_and_rebinds(self):
        # Both providers bind to the same SMSC; the first connection that submits
        # is dropped after 3 unanswered submit_sm. Every message must still reach
        # the SMSC (retried on smsc-b), and smsc-a must bind again.
        peer = self.smsc({"drop_after": 3})
        server, key = self.otpd(smpp_provider("smsc-a", peer.port, system_id="otpd-a") +
                                smpp_provider("smsc-b", peer.port, system_id="otpd-b"))
        h.wait_until("both binds", lambda: len(peer.binds()) >= 2)
        phones = [h.next_phone() for _ in range(8)]
        vids = [self.start(server, key, {"to": p, "channel": "sms"})["id"] for p in phones]
        for p in phones:
            peer.wait_submit(p, timeout=20)
        dropped = peer.submits(answer="dropped")
        self.assertGreaterEqual(len(dropped), 1)
        self.assertEqual({s["system_id"] for s in dropped}, {"otpd-a"})
        for vid in vids:
            v = h.wait_until("a sent delivery for %s" % vid, lambda: self.taken(server, key, vid))
            self.assertEqual(v["status"], "pending", v)
        h.wait_until("smsc-a binds again", lambda: len(peer.binds("otpd-a")) >= 2, timeout=10)
        phone = h.next_phone()
        self.start(server, key, {"to": phone, "channel": "sms"})
        self.assertEqual(peer.wait_submit(phone)["system_id"], "otpd-a")
        self.assertRegex(server.all_stderr(), r'"event":"smpp_connection_lost","provider":"smsc-a"')
        self._clean = True

    def test_sigterm_unbinds_from_the_smsc_and_a_restart_binds_again(self):
        # SMPP 3.4 §4.2: the ESME ends its session with unbind, so the SMSC frees
        # the bind at once (one that allows a single bind per account would
        # otherwise refuse the restarted otpd's bind until its own timeout).
        peer = self.smsc()
        server, key = self.otpd(smpp_provider("smsc", peer.port))
        phone = h.next_phone()
        self.start(server, key, {"to": phone, "channel": "sms"})
        peer.wait_submit(phone)
        self.assertEqual(server.stop(), 0)
        state = peer.state()
        self.assertEqual([u["session"] for u in state["unbinds"]],
                         [b["session"] for b in state["binds"]])
        self.assertEqual(len(state["unbinds"]), 1)
        self.assertRegex(server.all_stderr(), r'"event":"smpp_unbound","provider":"smsc"')
        server.start()
        h.wait_until("the restarted otpd's bind", lambda: len(peer.binds("otpd")) == 2)
        self._clean = True

    def test_kill_9_with_queued_jobs_loses_nothing(self):
        # The SMSC answers slowly and the window is 1, so jobs are claimed and
        # queued when otpd dies. After the restart every message reaches the SMSC
        # (once the claims' lease runs out: at-least-once, duplicates allowed).
        peer = self.smsc({"delay_ms": 1500})
        server, key = self.otpd(smpp_provider("smsc", peer.port, window=1))
        phones = [h.next_phone() for _ in range(5)]
        vids = [self.start(server, key, {"to": p, "channel": "sms"})["id"] for p in phones]
        h.wait_until("the first submit", lambda: peer.submits())
        server.kill()
        seen_before = {s["to"] for s in peer.submits()}
        self.assertLess(len(seen_before), len(phones))
        peer.set_mode(delay_ms=0)
        server.start()
        for p in phones:
            peer.wait_submit(p, timeout=100)
        for vid in vids:
            self.wait_taken_by(server, key, vid, "smsc", timeout=10)
        self._clean = True

    def test_tls_with_a_verified_certificate(self):
        tls_dir = tempfile.mkdtemp(prefix="otpd-smpp-tls-")
        self.addCleanup(shutil.rmtree, tls_dir, True)
        ca, key_file, cert = h.make_test_ca(tls_dir)
        peer = self.smsc(extra_args=("--key", key_file, "--cert", cert))
        server, key = self.otpd(smpp_provider("smsc", peer.port, tls=True, ca_file=ca))
        phone = h.next_phone()
        self.start(server, key, {"to": phone, "channel": "sms"})
        peer.wait_submit(phone)
        self.assertRegex(server.all_stderr(), r'"event":"smpp_bound","provider":"smsc".*"tls":true')
        self._clean = True

    def test_sec21_tls_refuses_an_unverified_certificate(self):
        tls_dir = tempfile.mkdtemp(prefix="otpd-smpp-tls-")
        self.addCleanup(shutil.rmtree, tls_dir, True)
        _, key_file, cert = h.make_test_ca(tls_dir)
        peer = self.smsc(extra_args=("--key", key_file, "--cert", cert))
        # No ca_file: the system's CAs do not know the test CA.
        server, key = self.otpd(smpp_provider("smsc", peer.port, tls=True))
        phone = h.next_phone()
        v = self.start(server, key, {"to": phone, "channel": "sms"})
        v = self.wait_deliveries(server, key, v["id"], ["failed"])
        self.assertEqual(peer.submits(), [])
        self.assertRegex(server.all_stderr(), r'"event":"smpp_bind_failed".*certificate verify failed')
        self._clean = True


if __name__ == "__main__":
    unittest.main()
