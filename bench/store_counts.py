#!/usr/bin/env python3
"""What a bench/load.sh run changed in otpd's SQLite store, read from the store itself.

  store_counts.py checks DB
      prints "checks=N approved=M": the checks counted on every verification
      and how many verifications are approved. Before and after a run of
      wrong-code checks, the first must grow by the number of answers (each
      check is a durable write) and the second must not grow at all.
  store_counts.py steps DB SNAPSHOT
      writes each factor's last accepted time step to SNAPSHOT.
  store_counts.py steps DB SNAPSHOT --since BEFORE
      prints "accepted=N": the factors whose last accepted step moved since the
      snapshot BEFORE, i.e. the TOTP codes the store accepted in between.

wrk counts the answers' statuses itself (status >= 400 is an error); what the
answers said is checked here, in the store, so that wrk runs no Lua per answer:
that callback cost wrk about 5 us more per check than per nginx answer, CPU
taken from the two cores otpd runs on (docs/benchmarks.md). Read-only: it opens
the database in WAL mode beside the running otpd.
"""
import sqlite3
import sys


def connect(path):
    return sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)


def checks(db):
    row = db.execute(
        "SELECT COALESCE(SUM(check_count), 0), "
        "COALESCE(SUM(status = 'approved'), 0) FROM verifications").fetchone()
    print("checks=%d approved=%d" % row)


def steps(db, snapshot, since=None):
    now = dict(db.execute("SELECT id, last_step FROM factors"))
    with open(snapshot, "w") as f:
        for factor, step in now.items():
            f.write("%s %d\n" % (factor, step))
    if since is not None:
        before = {}
        with open(since) as f:
            for line in f:
                factor, step = line.split()
                before[factor] = int(step)
        print("accepted=%d" % sum(1 for k, v in now.items() if before.get(k) != v))


def main(argv):
    if len(argv) == 3 and argv[1] == "checks":
        checks(connect(argv[2]))
    elif len(argv) == 4 and argv[1] == "steps":
        steps(connect(argv[2]), argv[3])
    elif len(argv) == 6 and argv[1] == "steps" and argv[4] == "--since":
        steps(connect(argv[2]), argv[3], argv[5])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
