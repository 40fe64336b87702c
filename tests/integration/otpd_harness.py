"""Black-box harness for otpd integration tests (Python standard library only).

Starts the real `otpd` binary on a free loopback port with a config written to a
temporary directory, drives it over HTTP, creates apps with the real `otpctl`, and
reads the codes the `log` provider writes to its messages.jsonl.

For the provider tests (test_smtp, test_smpp, test_http_provider) it also holds
what they share: PeerProcess (a peer program standing in for a provider),
ProviderTestCase (their base class), wait_until, make_test_ca and
require_node_packages.

Everything observable is recorded in module-level collections so that a test can
assert, at the end of the run, that no code ever leaked into an HTTP response or
into otpd's own output (SPEC §4.1, SECURITY.md 31).
"""

import fcntl
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))  # the repository
_DEFAULT_BUILD = os.path.join(HERE, "..", "..", "build", "dev", "apps")
OTPD_BIN = os.environ.get("OTPD_BIN") or os.path.join(_DEFAULT_BUILD, "otpd")
OTPCTL_BIN = os.environ.get("OTPCTL_BIN") or os.path.join(_DEFAULT_BUILD, "otpctl")

PROVIDER_NAME = "test-log"
ALL_CHANNELS = ["sms", "voice", "email", "whatsapp", "viber", "push", "flashcall"]

# ---- what the whole run observed (for the secrets test) ---------------------

RESPONSES = []      # every HTTP response: Response objects
CODES = set()       # every code the log provider wrote
RECIPIENTS = set()  # every recipient the log provider wrote (E.164 or email)
OTPCTL_KEYS = set() # every API key printed by otpctl
OUTPUTS = []        # (label, stdout_text, stderr_text) of every otpd run, read at stop
SERVERS = []        # every OtpdServer created (to read outputs of still-running ones)

_phone_counter = [int(time.time()) % 10_000 * 100]


def next_phone():
    """A fresh, valid Greek mobile number in E.164 (+30 691 xxx xxxx).

    Consecutive numbers are spread over many prefixes (the number without its
    last 4 digits), as real traffic is, so that a test's many unconfirmed starts
    do not look like SMS pumping to the app's default guard (7919 is prime to
    10^7: no number repeats within 10^7 calls)."""
    _phone_counter[0] = (_phone_counter[0] + 1) % 10_000_000
    return "+30691%07d" % (_phone_counter[0] * 7919 % 10_000_000)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def contains_code(text, code):
    """True when `code` occurs in `text` as a whole number (not inside a longer digit run)."""
    return re.search(r"(?<![0-9])" + re.escape(code) + r"(?![0-9])", text) is not None


class Response:
    def __init__(self, method, path, status, headers, body):
        self.method = method
        self.path = path
        self.status = status
        self.headers = headers            # list of (name, value)
        self.body = body                  # str
        self._json = None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def content_type(self):
        return (self.header("Content-Type") or "").split(";")[0].strip()

    @property
    def json(self):
        if self._json is None:
            self._json = json.loads(self.body)
        return self._json

    def __repr__(self):
        return "<%s %s -> %d %s>" % (self.method, self.path, self.status, self.body[:500])


class OtpdServer:
    """One otpd process over one temporary directory (reusable across restarts)."""

    def __init__(self, extra_config="", server_config="", ca_file=None):
        """`extra_config` is appended to the config file, `server_config` (lines)
        goes into its [server] table; with `ca_file` otpd is reached over HTTPS,
        trusting that CA (server_config then names tls_cert and tls_key)."""
        self.dir = tempfile.mkdtemp(prefix="otpd-it-")
        self.config_path = os.path.join(self.dir, "otpd.toml")
        self.db_path = os.path.join(self.dir, "otpd.db")
        self.messages_path = os.path.join(self.dir, "messages.jsonl")
        self.extra_config = extra_config
        self.server_config = server_config
        self.ca_file = ca_file
        self.port = None
        self.proc = None
        self.runs = 0
        self._out = None
        self._err = None
        SERVERS.append(self)

    # -- lifecycle -------------------------------------------------------------

    def _write_config(self):
        channels = ", ".join('"%s"' % c for c in ALL_CHANNELS)
        with open(self.config_path, "w") as f:
            f.write(
                '[server]\nlisten = "127.0.0.1:%d"\nthreads = 2\n%s\n\n'
                '[store]\nurl = "sqlite://%s"\n\n'
                '[security]\nmaster_key_file = "%s"\n\n'
                '[[provider]]\nname = "%s"\ntype = "log"\nchannels = [%s]\npath = "%s"\n\n%s'
                % (self.port, self.server_config, self.db_path, os.path.join(self.dir, "master.key"),
                   PROVIDER_NAME, channels, self.messages_path, self.extra_config))

    def start(self, timeout=10.0):
        last_error = None
        for _ in range(3):  # a picked port may be taken meanwhile: try another
            self.port = free_port()
            self._write_config()
            self.runs += 1
            self.stdout_path = os.path.join(self.dir, "stdout.%d.txt" % self.runs)
            self.stderr_path = os.path.join(self.dir, "stderr.%d.txt" % self.runs)
            self._out = open(self.stdout_path, "wb")
            self._err = open(self.stderr_path, "wb")
            env = dict(os.environ)
            for k in ("OTPD_LISTEN", "OTPD_STORE_URL", "OTPD_MASTER_KEY_FILE", "OTPD_CONFIG"):
                env.pop(k, None)
            self.proc = subprocess.Popen([OTPD_BIN, "--config", self.config_path],
                                         stdout=self._out, stderr=self._err, cwd=self.dir, env=env)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if self.request("GET", "/healthz", record=False).status == 200:
                        return
                except OSError:
                    pass
                time.sleep(0.05)
            if self.proc.poll() is None:
                last_error = "otpd did not answer /healthz within %.0f s" % timeout
                self.kill()
                break
            last_error = "otpd exited with %s" % self.proc.returncode
            self._close_files()
            self._record_outputs()
        raise RuntimeError("%s\n--- stderr ---\n%s" % (last_error, self.stderr()))

    def stop(self, timeout=15.0):
        """SIGTERM; returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        rc = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                rc = None
        else:
            rc = self.proc.returncode
        self.proc = None
        self._close_files()
        self._record_outputs()
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self._close_files()
        self._record_outputs()

    def cleanup(self):
        self.kill()
        if os.environ.get("OTPD_KEEP_TMP"):
            sys.stderr.write("otpd test dir kept: %s\n" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _close_files(self):
        for f in (self._out, self._err):
            if f is not None:
                f.close()
        self._out = self._err = None

    def _record_outputs(self):
        label = "%s run %d" % (self.dir, self.runs)
        if any(o[0] == label for o in OUTPUTS):
            return
        OUTPUTS.append((label, self.stdout(), self.stderr()))

    def stdout(self):
        return _read(getattr(self, "stdout_path", None))

    def stderr(self):
        return _read(getattr(self, "stderr_path", None))

    def all_stderr(self):
        return "".join(_read(os.path.join(self.dir, "stderr.%d.txt" % i))
                       for i in range(1, self.runs + 1))

    # -- otpctl ------------------------------------------------------------------

    def otpctl(self, *args, check=True):
        p = subprocess.run([OTPCTL_BIN, "--config", self.config_path] + list(args),
                           capture_output=True, text=True, timeout=30, cwd=self.dir)
        if check and p.returncode != 0:
            raise RuntimeError("otpctl %s failed (%d): %s%s" % (args, p.returncode, p.stdout,
                                                                 p.stderr))
        return p

    def create_app(self, name, *flags):
        out = json.loads(self.otpctl("app", "create", name, *flags).stdout)
        OTPCTL_KEYS.add(out["api_key"])
        return out

    def create_key(self, app):
        out = json.loads(self.otpctl("key", "create", app).stdout)
        OTPCTL_KEYS.add(out["api_key"])
        return out

    # -- HTTP --------------------------------------------------------------------

    def request(self, method, path, body=None, key=None, headers=None, raw=None, record=True,
                timeout=10.0):
        if self.ca_file:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=timeout,
                context=ssl.create_default_context(cafile=self.ca_file))
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {}
        data = None
        if raw is not None:
            data = raw if isinstance(raw, bytes) else raw.encode()
            h["Content-Type"] = "application/json"
        elif body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if key is not None:
            h["Authorization"] = "Bearer " + key
        h.update(headers or {})
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            resp = Response(method, path, r.status, r.getheaders(),
                            r.read().decode("utf-8", "replace"))
        finally:
            conn.close()
        if record:
            RESPONSES.append(resp)
        return resp

    # Shorthands for the verification API.
    def start_verification(self, key, body, headers=None):
        return self.request("POST", "/v1/verifications", body, key=key, headers=headers)

    def get(self, key, vid):
        return self.request("GET", "/v1/verifications/" + vid, key=key)

    def check(self, key, vid, code):
        return self.request("POST", "/v1/verifications/%s/check" % vid, {"code": code}, key=key)

    def resend(self, key, vid, body=None):
        return self.request("POST", "/v1/verifications/%s/resend" % vid, body, key=key)

    def cancel(self, key, vid):
        return self.request("POST", "/v1/verifications/%s/cancel" % vid, key=key)

    # -- messages written by the log provider -------------------------------------

    def messages(self):
        out = []
        try:
            with open(self.messages_path) as f:
                for line in f:
                    line = line.strip()
                    if not line:
                        continue
                    m = json.loads(line)
                    out.append(m)
                    if m.get("code"):
                        CODES.add(m["code"])
                    if m.get("to"):
                        RECIPIENTS.add(m["to"])
        except FileNotFoundError:
            pass
        return out

    def messages_for(self, vid):
        return [m for m in self.messages() if m.get("verification_id") == vid]

    def wait_messages(self, vid, count=1, timeout=5.0):
        """Polls messages.jsonl until `count` lines for `vid` exist; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages_for(vid)
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                raise AssertionError("expected %d message(s) for %s within %.1f s, got %d: %s"
                                     % (count, vid, timeout, len(found), found))
            time.sleep(0.05)

    def wait_code(self, vid, timeout=5.0):
        return self.wait_messages(vid, 1, timeout)[0]["code"]


def _read(path):
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def wrong_code(code):
    """A code of the same length that differs from `code`."""
    n = len(code)
    return ("%0*d" % (n, (int(code) + 1) % 10 ** n))



# ---- shared by the provider tests ---------------------------------------------

def wait_until(what, fn, timeout=8.0, interval=0.05):
    """Polls fn() until it returns a truthy value; returns it, or fails naming `what`
    (a string, or a function returning one, called at the timeout so that it can
    tell the last state seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s"
                                 % (timeout, what() if callable(what) else what))
        time.sleep(interval)


def require_node_packages(who, *packages):
    """Fails unless node and npm are installed; runs `npm ci` in the repository when
    one of the npm `packages` is missing from node_modules (the versions pinned in
    package-lock.json).

    ctest runs the node-using tests in parallel, and `npm ci` first deletes
    node_modules: without the lock one test's `npm ci` pulled the packages from under
    another's running peer (CI saw "Cannot find module 'smpp'"). The check and the
    install happen under an exclusive lock on a file beside node_modules, so the
    first test installs, the others wait and then find everything in place."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("%s needs node and npm (scripts/install-deps installs them)" % who)
    with open(os.path.join(ROOT, ".npm-ci.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(os.path.isdir(os.path.join(ROOT, "node_modules", n)) for n in packages):
            return
        p = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT,
                           capture_output=True, text=True, timeout=170)
        if p.returncode != 0:
            raise RuntimeError("npm ci failed (%d):\n%s\n%s" % (p.returncode, p.stdout, p.stderr))


def make_test_ca(directory):
    """A throwaway CA and a certificate for 127.0.0.1 signed by it, made with the
    openssl CLI at run time (no key is ever kept in the repository); returns the
    paths (ca, key, cert)."""
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


class PeerProcess:
    """A peer program standing in for a provider (an SMTP server, an SMSC, an HTTP
    API), started by a subclass on free loopback ports: its own temporary
    directory, its stderr in a file there, its ports read from its stdout."""

    name = "peer"  # in messages: "smtp peer", ...

    def __init__(self, prefix):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.err_path = os.path.join(self.dir, "peer.stderr")
        self._err = open(self.err_path, "wb")
        self.proc = None

    def _start(self, cmd, ports=1):
        """Runs `cmd` in the repository; returns the `ports` port numbers the peer
        prints first on stdout, one a line (stops it and fails if it does not)."""
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err, cwd=ROOT)
        lines = [self.proc.stdout.readline().decode().strip() for _ in range(ports)]
        if not all(x.isdigit() for x in lines):
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            err = self.stderr()  # before stop() removes the directory
            self.stop()
            raise RuntimeError("%s did not start: %r\n%s"
                               % (self.name, lines[0] if ports == 1 else lines, err))
        return [int(x) for x in lines]

    def stderr(self):
        return _read(self.err_path)

    def _wait_count(self, what, fetch, count, timeout):
        """Polls fetch() (a list of what the peer received) until it holds at least
        `count` items and returns it; fails naming `what`, with the last list seen
        and the peer's stderr."""
        found = []

        def enough():
            found[:] = fetch()
            return list(found) if len(found) >= count else None

        return wait_until(lambda: "%d %s at the %s, got %d: %s\n%s"
                          % (count, what, self.name, len(found), found, self.stderr()),
                          enough, timeout)

    def stop(self):
        """Terminates the peer (killed if it is still running after 10 s), closes its
        files and removes its directory."""
        if self.proc is not None:
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


class ProviderTestCase(unittest.TestCase):
    """Base of the provider tests. The otpd servers (otpd()) and peers (add_peer())
    a test starts are stopped at its end; when the test did not reach its end
    (did not set self._clean), their output is written to stderr first."""

    app_name = "app"  # the app otpd() creates
    secrets = ()      # what must never show in otpd's output (assert_no_secrets)

    def setUp(self):
        self.peers = []
        self.servers = []

    def tearDown(self):
        clean = getattr(self, "_clean", False)
        for s in self.servers:
            if not clean:
                sys.stderr.write("\n--- otpd stderr (%s) ---\n%s\n"
                                 % (self.id(), self.server_log(s)))
            s.stop()
            s.cleanup()
        for p in self.peers:
            if not clean:
                log = self.peer_log(p)
                if log is not None:
                    sys.stderr.write("\n--- %s (%s) ---\n%s\n" % (p.name, self.id(), log))
            p.stop()

    def server_log(self, server):
        """What tearDown shows of otpd's output when the test did not reach its end."""
        return server.stderr()[-4000:]

    def peer_log(self, peer):
        """What tearDown shows of a peer's output then (None: nothing)."""
        return None

    def add_peer(self, peer):
        """Registers a started PeerProcess to be stopped at the end of the test."""
        self.peers.append(peer)
        return peer

    def otpd(self, extra):
        """Starts otpd with `extra` appended to its config and creates the app
        `app_name`; returns (server, the app's API key)."""
        s = OtpdServer(extra_config=extra)
        self.servers.append(s)
        s.start()
        key = s.create_app(self.app_name)["api_key"]
        return s, key

    def start(self, server, key, body):
        """Starts a verification (201 expected); returns its JSON."""
        r = server.start_verification(key, body)
        self.assertEqual(r.status, 201, r)
        return r.json

    def wait_deliveries(self, server, key, vid, want, timeout=8.0):
        """Polls the verification until its delivery statuses start with `want`."""
        last = [None]

        def check():
            last[0] = server.get(key, vid).json
            statuses = [d["status"] for d in last[0]["deliveries"]]
            return last[0] if statuses[:len(want)] == want else None

        return wait_until(lambda: "deliveries %s; last: %s" % (want, last[0]), check, timeout)

    def approve(self, server, key, vid, code):
        """Checks `code`: it must be valid and approve the verification."""
        r = server.check(key, vid, code)
        self.assertEqual(r.status, 200, r)
        self.assertIs(r.json["valid"], True, r)
        self.assertEqual(r.json["status"], "approved", r)

    def assert_no_secrets(self, server, codes):
        """Neither the `secrets` nor any of `codes` show in otpd's output."""
        out = server.all_stderr() + server.stdout()
        for secret in self.secrets:
            self.assertNotIn(secret, out)
        for code in codes:
            self.assertFalse(contains_code(out, code), "code %s in otpd's output" % code)
