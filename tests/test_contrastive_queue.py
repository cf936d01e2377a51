"""Time-stamped ring buffer: wrap-around, oversize batches, the length schedule, state round trip."""

import io

import pytest
import torch

from training.contrastive.queue import TimestampedQueue


def _keys(start, count, dim=3):
    return torch.arange(start, start + count, dtype=torch.float32)[:, None].repeat(1, dim)


def _active_rows(q):
    """(key id, stamp) of the active entries, sorted by key id."""
    ids = q.keys[q.active, 0].tolist()
    stamps = q.stamps[q.active].tolist()
    return sorted(zip(ids, stamps))


def test_partial_fill_then_wrap_keeps_newest_keys_and_stamps():
    q = TimestampedQueue(5, 3)
    q.enqueue(_keys(0, 3), stamp=10)
    assert q.pointer == 3 and q.num_valid == 3
    assert _active_rows(q) == [(0, 10), (1, 10), (2, 10)]
    q.enqueue(_keys(3, 4), stamp=11)  # wraps: 3, 4 at the end, 5, 6 overwrite slots 0, 1
    assert q.pointer == 2 and q.num_valid == 5
    assert q.keys[:, 0].tolist() == [5, 6, 2, 3, 4]
    assert q.stamps.tolist() == [11, 11, 10, 11, 11]
    assert _active_rows(q) == [(2, 10), (3, 11), (4, 11), (5, 11), (6, 11)]


def test_batch_larger_than_capacity_keeps_the_newest():
    q = TimestampedQueue(4, 3)
    q.enqueue(_keys(0, 1), stamp=0)
    q.enqueue(_keys(100, 6), stamp=1)
    assert sorted(q.keys[:, 0].tolist()) == [102, 103, 104, 105]
    assert q.pointer == (1 + 6) % 4
    assert q.keys[(q.pointer - 1) % 4, 0] == 105  # the newest key sits just before the pointer
    assert q.stamps.tolist() == [1, 1, 1, 1]


def test_linear_schedule_endpoints_and_newest_first_shrinking():
    q = TimestampedQueue(10, 3, schedule="linear", min_length=4)
    assert q.length_at(0.0) == 10 and q.length_at(1.0) == 4 and q.length_at(0.5) == 7
    assert q.length_at(-1.0) == 10 and q.length_at(5.0) == 4  # clamped to the run
    for i in range(10):
        q.enqueue(_keys(i, 1), stamp=i)
    q.set_progress(1.0)
    assert q.num_active == 4
    assert _active_rows(q) == [(6, 6), (7, 7), (8, 8), (9, 9)]  # the oldest entries are dropped first
    q.enqueue(_keys(10, 2), stamp=10)
    assert _active_rows(q) == [(8, 8), (9, 9), (10, 10), (11, 10)]
    fixed = TimestampedQueue(10, 3, schedule="fixed", min_length=4)
    assert fixed.length_at(1.0) == 10


def test_state_round_trip_through_a_snapshot():
    q = TimestampedQueue(6, 3, schedule="linear", min_length=2)
    q.enqueue(torch.randn(4, 3), 1)
    q.enqueue(torch.randn(4, 3), 2)
    q.set_progress(0.5)
    buf = io.BytesIO()
    torch.save(q.state_dict(), buf)
    buf.seek(0)
    r = TimestampedQueue(6, 3, schedule="linear", min_length=2)
    r.load_state_dict(torch.load(buf))
    assert torch.equal(r.keys, q.keys) and torch.equal(r.stamps, q.stamps) and torch.equal(r.active, q.active)
    assert (r.pointer, r.num_inserted, r.effective_length) == (q.pointer, 8, 4)
    new = torch.randn(3, 3)
    q.enqueue(new, 3)
    r.enqueue(new, 3)
    assert torch.equal(r.keys, q.keys) and torch.equal(r.active, q.active)


def test_bad_construction_and_resume_errors():
    with pytest.raises(ValueError, match="at least 1"):
        TimestampedQueue(0, 3, name="fqs")
    with pytest.raises(ValueError, match="minimum length"):
        TimestampedQueue(4, 3, schedule="linear", min_length=9)
    with pytest.raises(ValueError, match="unknown schedule"):
        TimestampedQueue(4, 3, schedule="cosine")
    with pytest.raises(ValueError, match=r"resume with the same queue length"):
        TimestampedQueue(5, 3).load_state_dict(TimestampedQueue(4, 3).state_dict())
    with pytest.raises(ValueError, match=r"expected keys \[B, 3\]"):
        TimestampedQueue(4, 3).enqueue(torch.zeros(2, 5), 0)
