"""Random bytes for message ids, read from the OS a block at a time (``otpagent.randompool``)."""

from __future__ import annotations

import os
import select
import signal
import sys
import threading

import pytest

from otpagent import randompool
from otpagent.intake import new_message_id


def test_tokens_are_hex_of_the_length_asked_and_never_repeat_across_blocks() -> None:
    tokens = [randompool.token_hex(10) for _ in range(3 * randompool.BLOCK // 10)]  # three blocks and more

    assert all(len(t) == 20 and int(t, 16) >= 0 for t in tokens)
    assert len(set(tokens)) == len(tokens)
    assert len(randompool.token_hex(randompool.BLOCK + 1)) == 2 * (randompool.BLOCK + 1)


def test_threads_draw_from_blocks_of_their_own() -> None:
    drawn: list[list[str]] = [[] for _ in range(4)]

    def draw(out: list[str]) -> None:
        out.extend(randompool.token_hex(10) for _ in range(1000))

    threads = [threading.Thread(target=draw, args=(out,)) for out in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()

    everything = [t for out in drawn for t in out]
    assert len(set(everything)) == len(everything) == 4000


@pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_never_repeats_its_parents_next_ids() -> None:
    new_message_id()  # the parent holds a block with bytes to spare
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        try:
            os.write(write, new_message_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    ready, _, _ = select.select([read], [], [], 10)  # bounded: a child that hangs fails the test
    if not ready:
        os.kill(pid, signal.SIGKILL)
    with os.fdopen(read) as pipe:
        child_id = pipe.read() if ready else ""
    os.waitpid(pid, 0)

    parent_id = new_message_id()
    assert child_id and child_id[16:] != parent_id[16:]  # the random part (after msg_ and the time)
