"""The lazily kept id window must hold exactly what indexing every id at once would."""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from events.chain import ChainState, NewRecord

Window = dict[tuple[str, str], tuple[int, int, int]]


def eager(window: int, batches: list[tuple[int, list[NewRecord]]]) -> tuple[Window, list[tuple[str, str, int, int, int]]]:
    """The reference: each id indexed as it is committed, the oldest dropped past `window`;
    the map, and the entries a saved index gets."""
    recent: dict[tuple[str, str], tuple[int, int, int]] = {}
    order: deque[tuple[str, str]] = deque()
    for base, new in batches:
        for stream, sv, _h, event_id, seq, offset in new:
            recent[(stream, event_id)] = (seq, sv, base + offset)
            order.append((stream, event_id))
            if len(order) > window:
                recent.pop(order.popleft(), None)
    return recent, [(key[0], key[1], *recent[key]) for key in order if key in recent]


@settings(max_examples=200, deadline=None)
@given(
    window=st.integers(1, 6),
    sizes=st.lists(st.integers(0, 9), max_size=12),
    ids=st.lists(st.integers(0, 4), min_size=120, max_size=120),
    probe=st.integers(0, 12),
)
def test_lazy_window_equals_the_eager_one(window: int, sizes: list[int], ids: list[int], probe: int) -> None:
    """Repeated ids (which evict by key) and batches larger than the window included; the
    window is also read midway, which indexes what waits."""
    chain = ChainState(window)
    chain.log_id = "w"
    done: list[tuple[int, list[NewRecord]]] = []
    seq = 0
    for index, size in enumerate(sizes):
        new: list[NewRecord] = []
        for k in range(size):
            seq += 1
            new.append(("s", seq, f"h{seq}", f"id{ids[seq % len(ids)]}", seq, k))
        chain.remember_all(new, base=100 * index)
        done.append((100 * index, new))
        if index == probe:
            assert chain.recent == eager(window, done)[0]
    assert (chain.recent, chain.recent_entries()) == eager(window, done)
    assert chain.last_seq == seq
