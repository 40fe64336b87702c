#!/usr/bin/env python3
"""A small HTTP server standing in for an HTTP delivery provider (WhatsApp Cloud
API, an SMS HTTP API, ...) in otpd's tests. Python 3 standard library only.

    python3 http_peer.py [--port 0] [--listen-after-ms N] [--tls-dir DIR]

Prints the port it is bound to as the first line on stdout. With --tls-dir it
makes a throwaway CA and a certificate for 127.0.0.1 (openssl CLI) in DIR and
speaks HTTPS; DIR/ca.pem is the CA to trust. With --listen-after-ms it binds at
once but accepts connections only after N ms (connections are refused until
then), to test retries of connections that never reached a server.

Every request outside /_peer/ is recorded and answered with the next queued
answer, or the default one: 200 {"messages":[{"id":"peer-N"}]}. An answer is
{"status":200, "body":"...", "content_type":"application/json", "delay_ms":0,
"close":false}; "{id}" in its body becomes the request's message id "peer-N";
"close": true drops the connection without answering (after the delay).

Control endpoints (JSON):
    POST /_peer/answers   [answer, ...]  queue answers for the next requests
    POST /_peer/default   answer         the answer once the queue is empty
    GET  /_peer/requests                 [{"method","path","headers","body","id"}, ...]
    POST /_peer/reset                    forget requests and queued answers
    POST /_peer/dlr       {"url","body","content_type"}  POSTs a delivery report
                          (e.g. to otpd's /v1/providers/NAME/dlr?token=...) and
                          answers {"status","body"} with otpd's answer
"""

import argparse
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

DEFAULT_ANSWER = {"status": 200, "body": '{"messages":[{"id":"{id}"}]}',
                  "content_type": "application/json"}


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.answers = []
        self.default = dict(DEFAULT_ANSWER)
        self.counter = 0

    def record(self, entry):
        """Stores a request; returns (its message id, the answer to give)."""
        with self.lock:
            self.counter += 1
            entry["id"] = "peer-%d" % self.counter
            self.requests.append(entry)
            answer = self.answers.pop(0) if self.answers else self.default
            return entry["id"], dict(answer)


STATE = State()


def post_report(url, body, content_type):
    req = urllib.request.Request(url, data=body.encode("utf-8"), method="POST",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return {"status": r.status, "body": r.read().decode("utf-8", "replace")}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read().decode("utf-8", "replace")}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the tests read /_peer/requests
        pass

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status, body, content_type="application/json"):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _control(self, body):
        path = self.path.split("?")[0]
        if self.command == "GET" and path == "/_peer/requests":
            with STATE.lock:
                return self._send(200, json.dumps(STATE.requests))
        payload = json.loads(body or b"null")
        if path == "/_peer/answers":
            with STATE.lock:
                STATE.answers.extend(payload)
        elif path == "/_peer/default":
            with STATE.lock:
                STATE.default = payload
        elif path == "/_peer/reset":
            with STATE.lock:
                STATE.requests.clear()
                STATE.answers.clear()
                STATE.default = dict(DEFAULT_ANSWER)
        elif path == "/_peer/dlr":
            return self._send(200, json.dumps(post_report(
                payload["url"], payload["body"],
                payload.get("content_type", "application/json"))))
        else:
            return self._send(404, '{"error":"unknown control path"}')
        return self._send(200, '{"ok":true}')

    def _handle(self):
        body = self._body()
        if self.path.startswith("/_peer/"):
            return self._control(body)
        message_id, answer = STATE.record({
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
            "at": time.time(),
        })
        if answer.get("delay_ms"):
            time.sleep(answer["delay_ms"] / 1000.0)
        if answer.get("close"):
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        try:
            self._send(int(answer.get("status", 200)),
                       answer.get("body", "").replace("{id}", message_id),
                       answer.get("content_type", "application/json"))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


def make_tls_files(directory):
    """A CA and a certificate for 127.0.0.1 signed by it; returns (cert, key)."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)
    ca_key, ca = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.pem")
    key, csr = os.path.join(directory, "peer.key"), os.path.join(directory, "peer.csr")
    cert, ext = os.path.join(directory, "peer.pem"), os.path.join(directory, "peer.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=otpd http peer CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext)
    return cert, key


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--listen-after-ms", type=int, default=0)
    ap.add_argument("--tls-dir")
    args = ap.parse_args()

    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler,
                                             bind_and_activate=False)
    server.daemon_threads = True
    server.allow_reuse_address = True
    server.server_bind()
    if args.tls_dir:
        cert, key = make_tls_files(args.tls_dir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    if args.listen_after_ms:
        print(server.server_address[1], flush=True)  # refusing connections until listen()
        time.sleep(args.listen_after_ms / 1000.0)
        server.server_activate()
    else:
        server.server_activate()  # listening before the port is told: no refused first call
        print(server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
