"""The live feed: followers fold new records into the model and publish them to a hub that
the console's server-sent events read.

Each log has one follower: its cold start (one pass, in a worker thread) and then the same
follower `asup tail -f` runs (replay/tail.py: inotify, complete records only). The hub keeps
the last `KEEP` records per log, so a browser that reconnects with `Last-Event-ID` gets what
it missed; an older gap is read again from the log. A subscriber that falls `QUEUE` records
behind is dropped (its stream ends; the browser reconnects with its Last-Event-ID), so a slow
page never holds a follower back.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from events.errors import AsupError
from replay.tail import follow
from runbook.console.model import LogModel
from runbook.console.views import LiveRecord

KEEP = 10_000
QUEUE = 1_000


class Hub:
    def __init__(self, model: LogModel) -> None:
        self.model = model
        self.kept: dict[int, deque[LiveRecord]] = {}
        self.subscribers: dict[int, set[MemoryObjectSendStream[LiveRecord]]] = {}
        self.closed = False

    def close(self) -> None:
        """End every subscription (the server is stopping: an open feed must not hold it)."""
        self.closed = True
        for sends in self.subscribers.values():
            for send in sends:
                send.close()
            sends.clear()

    def publish(self, items: list[LiveRecord]) -> None:
        for item in items:
            self.kept.setdefault(item.log, deque(maxlen=KEEP)).append(item)
            for send in list(self.subscribers.get(item.log, ())):
                try:
                    send.send_nowait(item)
                except anyio.WouldBlock:  # too far behind: end its stream, it resumes by Last-Event-ID
                    self.subscribers[item.log].discard(send)
                    send.close()
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    self.subscribers[item.log].discard(send)

    def last_seq(self, log: int) -> int:
        return self.model.logs[log].last_seq

    async def subscribe(self, log: int, after_seq: int, heartbeat: float | None = None) -> AsyncIterator[LiveRecord | None]:
        """Every record of `log` after `after_seq`, then each new one as it is folded; None
        after each `heartbeat` seconds without one (the caller's keep-alive)."""
        if self.closed:
            return
        send, receive = anyio.create_memory_object_stream[LiveRecord](QUEUE)
        self.subscribers.setdefault(log, set()).add(send)  # first: nothing published from here on is missed
        sent = after_seq
        item: LiveRecord | None
        try:
            for item in self._since(log, after_seq):
                yield item
                sent = item.seq
            async with receive:
                while True:
                    item = None
                    with anyio.move_on_after(math.inf if heartbeat is None else heartbeat):
                        try:
                            item = await receive.receive()  # a timeout here loses nothing: the item stays queued
                        except anyio.EndOfStream:  # dropped for falling behind (publish closed it)
                            return
                    if item is None:
                        yield None
                    elif item.seq > sent:
                        yield item
                        sent = item.seq
        finally:
            self.subscribers.get(log, set()).discard(send)
            send.close()

    def _since(self, log: int, after_seq: int) -> list[LiveRecord]:
        kept = self.kept.get(log, deque())
        now = self.last_seq(log)
        if after_seq >= now:
            return []
        oldest = kept[0].seq if kept else math.inf
        if after_seq + 1 >= oldest:
            return [item for item in kept if item.seq > after_seq]
        return self.model.records_between(log, after_seq, now)  # older than the hub keeps: from the log


async def run_followers(model: LogModel, hub: Hub, stop: anyio.Event) -> None:
    async with anyio.create_task_group() as group:
        for index in range(len(model.logs)):
            group.start_soon(_follow_one, model, hub, index, stop)
        await stop.wait()
        group.cancel_scope.cancel()


async def _follow_one(model: LogModel, hub: Hub, index: int, stop: anyio.Event) -> None:
    state = model.logs[index]
    await anyio.to_thread.run_sync(model.cold_start, index)
    async with anyio.create_task_group() as group:
        group.start_soon(_catch_up, model, index)  # the escalation folds, behind the rows
        if state.problem:
            return  # damage: what was read stays shown, with the problem; nothing after it is trusted
        try:
            if state.url is not None:
                await _follow_stream(model, hub, index)
                return
            async for record in follow(state.path, start=state.tailer, stop=stop):
                hub.publish(model.apply(index, [record]))
        except AsupError as exc:
            model.fail(index, exc.one_line())


async def _follow_stream(model: LogModel, hub: Hub, index: int) -> None:
    """A nats:// log: the records after its local copy, through an ordered consumer (as
    `asup tail -f` follows one), each written to the copy and then folded."""
    from events.jetstream.log import JetStreamLog  # nats-py only for a URL

    state = model.logs[index]
    url = state.url
    assert url is not None
    stream = await anyio.to_thread.run_sync(lambda: JetStreamLog.open(url, reader=True))
    try:
        async with contextlib.aclosing(stream.follow_lines(state.last_seq + 1)) as lines:
            async for record, line in lines:
                model.mirror(index, line)
                hub.publish(model.apply(index, [record]))
    finally:
        await anyio.to_thread.run_sync(stream.close)


async def _catch_up(model: LogModel, index: int) -> None:
    try:
        await anyio.to_thread.run_sync(model.catch_up, index, lambda: time.sleep(0.05), abandon_on_cancel=True)
    except AsupError as exc:
        model.fail(index, exc.one_line())
