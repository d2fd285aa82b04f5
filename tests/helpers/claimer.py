"""A claiming process for the contention test: claims and publishes until nothing is left.

Run as `python claimer.py LEDGER OUT_DIR NAME`; prints one line per job it published, and counts
any sqlite3.OperationalError (such as "database is locked") instead of dying on it.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from songbatch.ledger import Ledger, Publication


def main() -> None:
    ledger_path, out_dir, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    errors = 0
    with Ledger(ledger_path) as ledger:
        while True:
            try:
                leases = ledger.claim(limit=1, worker=name, device="cpu", lease_s=600)
            except sqlite3.OperationalError as exc:
                errors += 1
                print(f"ERROR {exc}", flush=True)
                continue
            if not leases:
                break
            lease = leases[0]
            tmp = out_dir / f".{lease.key}.{lease.token}.tmp"
            tmp.write_bytes(lease.key.encode())
            try:
                [ok] = ledger.publish_many(
                    [Publication(lease, tmp, out_dir / lease.key, lease.key, 1, 1)]
                )
            except sqlite3.OperationalError as exc:
                errors += 1
                print(f"ERROR {exc}", flush=True)
                continue
            print(f"{'DONE' if ok else 'STALE'} {lease.key}", flush=True)
    print(f"ERRORS {errors}", flush=True)


if __name__ == "__main__":
    main()
