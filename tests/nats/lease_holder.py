"""A lease holder process the KV lease tests SIGKILL: `python -m tests.nats.lease_holder URL BUCKET KEY TTL`.

It takes the lease KEY in KV bucket BUCKET (TTL seconds), prints `held`, and renews it until killed.
"""

from __future__ import annotations

import sys
import time

from engine.kv_leases import KvLeases
from engine.liveness import holder_for
from events.jetstream.url import parse


def main(url: str, bucket: str, key: str, ttl: float) -> None:
    lease = KvLeases(parse(url), ttl=ttl, bucket=bucket).take(key, holder_for("t-child", time.time_ns()))
    print("held" if lease is not None else "refused", flush=True)
    time.sleep(120)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
