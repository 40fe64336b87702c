#!/usr/bin/env python3
"""SMPP delivery throughput of otpd (figures, not pass/fail); run by bench/smpp_load.sh.

For each phase (window size, count N, optional start rate) it starts, on free
loopback ports in a temp dir:
  * the SMSC peer tests/peers/smpp_peer.js (npm smpp) in its "light" record mode
    (arrival time per destination number, no text decoding, no file), DELIVRD
    receipts 100 ms after each submit_sm as by default;
  * otpd (release build) with a fresh SQLite store and one `smpp` provider carrying
    sms with that `window`; an app made with otpctl, workflow sms:3600 (no second
    step fires during the run), ttl 3600;
then warms up (WARMUP verifications, not counted), starts N verifications through
POST /v1/verifications with CONNECTIONS keep-alive connections from this one
Python thread (distinct numbers: the per-recipient start limit is 5 per 10 min),
and waits until the peer has answered N submit_sm. It reports:
  starts/s   201 answers / time from the first POST to the last answer
  SMS/s      N / time from the first POST to the last submit_sm at the peer
  start->submit_sm p50/p99/max: the client's send time of each POST to the peer's
             arrival time of that number's submit_sm (same machine, same clock)
  API p50/p99: POST answer latency seen by the client
  CPU        user+system seconds of otpd, of the peer and of this client over the
             phase (first POST .. all submit_sm seen), and as cores (/ wall time)
Phases run one after another in one invocation, so ratios come from the same run.
"""

import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PEER = os.path.join(ROOT, "tests", "peers", "smpp_peer.js")
PASSWORD = "bench123"  # SMPP passwords are at most 8 characters
TICKS = os.sysconf("SC_CLK_TCK")
TARGET_SMS_S = 1000.0  # issue 3: >= 1,000 SMS/s end to end with window 10
BENCH_LIMITS = ["--request-rate", "0", "--fraud-mode", "off"]  # the bench app's limits


def env(name, default):
    return os.environ.get(name, default)


OTPD = env("OTPD", os.path.join(ROOT, "build", "release", "apps", "otpd"))
OTPCTL = env("OTPCTL", os.path.join(ROOT, "build", "release", "apps", "otpctl"))
PHASES = env("PHASES", "10:5000,1:3000,10:5000:hold,1:3000:hold,10:3000:500")  # window:N[:rate], comma separated
CONNECTIONS = int(env("CONNECTIONS", "64"))
WARMUP = int(env("WARMUP", "200"))
OTPD_THREADS = int(env("OTPD_THREADS", "0"))
OTPD_LOG_LEVEL = env("OTPD_LOG_LEVEL", "info")
KEEP_TMP = env("KEEP_TMP", "0") == "1"
STALL_S = float(env("STALL_S", "15"))  # give up when the peer sees nothing new this long
STACKS = int(env("STACKS", "0"))  # gdb samples of otpd's threads per phase (0 = none)


class BenchError(Exception):
    pass


def log(msg):
    print("== " + msg, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    """user+system CPU seconds of a process (all its threads) from /proc/PID/stat."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def thread_cpu(pid):
    """{(tid, name): cpu seconds} for every thread of pid."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                raw = f.read()
        except OSError:
            continue
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        out[(int(tid), name)] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def machine_cpu():
    """(busy, idle) CPU seconds of the whole machine from /proc/stat (idle includes iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / TICKS, idle / TICKS


def own_cpu():
    t = os.times()
    return t.user + t.system


def pct(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


# ------------------------------------------------------------------ processes
class Peer:
    def __init__(self, tmp):
        self.err_path = os.path.join(tmp, "peer.stderr")
        self._err = open(self.err_path, "wb")
        cmd = ["node", PEER, "--port", "0", "--control-port", "0", "--password", PASSWORD,
               "--mode", json.dumps({"record": "light"})]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err, cwd=ROOT)
        lines = []
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 15
        buf = b""
        while len(lines) < 2 and time.monotonic() < deadline:
            if not sel.select(timeout=0.2):
                if self.proc.poll() is not None:
                    break
                continue
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            lines = buf.decode(errors="replace").split("\n")[:-1]
        sel.close()
        if len(lines) < 2 or not all(x.strip().isdigit() for x in lines[:2]):
            self.stop()
            raise BenchError("the SMSC peer did not bind within 15 s (printed %r); its stderr:\n%s"
                             % (buf.decode(errors="replace"), read(self.err_path)))
        self.port, self.control_port = int(lines[0]), int(lines[1])
        self.pid = self.proc.pid

    def get(self, path):
        url = "http://127.0.0.1:%d%s" % (self.control_port, path)
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read().decode())

    def stop(self):
        stop_process(self.proc)
        self._err.close()


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def stop_process(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Otpd:
    def __init__(self, tmp, peer, window, extra=""):
        self.tmp = tmp
        conf = os.path.join(tmp, "otpd.toml")
        with open(conf, "w") as f:
            f.write("""[server]
listen = "127.0.0.1:0"
threads = %d

[store]
url = "sqlite://%s/otpd.db"

[security]
master_key_file = "%s/master.key"

[[provider]]
name = "smsc"
type = "smpp"
channels = ["sms"]
host = "127.0.0.1"
port = %d
system_id = "otpd"
password = "%s"
source_addr = "VERIFY"
window = %d
%s""" % (OTPD_THREADS, tmp, tmp, peer.port, PASSWORD, window, extra))
        self.conf = conf
        run([OTPCTL, "--config", conf, "migrate"], "otpctl migrate")
        # Sequential numbers, never confirmed: the pumping guard would refuse them
        # and the per-app request rate would cap the run, so both are off here.
        app = run([OTPCTL, "--config", conf, "app", "create", "bench", "--workflow", "sms:3600",
                   "--ttl", "3600"] + BENCH_LIMITS, "otpctl app create")
        try:
            self.api_key = json.loads(app)["api_key"]
        except (ValueError, KeyError):
            raise BenchError("otpctl app create printed no api_key: %r" % app)
        self.out_path = os.path.join(tmp, "otpd.out")
        self.log_path = os.path.join(tmp, "otpd.log")
        self._out = open(self.out_path, "wb")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([OTPD, "--config", conf, "--log-level", OTPD_LOG_LEVEL],
                                     stdout=self._out, stderr=self._log)
        self.pid = self.proc.pid
        self.port = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            m = re.search(r"otpd listening on http://127\.0\.0\.1:(\d+)", read(self.out_path))
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if self.port is None:
            self.stop()
            raise BenchError("otpd did not report its port within 10 s:\n%s%s"
                             % (read(self.out_path), read(self.log_path)[-4000:]))

    def stop(self):
        stop_process(self.proc)
        self._out.close()
        self._log.close()


def run(cmd, what):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise BenchError("%s failed (%d):\n%s%s" % (what, p.returncode, p.stdout, p.stderr))
    return p.stdout


# --------------------------------------------------------------------- client
def start_verifications(port, api_key, numbers, connections, rate=0.0):
    """POSTs one verification per number over `connections` keep-alive sockets.
    Returns (send_time{number: t}, answer_time{number: t}, statuses{code: n}, errors).
    rate > 0 paces the starts (open loop) at that many per second."""
    head = ("POST /v1/verifications HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Authorization: Bearer %s\r\nContent-Type: application/json\r\n" % api_key)
    sent, answered, statuses = {}, {}, {}
    errors = 0
    sel = selectors.DefaultSelector()
    todo = list(reversed(numbers))
    total = len(numbers)
    t0 = time.time()
    issued = 0

    class Conn:
        __slots__ = ("sock", "number", "buf")

    def connect():
        c = Conn()
        c.sock = socket.create_connection(("127.0.0.1", port))
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.sock.setblocking(False)
        c.number, c.buf = None, b""
        return c

    conns = [connect() for _ in range(min(connections, total))]
    idle = list(conns)
    done = 0

    def issue(c):
        nonlocal issued
        number = todo.pop()
        body = '{"to":"%s","locale":"en","ttl_s":3600}' % number
        req = (head + "Content-Length: %d\r\n\r\n%s" % (len(body), body)).encode()
        c.number, c.buf = number, b""
        sent[number] = time.time()
        c.sock.sendall(req)  # small request: fits the socket buffer at once
        sel.register(c.sock, selectors.EVENT_READ, c)
        issued += 1

    while done < total:
        now = time.time()
        while idle and todo:
            if rate > 0 and now < t0 + issued / rate:
                break
            issue(idle.pop())
        timeout = None
        if rate > 0 and idle and todo:
            timeout = max(0.0, t0 + issued / rate - time.time())
        if not sel.get_map():
            if timeout:
                time.sleep(timeout)
            continue
        for key, _ in sel.select(timeout):
            c = key.data
            try:
                chunk = c.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:  # the server closed: count an error, reconnect
                sel.unregister(c.sock)
                c.sock.close()
                errors += 1
                done += 1
                fresh = connect()
                conns[conns.index(c)] = fresh
                idle.append(fresh)
                continue
            c.buf += chunk
            end = c.buf.find(b"\r\n\r\n")
            if end < 0:
                continue
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", c.buf[:end + 2])
            length = int(m.group(1)) if m else 0
            if len(c.buf) < end + 4 + length:
                continue
            answered[c.number] = time.time()
            code = int(c.buf[9:12])
            statuses[code] = statuses.get(code, 0) + 1
            sel.unregister(c.sock)
            done += 1
            idle.append(c)
    for c in conns:
        c.sock.close()
    sel.close()
    return sent, answered, statuses, errors


# --------------------------------------------------------------------- stacks
def stack_sample(pid):
    """One gdb snapshot of every otpd thread, each reduced to its innermost otpd frames
    (what it is waiting in). Pauses otpd for a fraction of a second."""
    try:
        p = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 12"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    states = {}
    text = p.stdout.replace("(anonymous namespace)::", "")
    for t in re.split(r"\n(?=Thread \d+ )", text):
        if not t.startswith("Thread"):
            continue
        frames = [m.group(1) for m in re.finditer(r"#\d+\s+(?:0x[0-9a-f]+ in )?(\S+?)\s*\(", t)]
        ours = [f.replace("otpd::", "") for f in frames if f.startswith("otpd::")]
        if not ours:
            if any("scheduler::run" in f for f in frames):
                key = "asio pool/io thread (idle or running a handler)"
            elif any("fdatasync" in f for f in frames):
                key = "fdatasync"
            else:
                key = " < ".join(frames[:2])[:80]
        else:
            key = " < ".join(ours[:3])
        states[key] = states.get(key, 0) + 1
    return states


def sample_stacks(pid, count, delay, out):
    time.sleep(delay)
    for _ in range(count):
        st = stack_sample(pid)
        if st:
            out.append(st)
        time.sleep(0.5)


# ---------------------------------------------------------------------- phase
def wait_peer(peer, want_ok, deadline_s):
    """Polls the peer's counts until it answered want_ok submits; returns the stats."""
    last_ok, last_change = -1, time.monotonic()
    end = time.monotonic() + deadline_s
    while True:
        st = peer.get("/stats")
        if st["ok"] >= want_ok:
            return st
        if st["ok"] != last_ok:
            last_ok, last_change = st["ok"], time.monotonic()
        if time.monotonic() - last_change > STALL_S or time.monotonic() > end:
            return st
        time.sleep(0.02)


def run_phase(index, window, n, rate):
    """rate > 0: paced starts; rate < 0 ("hold"): the peer is stopped (SIGSTOP) while the N
    starts are made and continued (SIGCONT) after, so that the SMS/s, e2e and CPU figures are
    otpd's dispatcher draining a backlog with the API idle."""
    hold = rate < 0
    tmp = tempfile.mkdtemp(prefix="otpd-smpp-bench-")
    peer = otpd = None
    try:
        peer = Peer(tmp)
        # A held peer answers nothing for a few seconds: give the submits in flight time.
        otpd = Otpd(tmp, peer, window, "submit_timeout_s = 60\n" if hold else "")
        # bound?
        deadline = time.monotonic() + 10
        while peer.get("/stats")["sessions"] < 1:
            if time.monotonic() > deadline:
                raise BenchError("otpd did not bind to the SMSC peer within 10 s:\n%s"
                                 % read(otpd.log_path)[-4000:])
            time.sleep(0.05)
        log("phase %d: window %d, N %d%s — otpd pid %d on :%d, peer pid %d on :%d (%s)"
            % (index, window, n, ", %g starts/s" % rate if rate > 0 else
               ", peer held during the starts" if hold else "", otpd.pid, otpd.port,
               peer.pid, peer.port, tmp))
        # Numbers: +30691 then 7 digits; phase and warm-up get their own ranges.
        base = 1000000 + index * 200000
        if WARMUP > 0:
            warm = ["+30691%07d" % (base + i) for i in range(WARMUP)]
            _, _, st, _ = start_verifications(otpd.port, otpd.api_key, warm, CONNECTIONS)
            got = wait_peer(peer, st.get(201, 0), 30)
            if got["ok"] < st.get(201, 0):
                raise BenchError("warm-up: the peer saw %d of %d submit_sm" % (got["ok"], WARMUP))
            time.sleep(0.3)  # let the warm-up's receipts come back and be stored
        base_ok = peer.get("/stats")["ok"]
        numbers = ["+30691%07d" % (base + WARMUP + i) for i in range(n)]

        cpu0 = {"otpd": cpu_seconds(otpd.pid), "peer": cpu_seconds(peer.pid), "client": own_cpu(),
                "machine": machine_cpu()[0], "idle": machine_cpu()[1]}
        threads0 = thread_cpu(otpd.pid)
        load0 = read("/proc/loadavg").split()[:3]
        if hold:
            os.kill(peer.pid, signal.SIGSTOP)
        t_first = time.time()
        stacks, sampler = [], None
        if STACKS > 0 and shutil.which("gdb"):
            import threading
            sampler = threading.Thread(target=sample_stacks, daemon=True,
                                       args=(otpd.pid, STACKS, 1.0 if not hold else
                                             1.0 + n / 1500.0, stacks))
            sampler.start()
        try:
            sent, answered, statuses, errors = start_verifications(
                otpd.port, otpd.api_key, numbers, CONNECTIONS, max(rate, 0.0))
        finally:
            if hold:
                t_api = time.time()
                cpu_api = {"otpd": cpu_seconds(otpd.pid), "peer": cpu_seconds(peer.pid),
                           "client": own_cpu(), "machine": machine_cpu()[0],
                           "idle": machine_cpu()[1]}
                os.kill(peer.pid, signal.SIGCONT)
        api_s = (max(answered.values()) if answered else time.time()) - t_first
        if hold:
            # From here on only the dispatcher works: measure from the release.
            t_first, cpu0, threads0 = t_api, cpu_api, thread_cpu(otpd.pid)
            held_s = api_s
        t_api = t_first + api_s
        accepted = statuses.get(201, 0)
        st = wait_peer(peer, base_ok + accepted, 120)
        t_seen = time.time()
        cpu1 = {"otpd": cpu_seconds(otpd.pid), "peer": cpu_seconds(peer.pid), "client": own_cpu(),
                "machine": machine_cpu()[0], "idle": machine_cpu()[1]}
        threads1 = thread_cpu(otpd.pid)
        if sampler is not None:
            sampler.join(60)
        if otpd.proc.poll() is not None:
            raise BenchError("otpd died during the phase:\n%s" % read(otpd.log_path)[-4000:])

        arrivals = peer.get("/arrivals")
        first_at, dup = {}, 0
        for to, t in arrivals:
            key = "+" + to
            if key in sent:
                if key in first_at:
                    dup += 1
                else:
                    first_at[key] = t / 1000.0
        received = len(first_at)
        t_last = max(first_at.values()) if first_at else t_seen
        lat = sorted(first_at[k] - max(sent[k], t_first) for k in first_at)
        api = sorted(answered[k] - sent[k] for k in answered)
        wall = t_seen - t_first
        cpu = {k: (cpu1[k] - cpu0[k]) if cpu1[k] is not None else float("nan") for k in cpu0}
        # everything else on the machine (other users' processes, the kernel's own work)
        cpu["other"] = max(0.0, cpu.pop("machine") - cpu["otpd"] - cpu["peer"] - cpu["client"])
        busiest = sorted(((threads1.get(k, 0) - threads0.get(k, 0), k) for k in threads1),
                         reverse=True)[:6]
        log_text = read(otpd.log_path)
        return {
            "window": window, "n": n, "rate": rate, "accepted": accepted, "statuses": statuses,
            "errors": errors, "received": received, "dup": dup,
            "api_s": api_s, "e2e_s": t_last - t_first, "wall": wall, "hold": hold,
            "starts_s": accepted / api_s if api_s > 0 else 0.0,
            "sms_s": received / (t_last - t_first) if t_last > t_first else 0.0,
            "lat_p50": pct(lat, 50), "lat_p99": pct(lat, 99), "lat_max": lat[-1] if lat else 0,
            "api_p50": pct(api, 50), "api_p99": pct(api, 99),
            "cpu": cpu, "cores": {k: v / wall for k, v in cpu.items()},
            "threads": [(round(c, 2), "%s/%d" % (name, tid)) for c, (tid, name) in busiest],
            "retried": log_text.count('"event":"delivery_retried"'),
            "provider_failed": log_text.count('"event":"provider_failed"'),
            "receipts": st.get("receipts_sent"), "stacks": stacks, "load": (load0, read("/proc/loadavg").split()[:3]),
        }
    finally:
        if otpd is not None:
            otpd.stop()
        if peer is not None:
            peer.stop()
        if KEEP_TMP:
            log("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def parse_phases(spec):
    phases = []
    for part in spec.split(","):
        bits = part.strip().split(":")
        hold = len(bits) == 3 and bits[2] == "hold"
        if hold:
            bits = bits[:2]
        if len(bits) not in (2, 3) or not all(b.replace(".", "", 1).isdigit() for b in bits):
            raise BenchError("PHASES: use window:N[:rate|:hold],... (got %r)" % spec)
        window, n = int(bits[0]), int(bits[1])
        rate = float(bits[2]) if len(bits) == 3 else (-1.0 if hold else 0.0)
        if not 1 <= window <= 1000 or n < 1:
            raise BenchError("PHASES: window 1..1000 and N >= 1 (got %r)" % part)
        phases.append((window, n, rate))
    return phases


def main():
    for tool in ("node",):
        if shutil.which(tool) is None:
            raise BenchError("%s is not installed (scripts/install-deps installs it)" % tool)
    for binary in (OTPD, OTPCTL):
        if not os.access(binary, os.X_OK):
            raise BenchError("no release build at %s: run 'make build' first" % binary)
    if not os.path.isdir(os.path.join(ROOT, "node_modules", "smpp")):
        raise BenchError("node_modules/smpp is missing: run 'npm ci' in %s" % ROOT)
    phases = parse_phases(PHASES)
    started = time.time()
    results = [run_phase(i, w, n, r) for i, (w, n, r) in enumerate(phases)]

    print()
    print("otpd SMPP delivery benchmark — %s, %d cores, %d client connections, warm-up %d, "
          "otpd threads=%d log-level=%s, peer DELIVRD receipts after 100 ms"
          % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), os.cpu_count(), CONNECTIONS,
             WARMUP, OTPD_THREADS, OTPD_LOG_LEVEL))
    print("app limits: %s (per-app request rate and SMS-pumping guard off for the bench app)"
          % " ".join(BENCH_LIMITS))
    print()
    hdr = ("%-9s %6s %6s %8s %6s %6s %8s %8s %8s %7s %7s %5s %5s %6s %5s %5s"
           % ("window", "N", "wall s", "starts/s", "SMS/s", "ratio", "e2e p50", "e2e p99",
              "e2e max", "API p50", "API p99", "otpd", "peer", "client", "other", "idle"))
    print(hdr)
    print("%-9s %6s %6s %8s %6s %6s %8s %8s %8s %7s %7s %5s %5s %6s %5s %5s"
          % ("", "", "", "", "", "SMS/st", "ms", "ms", "ms", "ms", "ms", "cores", "cores",
             "cores", "cores", "cores"))
    ref = None
    for r in results:
        ref = ref or r
        c = r["cores"]
        label = str(r["window"]) + (" held" if r["hold"] else "@%g/s" % r["rate"] if r["rate"]
                                    else "")
        print("%-9s %6d %6.2f %8.0f %6.0f %6.2f %8.1f %8.1f %8.1f %7.2f %7.2f %5.2f %5.2f %6.2f %5.2f %5.2f"
              % (label, r["n"], r["e2e_s"], r["starts_s"], r["sms_s"],
                 r["sms_s"] / r["starts_s"] if r["starts_s"] else 0, r["lat_p50"] * 1e3,
                 r["lat_p99"] * 1e3, r["lat_max"] * 1e3, r["api_p50"] * 1e3, r["api_p99"] * 1e3,
                 c["otpd"], c["peer"], c["client"], c["other"], c["idle"]))
    print()
    for r in results:
        label = "window %d%s" % (r["window"], " held (drain only)" if r["hold"] else
                                 " at %g starts/s" % r["rate"] if r["rate"] else "")
        problems = []
        if r["accepted"] != r["n"] or r["errors"]:
            problems.append("answers %s, %d socket errors"
                            % (",".join("%d:%d" % kv for kv in sorted(r["statuses"].items())),
                               r["errors"]))
        if r["received"] != r["accepted"]:
            problems.append("peer received %d of %d" % (r["received"], r["accepted"]))
        if r["dup"] or r["retried"] or r["provider_failed"]:
            problems.append("%d duplicate submit_sm, %d delivery_retried, %d provider_failed"
                            % (r["dup"], r["retried"], r["provider_failed"]))
        print("%s: CPU s otpd %.2f, peer %.2f, client %.2f over %.2f s; API done after %.2f s%s; "
              "otpd's busiest threads (cpu s): %s%s"
              % (label, r["cpu"]["otpd"], r["cpu"]["peer"], r["cpu"]["client"], r["wall"],
                 r["api_s"], " (peer held meanwhile; figures from its release)" if r["hold"] else "",
                 ", ".join("%s %.2f" % (name, c) for c, name in r["threads"]),
                 ("; INVALID: " + "; ".join(problems)) if problems else ""))
    for r in results:
        if r["stacks"]:
            merged = {}
            for st in r["stacks"]:
                for k, v in st.items():
                    merged[k] = merged.get(k, 0) + v
            print("window %d%s: otpd threads by where they are (mean of %d gdb samples): %s"
                  % (r["window"], " held" if r["hold"] else "", len(r["stacks"]),
                     "; ".join("%.1f %s" % (v / len(r["stacks"]), k) for k, v in
                               sorted(merged.items(), key=lambda kv: -kv[1])[:8])))
    w10 = [r for r in results if r["window"] == 10 and not r["rate"]]
    if w10:
        r = w10[0]
        verdict = "met" if r["sms_s"] >= TARGET_SMS_S else "MISSED"
        if r["received"] != r["n"]:
            verdict = "INVALID"
        peer_bound = r["cores"]["peer"] >= 0.85
        print()
        print("target >= %d SMS/s end to end with window 10: %.0f SMS/s — %s; the peer (node, one "
              "thread) used %.2f cores, otpd %.2f of %d: %s"
              % (TARGET_SMS_S, r["sms_s"], verdict, r["cores"]["peer"], r["cores"]["otpd"],
                 os.cpu_count(), "the peer is saturated (the limit)" if peer_bound else
                 "the peer is NOT saturated (the limit is elsewhere)"))
    print("SMS/s = N / (last submit_sm at the peer - first POST); starts/s = 201s / (last answer - "
          "first POST); e2e = POST sent -> submit_sm arrived at the peer; cores = CPU s / wall s "
          "(first POST .. all submit_sm seen), other = the rest of the machine's busy CPU (other "
          "processes, kernel), idle = idle + iowait; held = the peer was stopped while the N starts "
          "were made: SMS/s, e2e and CPU then count from its release (otpd's dispatcher alone); load average before/after the first "
          "phase: %s / %s; total %.0f s"
          % (" ".join(results[0]["load"][0]), " ".join(results[0]["load"][1]),
             time.time() - started))


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print("smpp_load: %s" % e, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
