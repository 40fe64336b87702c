#!/usr/bin/env python3
"""Users with active TOTP factors for bench/load.sh, and fresh codes for them.

  totp_users.py create URL API_KEY COUNT SECRETS_FILE [PARALLEL]
      enrolls COUNT users (bench-u<n>) with one TOTP factor each through the API
      and activates it with the code of the previous time step, so that every
      code of the current step is still fresh (RFC 6238 §5.2: a step is accepted
      once per factor); writes "user secret" lines.
  totp_users.py codes SECRETS_FILE CODES_FILE
      writes "user code" lines: each user's code for the current time step.

Codes are computed here with Python's hmac (RFC 6238), not with otpd's code.
"""
import base64
import hashlib
import hmac
import http.client
import json
import struct
import sys
import threading
import time
import urllib.parse


def totp(secret_b32, t, digits=6, period=30):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(t) // period), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF
    return str(value % 10 ** digits).zfill(digits)


def create(url, api_key, count, out_path, parallel=8):
    target = urllib.parse.urlsplit(url)
    headers = {"Authorization": "Bearer " + api_key, "Content-Type": "application/json"}
    lines, errors, lock = [], [], threading.Lock()

    def work(first):
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        for n in range(first, count, parallel):
            user = "bench-u%d" % n
            try:
                conn.request("POST", "/v1/users/%s/factors" % user, json.dumps({"type": "totp"}),
                             headers)
                r = conn.getresponse()
                body = json.loads(r.read())
                if r.status != 201:
                    raise RuntimeError("enroll %s: %d %s" % (user, r.status, body))
                secret = body["secret"]
                # A code of the previous step is two steps old (refused: +-1 step)
                # if a step boundary passes before otpd checks it; then once more.
                for attempt in (1, 2):
                    code = totp(secret, time.time() - 30)
                    conn.request("POST", "/v1/users/%s/factors/%s/activate" % (user, body["id"]),
                                 json.dumps({"code": code}), headers)
                    r = conn.getresponse()
                    answer = json.loads(r.read())
                    if r.status == 200 and answer.get("valid"):
                        break
                    if attempt == 2 or r.status != 200:
                        raise RuntimeError("activate %s: %d %s" % (user, r.status, answer))
                with lock:
                    lines.append("%s %s\n" % (user, secret))
            except Exception as e:  # keep going; report at the end
                with lock:
                    errors.append(str(e))
                conn.close()
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(out_path, "w") as f:
        f.writelines(lines)
    if errors:
        sys.stderr.write("totp_users: %d errors, first: %s\n" % (len(errors), errors[0]))
    return 0 if lines else 1


def codes(secrets_path, out_path):
    now = time.time()
    with open(secrets_path) as f, open(out_path, "w") as out:
        for line in f:
            user, secret = line.split()
            out.write("%s %s\n" % (user, totp(secret, now)))
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "create":
        sys.exit(create(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5],
                        int(sys.argv[6]) if len(sys.argv) > 6 else 8))
    if len(sys.argv) == 4 and sys.argv[1] == "codes":
        sys.exit(codes(sys.argv[2], sys.argv[3]))
    sys.stderr.write(__doc__)
    sys.exit(2)
