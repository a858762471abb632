"""The OTP key file appears whole or not at all, and two creators agree on one key.

CI once failed on ``test_two_processes_waiting_at_once_with_no_worker_send_each_message_once``:
the second process read the key file between the first one's exclusive create and its write,
found it empty and refused to start. These tests pin the fix without racing real processes.
"""

from __future__ import annotations

import errno
import os
import stat
import threading

import pytest

from otpagent import otp_keyfile
from otpagent.errors import ConfigError
from otpagent.otp_keyfile import create_key_file, read_key_file


def test_the_key_file_does_not_exist_until_it_is_written_whole(tmp_path, monkeypatch):
    path = tmp_path / "otpagent.key"
    seen_while_writing: list[bool] = []
    real_write = os.write

    def watching_write(fd: int, data: bytes) -> int:
        seen_while_writing.append(path.exists())
        return real_write(fd, data)

    monkeypatch.setattr(otp_keyfile.os, "write", watching_write)
    secret = create_key_file(path)

    assert seen_while_writing == [False]
    assert read_key_file(path) == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["otpagent.key"]  # no temporary file left


def test_a_second_creator_gets_the_first_ones_key_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "otpagent.key"
    first = create_key_file(path)

    assert create_key_file(path) == first
    assert create_key_file(path, "another secret of enough length") == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["otpagent.key"]


def test_creators_in_many_threads_all_return_the_one_key_on_disk(tmp_path):
    path = tmp_path / "otpagent.key"
    start = threading.Barrier(8)
    results: list[str] = []
    lock = threading.Lock()

    def create() -> None:
        start.wait(timeout=10)
        secret = create_key_file(path)
        with lock:
            results.append(secret)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(results) == 8
    assert set(results) == {read_key_file(path)}


def test_without_hard_links_the_key_is_created_in_place(tmp_path, monkeypatch):
    path = tmp_path / "otpagent.key"

    def refuse_link(src: str, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(otp_keyfile.os, "link", refuse_link)
    secret = create_key_file(path)

    assert read_key_file(path) == secret
    assert create_key_file(path) == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["otpagent.key"]


def test_a_directory_that_cannot_hold_the_key_names_the_config_key(tmp_path):
    with pytest.raises(ConfigError) as caught:
        create_key_file(tmp_path / "missing" / "otpagent.key")

    assert caught.value.path == "otp.key_file"
    assert "cannot create the OTP key file" in str(caught.value)
