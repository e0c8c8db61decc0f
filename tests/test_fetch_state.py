"""The fetcher's state (cpoplib.fetch.state): a journal whose update costs
the batch, not the mailbox; torn last lines dropped, damage refused; the
JSON state of earlier versions migrated atomically; compaction."""
import json
import os

import pytest

from cpoplib.fetch import durable, errors
from cpoplib.fetch.state import State


def lines(path):
    return path.read_bytes().splitlines(keepends=True)


def make(path, batches, per_batch=10):
    state = State.load(str(path), "acct")
    state.open()
    for b in range(batches):
        state.record_batch([b"u%d-%d" % (b, i) for i in range(per_batch)],
                           [["/s/%d" % b, "/f/%d" % b]])
    state.close()
    return state


def test_uidls_are_bytes_and_lossless(tmp_path):
    """Any bytes a server sends as a UIDL come back as they were (the file
    holds them as latin-1 text)."""
    path = tmp_path / "state.json"
    odd = [bytes(range(33, 127)), bytes(range(128, 256)), b"\xff\x01"]
    state = State.load(str(path), "acct")
    state.open()
    state.record_batch(odd, [])
    state.close()
    assert set(State.load(str(path), "acct").delivered) == set(odd)


def test_a_batch_appends_one_line_whatever_the_state_holds(tmp_path):
    """Recording a batch of 10 UIDLs costs the same number of bytes after
    5 batches as after 500: nothing is rewritten."""
    path = tmp_path / "state.json"
    state = State.load(str(path), "acct")
    state.open()
    sizes = []
    for b in range(500):
        before = path.stat().st_size
        state.record_batch([b"uid-%06d-%d" % (b, i) for i in range(10)],
                           [["/s/%d" % b, "/f/%d" % b]])
        sizes.append(path.stat().st_size - before)
    state.close()
    assert len(lines(path)) == 501
    assert max(sizes) - min(sizes) <= 8, (min(sizes), max(sizes))
    assert len(State.load(str(path), "acct").delivered) == 5000


def test_reload_gives_what_was_recorded(tmp_path):
    path = tmp_path / "state.json"
    state = make(path, 3)
    state = State.load(str(path), "acct")
    assert sorted(state.delivered) == sorted(
        b"u%d-%d" % (b, i) for b in range(3) for i in range(10))
    assert state.pending == [["/s/2", "/f/2"]]
    state.open()
    state.forget([b"u0-0", b"u1-5", b"not-there"])
    state.set_pending([])
    state.set_mbox({"path": "/m", "open": False, "size": 7})
    state.close()
    again = State.load(str(path), "acct")
    assert b"u0-0" not in again.delivered and b"u1-5" not in again.delivered
    assert len(again.delivered) == 28
    assert again.pending == []
    assert again.mbox == {"path": "/m", "open": False, "size": 7}


def test_first_fetch_times_are_kept(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    state = State.load(str(path), "acct")
    state.open()
    monkeypatch.setattr("cpoplib.fetch.faults.time.time", lambda: 1000.0)
    state.record_batch([b"a", b"b"], [])
    monkeypatch.setattr("cpoplib.fetch.faults.time.time", lambda: 2000.0)
    state.record_batch([b"b", b"c"], [])        # b was fetched at 1000
    state.close()
    assert State.load(str(path), "acct").delivered == {
        b"a": 1000, b"b": 1000, b"c": 2000}


@pytest.mark.parametrize("tail", [b"{\"add\":[[1,[\"x\"]]],\"pen",
                                  b"\x00" * 300,
                                  b"{\"add\":[[1,[\"x\"]]]}\t00000000\n",
                                  b"{\"add\":[[1,[\"x\"]]]}\t"])
def test_a_torn_last_line_is_the_uncommitted_record(tmp_path, tail):
    """What a crash during an append leaves (a line cut short, zeros the
    file system never wrote, a record whose CRC does not match) is the
    one record that was never committed: dropped, and cut off before the
    next append."""
    path = tmp_path / "state.json"
    make(path, 2)
    whole = path.read_bytes()
    with open(path, "ab") as f:
        f.write(tail)
    state = State.load(str(path), "acct")
    assert b"x" not in state.delivered and len(state.delivered) == 20
    state.open()
    assert path.read_bytes() == whole
    state.record_batch([b"y"], [])
    state.close()
    assert set(State.load(str(path), "acct").delivered) >= {b"y", b"u1-9"}


def test_damage_before_the_last_line_is_refused(tmp_path):
    path = tmp_path / "state.json"
    make(path, 3)
    data = lines(path)
    data[1] = data[1].replace(b"u0-3", b"u0-X")     # CRC no longer matches
    path.write_bytes(b"".join(data))
    with pytest.raises(errors.FetchError) as info:
        State.load(str(path), "acct")
    assert info.value.code == errors.EXIT_DELIVERY
    assert "damaged" in info.value.message and "line 2" in info.value.message


@pytest.mark.parametrize("content", [b"", b"garbage\n", b"{\"version\": 7}",
                                     b"[1, 2]"])
def test_unknown_content_is_refused(tmp_path, content):
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(errors.FetchError) as info:
        State.load(str(path), "acct")
    assert info.value.code == errors.EXIT_DELIVERY


def test_the_earlier_json_state_is_migrated_atomically(tmp_path,
                                                       monkeypatch):
    path = tmp_path / "state.json"
    old = {"version": 1, "account": "acct", "uidls": ["a", "b", "c"],
           "pending": [["/s/1", "/f/1"]],
           "mbox": {"path": "/m", "open": True, "size": 10}}
    path.write_text(json.dumps(old, indent=0))
    replaced = []
    real = durable.write_atomic

    def spy(target, data, *args, **kwargs):
        replaced.append(target)
        return real(target, data, *args, **kwargs)

    monkeypatch.setattr(durable, "write_atomic", spy)
    state = State.load(str(path), "acct")
    assert set(state.delivered) == {b"a", b"b", b"c"}
    assert path.read_text() == json.dumps(old, indent=0)   # read only
    state.open()
    state.close()
    assert replaced == [str(path)]
    again = State.load(str(path), "acct")
    assert set(again.delivered) == {b"a", b"b", b"c"}
    assert again.pending == [["/s/1", "/f/1"]]
    assert again.mbox == old["mbox"]
    assert len(lines(path)) == 1 and b"\t" in lines(path)[0]


def test_changes_that_outweigh_the_snapshot_are_compacted(tmp_path):
    path = tmp_path / "state.json"
    make(path, 2000, per_batch=5)
    grown = path.stat().st_size
    state = State.load(str(path), "acct")
    state.open()                    # changes >> snapshot: rewritten
    state.close()
    assert len(lines(path)) == 1
    assert path.stat().st_size < grown * 0.6
    assert len(State.load(str(path), "acct").delivered) == 10000


def test_a_small_journal_is_not_rewritten(tmp_path):
    path = tmp_path / "state.json"
    make(path, 3)
    inode = os.stat(path).st_ino
    state = State.load(str(path), "acct")
    state.open()
    state.close()
    assert os.stat(path).st_ino == inode and len(lines(path)) == 4


def test_state_file_mode_is_private(tmp_path):
    path = tmp_path / "state.json"
    make(path, 1)
    assert path.stat().st_mode & 0o777 == 0o600


def test_compact_at_the_end_of_a_run(tmp_path):
    """A run that added many records replaces them with a snapshot itself,
    so that the next run (nothing new, say) does not pay for it."""
    path = tmp_path / "state.json"
    state = State.load(str(path), "acct")
    state.open()
    for b in range(2000):
        state.record_batch([b"u%d-%d" % (b, i) for i in range(5)], [])
    assert len(lines(path)) == 2001
    state.compact()
    assert len(lines(path)) == 1
    state.record_batch([b"after"], [])         # still open for appends
    state.close()
    again = State.load(str(path), "acct")
    assert len(again.delivered) == 10001 and b"after" in again.delivered
    assert len(lines(path)) == 2


def test_compact_leaves_a_small_journal(tmp_path):
    path = tmp_path / "state.json"
    state = make(path, 3)
    state = State.load(str(path), "acct")
    state.open()
    state.compact()
    state.close()
    assert len(lines(path)) == 4
