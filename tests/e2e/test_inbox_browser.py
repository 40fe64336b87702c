"""End-to-end: the /dev/inbox page in a real headless Chromium.

A newcomer follows `make run`, starts a verification with curl, and opens
http://127.0.0.1:8080/dev/inbox to read the code. This drives the same path with
the real otpd and a real browser: the page Chromium renders must list the
message with its code, and markup sent by a client must arrive as text, never as
markup (the browser's DOM is the judge, not our own escaping code).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import otpd_harness as h  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def dump_dom(url):
    """The DOM after load, as headless Chromium serialises it."""
    profile = tempfile.mkdtemp(prefix="otpd-chromium-")
    try:
        p = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--user-data-dir=" + profile, "--dump-dom", url],
            capture_output=True, text=True, timeout=90)
        if p.returncode != 0:
            raise AssertionError("chromium failed (%d): %s" % (p.returncode, p.stderr[-2000:]))
        return p.stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class InboxInBrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(CHROMIUM):
            raise AssertionError("chromium is not installed (scripts/install-deps installs it)")
        cls.server = h.OtpdServer()
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.server.cleanup()

    def test_inbox_shows_the_code_and_never_renders_client_markup(self):
        # The app name goes into the message text the inbox shows.
        app = self.server.create_app("<b>shop</b>")
        r = self.server.start_verification(app["api_key"], {"to": h.next_phone(), "locale": "en"})
        self.assertEqual(r.status, 201, r.body)
        vid = r.json["id"]
        code = self.server.wait_code(vid)

        dom = dump_dom("http://127.0.0.1:%d/dev/inbox" % self.server.port)
        self.assertIn("otpd dev inbox", dom)
        self.assertIn(vid, dom)
        self.assertIn("<code>%s</code>" % code, dom)
        self.assertIn("your &lt;b&gt;shop&lt;/b&gt; verification code", dom)
        self.assertNotIn("<b>shop</b>", dom)


if __name__ == "__main__":
    unittest.main()
