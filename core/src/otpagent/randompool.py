"""Random bytes for identifiers, read from the operating system a block at a time.

Every message id carries 10 random bytes. ``secrets.token_hex`` asks the kernel for each (one
``getrandom`` call per id): on the enqueue path that call comes right after the previous
enqueue's ``fsync``, when every step runs on cold caches. Here a thread takes its bytes from a
block of its own, read with one call of ``os.urandom`` per 4,096 bytes (about 400 ids): the same
source, so the ids are exactly as unguessable.

Blocks are per thread, so two threads never hand out the same bytes; a forked child drops the
blocks it inherited (``os.register_at_fork``, as the ``random`` module reseeds itself), which
would otherwise repeat its parent's ids.
"""

from __future__ import annotations

import os
import threading

__all__ = ["token_hex"]

#: Bytes read from the operating system at a time.
BLOCK = 4096


class _Blocks(threading.local):
    block = b""
    offset = 0


_blocks = _Blocks()


def token_hex(nbytes: int) -> str:
    """``nbytes`` random bytes as hex, as :func:`secrets.token_hex` (``nbytes`` at most :data:`BLOCK`)."""
    blocks = _blocks
    start = blocks.offset
    end = start + nbytes
    block = blocks.block
    if end > len(block):
        block = blocks.block = os.urandom(max(BLOCK, nbytes))
        start, end = 0, nbytes
    blocks.offset = end
    return block[start:end].hex()


def _forget_inherited() -> None:
    """In a forked child: the parent's blocks would repeat the parent's next ids."""
    global _blocks
    _blocks = _Blocks()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited)
