"""A writer process the object-store tests SIGKILL: `python -m tests.nats.object_writer URL NAME SIZE`.

It puts SIZE bytes (`payload(SIZE)`) to artifact NAME in chunks of `CHUNK`, saving the
committed cursor as the checkpoint after every fourth chunk, prints `ref <checkpoint ref>`
after each checkpoint and goes on writing, slowly, until it is killed.
"""

from __future__ import annotations

import json
import sys
import time

from blake3 import blake3

from engine.layout import Layout
from engine.object_store import ObjectStore
from events.observations import BundleFile

CHUNK = 8192


def payload(size: int) -> bytes:
    return blake3(b"object-writer").digest(length=size)


def layout(size: int) -> Layout:
    data = payload(size)
    return Layout([BundleFile("", size, "blake3:" + blake3(data).hexdigest())])


def main(url: str, name: str, size: int) -> None:
    data = payload(size)
    handle = ObjectStore(url).open(name, layout(size), "file")
    handle.prepare(0)
    for n, offset in enumerate(range(0, size, CHUNK), 1):
        committed, _ = handle.write(offset, data[offset : offset + CHUNK])
        if n % 4 == 0:
            ref = handle.checkpoint(json.dumps({"committed_cursor": committed}).encode())
            print("ref", ref, flush=True)
        time.sleep(0.01)  # the test kills it mid-put, with chunks past the last checkpoint
    print("done", flush=True)
    time.sleep(60)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
