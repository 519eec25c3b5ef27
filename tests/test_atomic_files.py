"""Whole-or-nothing writes, checksums beside the files a resume trusts, and the cleanup of a killed writer's temp
files (pwmbench/results/atomic_files.py); what the runner makes of them is in test_faults.py."""

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pwmbench.results.atomic_files import (
    ChecksumMismatch,
    checksum_path,
    move_aside,
    remove,
    remove_temp_files,
    verify_checksum,
    write_atomic,
)
from pwmbench.results.tables import UnreadableTable, read_table, run_table, write_table_atomic


@given(data=st.binary(min_size=1, max_size=2000), at=st.integers(0, 1999), flip=st.integers(1, 255))
def test_any_changed_byte_is_caught_by_the_checksum(tmp_path_factory, data, at, flip):
    path = tmp_path_factory.mktemp("c") / "file.bin"
    write_atomic(data, path, checksum=True)
    verify_checksum(path)  # as written: fine
    changed = bytearray(data)
    changed[at % len(data)] ^= flip
    path.write_bytes(bytes(changed))
    with pytest.raises(ChecksumMismatch, match="file.bin does not match its checksum"):
        verify_checksum(path)


def test_a_result_table_with_a_changed_byte_is_unreadable_not_believed(tmp_path):
    path = write_table_atomic(run_table({"task": "t", "status": "ok", "final_return": 1.5}), tmp_path / "run.arrow")
    data = bytearray(path.read_bytes())
    offset = data.index(b"\x00\x00\xf8\x3f")  # 1.5 as a little-endian float64 ends in these bytes: a value, not the framing
    data[offset + 3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(UnreadableTable, match="does not match its checksum"):
        read_table(path)


def test_checksums_follow_their_files(tmp_path):
    path = write_atomic(b"one", tmp_path / "a", checksum=True)
    write_atomic(b"two", path)  # rewritten without a checksum: the old one goes first, it cannot mismatch
    assert not checksum_path(path).exists()
    verify_checksum(path)
    write_atomic(b"three", path, checksum=True)
    aside = move_aside(path)
    assert aside.name == "a.corrupt" and not checksum_path(path).exists()
    write_atomic(b"four", path, checksum=True)
    remove(path)
    assert list(tmp_path.iterdir()) == [aside]


@pytest.mark.parametrize("first_file_had_checksum", [True, False])
@pytest.mark.parametrize("crash_at_rename", [1, 2, 3])
def test_a_crash_at_any_rename_leaves_a_whole_file_its_checksum_vouches_for(tmp_path, monkeypatch, crash_at_rename, first_file_had_checksum):
    """A checksummed rewrite renames three times (checksum naming old and new, the file, checksum naming the new one);
    killed before any of them, the file is the old or the new one and has a checksum that matches it — a resume never
    finds a checkpoint it must throw away because of when the kill came."""
    import os

    path = write_atomic(b"old", tmp_path / "checkpoint.pt", checksum=first_file_had_checksum)
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == crash_at_rename:
            raise KeyboardInterrupt("killed")  # the process dies here: nothing after this runs
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(b"new", path, checksum=True)
    monkeypatch.undo()
    assert path.read_bytes() == (b"new" if crash_at_rename == 3 else b"old")
    untouched = crash_at_rename == 1  # killed before anything was renamed: exactly as it was
    assert checksum_path(path).exists() == (first_file_had_checksum or not untouched)
    verify_checksum(path)
    write_atomic(b"newer", path, checksum=True)  # and the next write after the resume leaves one hash
    assert len(checksum_path(path).read_text().split()) == 1
    verify_checksum(path)


def test_two_crashes_in_a_row_still_leave_a_file_its_checksum_vouches_for(tmp_path, monkeypatch):
    """Killed before the rename twice running: the file is still the first one, and the checksum file must still name
    its hash (keeping only the newest hashes would drop it)."""
    import os

    path = write_atomic(b"first", tmp_path / "checkpoint.pt", checksum=True)
    real_replace = os.replace

    def killed_before_the_data_rename(src, dst):
        if Path(dst) == path:
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_before_the_data_rename)
    for data in (b"second", b"third"):
        with pytest.raises(KeyboardInterrupt):
            write_atomic(data, path, checksum=True)
    monkeypatch.undo()
    assert path.read_bytes() == b"first"
    verify_checksum(path)


def test_a_killed_writers_temp_files_are_removed_and_nothing_else(tmp_path):
    (tmp_path / ".run.arrow.abc123.tmp").write_bytes(b"half")
    (tmp_path / ".checkpoint.pt.x.tmp").write_bytes(b"half")
    (tmp_path / "notes.tmp").write_text("a user's file: not ours")
    (tmp_path / "run.arrow").write_bytes(b"whole")
    removed = remove_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == [".checkpoint.pt.x.tmp", ".run.arrow.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp", "run.arrow"]
