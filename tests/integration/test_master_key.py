"""`otpctl master-key rotate` against a running otpd (SPEC §6, SECURITY.md 19): the
real binaries, the key files on disk, the SQLite store read back with sqlite3."""

import json
import os
import sqlite3
import stat
import threading
import time
import unittest

import otpd_harness as h


class MasterKeyRotationTest(unittest.TestCase):
    def setUp(self):
        self.server = h.OtpdServer()
        self.server.start()
        self.key_file = os.path.join(self.server.dir, "master.key")
        app = self.server.create_app("rotation", "--resend-cooldown", "0")
        self.key = app["api_key"]

    def tearDown(self):
        try:
            if self._outcome_failed():
                print("\n--- otpd stderr ---\n" + self.server.all_stderr()[-6000:])
        finally:
            self.server.cleanup()

    def _outcome_failed(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        errors = getattr(result, "errors", []) + getattr(result, "failures", [])
        return any(test is self for test, _ in errors)

    def start(self):
        r = self.server.start_verification(self.key, {"to": h.next_phone()})
        self.assertEqual(r.status, 201, r)
        return r.json["id"]

    def status(self):
        return json.loads(self.server.otpctl("master-key", "status").stdout)

    def sealed_codes(self):
        """Every sealed code in the database, read by SQLite itself."""
        con = sqlite3.connect("file:%s?mode=ro" % self.server.db_path, uri=True)
        try:
            return [row[0] for row in con.execute(
                "SELECT code_sealed FROM verifications WHERE code_sealed IS NOT NULL")]
        finally:
            con.close()

    def test_rotate_while_serving(self):
        resent, checked, after_restart = self.start(), self.start(), self.start()
        codes = {vid: self.server.wait_code(vid) for vid in (resent, checked, after_restart)}

        before = self.status()
        old_id = before["primary_key_id"]
        self.assertEqual(before["key_ids"], [old_id])
        self.assertEqual(before["code_hash_key_id"], old_id)
        self.assertEqual(before["sealed_by_key_id"], {old_id: 3})

        # Traffic goes on while otpctl rotates in another process.
        started_during = []
        errors = []
        stop = threading.Event()

        def traffic():
            while not stop.is_set():
                try:
                    r = self.server.start_verification(self.key, {"to": h.next_phone()})
                    if r.status != 201:
                        errors.append(r)
                    else:
                        started_during.append(r.json["id"])
                except OSError as e:
                    errors.append(e)
                time.sleep(0.05)

        t = threading.Thread(target=traffic)
        t.start()
        try:
            p = self.server.otpctl("master-key", "rotate")
        finally:
            stop.set()
            t.join()
        self.assertEqual(errors, [])
        self.assertTrue(started_during, "no verification was started during the rotation")
        out = json.loads(p.stdout)
        self.assertEqual(set(out), {"old_key_id", "new_key_id", "rewrapped"})
        self.assertEqual(out["old_key_id"], old_id)
        new_id = out["new_key_id"]
        self.assertNotEqual(new_id, old_id)
        self.assertGreaterEqual(out["rewrapped"], 3)

        # Key files: a new primary, the old key retired; all 0600.
        retired = os.path.join(self.key_file + ".retired", old_id + ".key")
        for path in (self.key_file, retired):
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, path)
            self.assertEqual(os.path.getsize(path), 32, path)

        # The database holds no blob of the old key any more.
        sealed = self.sealed_codes()
        self.assertTrue(sealed)
        self.assertEqual([s for s in sealed if not s.startswith("v1.%s." % new_id)], [])
        self.assertFalse(any(("v1.%s." % old_id) in s for s in sealed))
        after = self.status()
        self.assertEqual(after["primary_key_id"], new_id)
        self.assertEqual(sorted(after["key_ids"]), sorted([old_id, new_id]))
        self.assertEqual(after["code_hash_key_id"], old_id)
        self.assertEqual(list(after["sealed_by_key_id"]), [new_id])

        # The running otpd opens the re-wrapped code: a resend carries the same code.
        r = self.server.resend(self.key, resent)
        self.assertEqual(r.status, 200, r)
        msgs = self.server.wait_messages(resent, 2)
        self.assertEqual(msgs[-1]["code"], codes[resent])
        # Codes hashed before the rotation still check.
        for vid in (resent, checked):
            r = self.server.check(self.key, vid, codes[vid])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json["status"], "approved", r)
        # Verifications started during the rotation were delivered, and seal with the new key now.
        for vid in started_during:
            self.server.wait_messages(vid, 1)
        fresh = self.start()
        self.server.wait_code(fresh)
        self.assertEqual(list(self.status()["sealed_by_key_id"]), [new_id])
        self.assertIn('"event":"master_key_changed"', self.server.stderr())

        # A restart reads both keys; pending codes still send and check.
        self.assertEqual(self.server.stop(), 0)
        self.server.start()
        r = self.server.resend(self.key, after_restart)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.server.wait_messages(after_restart, 2)[-1]["code"],
                         codes[after_restart])
        r = self.server.check(self.key, after_restart, codes[after_restart])
        self.assertEqual(r.json["status"], "approved", r)

    def test_a_key_file_readable_by_others_is_refused(self):
        vid = self.start()
        self.server.wait_code(vid)
        self.server.otpctl("master-key", "rotate")
        old_id = self.status()["code_hash_key_id"]
        retired = os.path.join(self.key_file + ".retired", old_id + ".key")
        os.chmod(retired, 0o644)
        p = self.server.otpctl("master-key", "status", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("chmod 600", p.stderr)
        p = self.server.otpctl("master-key", "rotate", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("chmod 600", p.stderr)
        self.assertEqual(self.server.stop(), 0)
        with self.assertRaises(RuntimeError) as e:
            self.server.start(timeout=5)
        self.assertIn("chmod 600", str(e.exception))
        os.chmod(retired, 0o600)
        self.server.start()
        self.assertEqual(self.server.check(self.key, vid, self.server.wait_code(vid)).json["status"],
                         "approved")


if __name__ == "__main__":
    unittest.main()
