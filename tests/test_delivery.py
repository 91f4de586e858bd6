"""The replay state machine (streamkit/delivery.py) on its own, against positions computed here."""
import datetime as dt

from hypothesis import example, given, strategies as st

from streamkit import Batch, Resume, iso_time
from streamkit.delivery import Replays, head, tail


def _batch(positions: list[int], partition: str = "p/0") -> Batch:
    contiguous = positions == list(range(positions[0], positions[0] + len(positions)))
    return Batch(partition, [{"at": q} for q in positions], positions[0], positions[-1] + 1,
                 None if contiguous else positions)


@given(st.lists(st.integers(0, 400), min_size=1, max_size=60, unique=True).map(sorted),
       st.integers(0, 450))
@example([5, 6, 7], 5)
@example([5, 6, 7], 8)
@example([0, 3, 9], 4)
def test_a_batch_completes_a_replay_at_exactly_its_end(positions, end):
    replays = Replays()
    replays.assigned(["p/0"], [{"p/0": Resume(positions[0], replay_end=end)}])
    batch = _batch(positions)
    done = replays.completes(batch)
    if positions[-1] + 1 < end:  # the batch stops short of the end: still replaying
        assert done is None and replays.replaying("p/0")
        return
    before = [q for q in positions if q < end]
    assert done == len(before) and not replays.replaying("p/0")
    first, rest = head(batch, done), tail(batch, done)
    assert [r["at"] for r in first.records] == before
    assert [r["at"] for r in rest.records] == [q for q in positions if q >= end]
    if before:  # the head ends where the next record starts: the rest, or the batch's end
        following = positions[len(before)] if len(before) < len(positions) else batch.next
        assert first.first == before[0] and first.next == following
    if len(before) < len(positions):
        assert rest.first == positions[len(before)] and rest.next == positions[-1] + 1


def test_the_lowest_position_and_the_nearest_replay_end_win():
    replays = Replays()
    resume = replays.assigned(["a", "b", "c"], [
        {"a": Resume(10), "b": Resume(4, replay_end=9)},
        {"a": Resume(7, replay_end=12), "b": Resume(6, replay_end=8), "c": Resume(3)},
    ])
    assert resume == {"a": 7, "b": 4, "c": 3}
    assert replays.ends == {"a": 12, "b": 8}
    assert replays.held(["a", "b", "c"]) == {"a", "b"}
    assert replays.unfinished({"a": 9}) == {"a": (9, 12), "b": (4, 8)}


def test_a_new_assignment_lost_or_revoked_partition_forgets_its_replay():
    replays = Replays()
    replays.assigned(["a", "b", "c"], [{p: Resume(0, replay_end=5) for p in "abc"}])
    replays.lost(["a"])
    assert replays.revoking(["b", "x"]) == ["b"]
    assert replays.ends == {"c": 5}
    assert replays.assigned(["c"], [{"c": Resume(2)}]) == {"c": 2}
    assert replays.ends == {} and replays.unfinished({}) == {}


def test_iso_time():
    assert iso_time(None) is None
    assert iso_time(0) == "1970-01-01T00:00:00Z"
    assert iso_time(90.5) == "1970-01-01T00:01:30.500000Z"
    assert iso_time(dt.datetime(2024, 5, 1, 12, 30)) == "2024-05-01T12:30:00Z"
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert iso_time(dt.datetime(2024, 5, 1, 12, 30, tzinfo=plus2)) == "2024-05-01T10:30:00Z"
    assert iso_time("later") == "later"
