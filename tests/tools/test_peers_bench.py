"""bench/peers_bench.py's own logic on a tiny workload: the raw limit writes asup's exact bytes
cut at its batches, every reader folds to what the events say, and the floors sit on the
issue's cell only. eventsourcing is never imported here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import peers_bench as pb
from log_bench import asup_append, make_workload, naive_append

from events.vocabulary import Durability


def test_raw_limit_writes_asups_bytes_and_every_reader_folds_the_events(tmp_path: Path) -> None:
    work = make_workload(10, seed=7)
    batches = work.batches(250, 100)
    asup, naive, raw = tmp_path / "a.jsonl", tmp_path / "n.jsonl", tmp_path / "r.jsonl"
    asup_append(asup, batches, Durability.BATCH)
    naive_append(naive, work, batches, Durability.BATCH)
    chunks = pb.batch_chunks(asup, [len(b) for b in batches])
    assert [chunk.count(b"\n") for chunk in chunks] == [101, 100, 50]  # the header rides with the first batch
    pb.raw_append(raw, chunks)
    assert raw.read_bytes() == asup.read_bytes()
    expected = pb.expected_fold(batches)
    assert sum(expected[0].values()) == 250 and len(expected[1]) == 10
    assert pb.asup_read(asup)[1] == expected
    assert pb.naive_read(naive)[1] == expected
    pb.raw_read(raw, 250)  # raises when the line count is off
    assert pb.asup_parallel_verify(asup, 250) > 0


def test_floors_sit_on_the_thousand_streams_thousand_batch_cell_only() -> None:
    cells = []
    for streams in pb.STREAMS:
        for batch in pb.BATCHES:
            cell = pb.Cell(streams, batch)
            for who in (pb.ASUP, *pb.PEERS):
                cell.add(cell.append, who, 1000, 0.01)
                cell.add(cell.read, who, 1000, 0.01)
            cell.add(cell.read, pb.PARALLEL, 1000, 0.005)
            cells.append(cell)
    figs = pb.figures(cells, argparse.Namespace(events=1000, es_events=500))
    floored = [(f["section"], f["name"], f["floors"]) for f in figs if f["floors"]]
    assert floored == [
        ("append", "1,000 streams, batches of 1,000, durable", pb.APPEND_FLOORS),
        ("read", "1,000 streams, batches of 1,000: verify + typed decode + fold, one process", pb.READ_FLOORS),
        ("read", "1,000 streams, batches of 1,000: asup log verify --jobs 2", pb.PARALLEL_FLOORS),
    ]
    assert figs[2]["value"] == 200_000 and figs[2]["peers"]["naive"]["value"] == 100_000
