"""A batch of requests validated a chunk at a time, so the store can write one chunk while the
next is being validated.

A bulk send validates every request (parse, build the row, check a channel can carry it)
before anything is stored, and then writes them all in one transaction. On PostgreSQL the two
halves cost about the same and ran one after the other: the client validated while the server
idled, then the server inserted while the client waited. A backend with the streamed enqueue
capability (:class:`~otpagent.protocols.StreamedEnqueue`) takes :func:`validated_chunks` as it
is produced and sends each chunk's insert while the next chunk is validated; it commits only
after the last one.

What the caller sees is unchanged: the batch is all or nothing, and a bad batch is refused
with every error listed. The first error stops the chunks (the store never receives a chunk
after it, and the exception this generator raises at the end rolls back what the store sent), but
validation goes on to the end of the batch so that every bad entry is named, exactly as when
the whole batch was validated first: the parse errors of every entry when any entry does not
parse, otherwise every entry no channel can carry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from otpagent.errors import FieldError, InvalidRequest
from otpagent.intake import parse_requests, to_new_message
from otpagent.model import MessageRequest, MessageType
from otpagent.protocols import NewMessage

__all__ = ["CHUNK_SIZE", "as_batch", "validated_chunks"]

#: Requests per chunk. Small enough that the first insert starts early and the last one (which
#: nothing overlaps) is short; large enough that a statement's fixed cost is shared (8 was
#: slower than 32 for batches of 100 on PostgreSQL; docs/benchmarks.md).
CHUNK_SIZE = 32

#: Why a request cannot be queued as it is (empty when it can), given its position.
Check = Callable[[NewMessage, int], list[FieldError]]


def as_batch(requests: Iterable[MessageRequest | Mapping[str, Any]]) -> Sequence[MessageRequest | Mapping[str, Any]]:
    """The requests as a sequence (a generator of requests is taken whole); one request passed
    where a list is expected is refused by name rather than read as a list of its keys."""
    if isinstance(requests, Mapping | MessageRequest):
        raise InvalidRequest([FieldError("<batch>", "expected a list of messages, got a single message "
                                                    "(send_message() takes one)")])
    return requests if isinstance(requests, Sequence) else list(requests)


def validated_chunks(requests: Sequence[MessageRequest | Mapping[str, Any]], *, now: float, check: Check,
                     accepted: list[NewMessage], chunk_size: int = CHUNK_SIZE) -> Iterator[list[NewMessage]]:
    """The batch as rows ready to enqueue, ``chunk_size`` at a time, each also appended to
    ``accepted``. Raises :class:`InvalidRequest` (after the last chunk it would have yielded)
    when any request is bad, naming every bad one by its index in ``requests``.
    """
    parse_errors: list[FieldError] = []
    errors: list[FieldError] = []
    for start in range(0, len(requests), chunk_size):
        try:
            parsed = parse_requests(requests[start:start + chunk_size], start=start)
        except InvalidRequest as exc:
            parse_errors.extend(exc.errors)
            continue
        if parse_errors:
            continue  # only the parse errors are reported, as when the batch is parsed first
        chunk: list[NewMessage] = []
        for index, request in enumerate(parsed, start):
            if request.message_type is MessageType.OTP:
                errors.append(FieldError("message_type", "use send_otp() for OTPs (the agent makes the code)", index))
                continue
            item = to_new_message(request, now=now)
            errors.extend(check(item, index))
            chunk.append(item)
        if not errors:
            accepted.extend(chunk)
            yield chunk
    if parse_errors or errors:
        raise InvalidRequest(parse_errors or errors)
