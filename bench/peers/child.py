"""``python -m bench.peers.child ROLE PEER PLACE [ARGS]``: one side of a peer measurement.

Every enqueue, fill and worker runs in a process of its own, started and stopped by the
bench, so no peer shares an interpreter (a global broker, an import's side effects, a warm
cache) with another or with the bench. Roles, each printing one JSON line when done:

- ``fill COUNT``: queue COUNT jobs (setup, not measured);
- ``enqueue COUNT BATCH BUDGET``: one warm-up call, then enqueue COUNT jobs one per call
  (BATCH 1) or in batches, for at most BUDGET seconds; prints ``done`` and ``seconds``;
- ``produce RATE SECONDS``: enqueue one job per call at RATE per second, each stamped with
  the time the call started (the worker's job log compares that with when it ran);
- ``work INDEX LATENCY``: a worker process: builds the consumer, says ``ready``, waits for
  ``go`` on stdin, works until SIGTERM (LATENCY 1: write the job log's latency lines).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from bench.peers import load
from bench.peers.base import Gate, JobLog, PeerDriver, Place, Producer, payloads

#: Recipients of different roles never collide (the otpagent driver parses each once).
_FIRST = {"fill": 10_000_000, "enqueue": 30_000_000, "produce": 50_000_000}


async def _with_producer(peer: PeerDriver, place: Place, role: str, args: list[str]) -> dict[str, float]:
    producer = peer.producer(place)
    await producer.open()
    try:
        if role == "fill":
            jobs = payloads(int(args[0]), _FIRST[role])
            await producer.fill(jobs)
            return {"done": len(jobs)}
        if role == "enqueue":
            return await _enqueue(producer, int(args[0]), int(args[1]), float(args[2]))
        return await _produce(producer, float(args[0]), float(args[1]))
    finally:
        await producer.close()


async def _enqueue(producer: Producer, count: int, batch: int, budget: float) -> dict[str, float]:
    jobs = payloads(count + batch, _FIRST["enqueue"])
    if batch == 1:
        await producer.send(jobs[0])  # warm up: connection, statement caches
        done = 0
        start = time.perf_counter()
        deadline = start + budget
        for job in jobs[1:count + 1]:
            if time.perf_counter() >= deadline:
                break
            await producer.send(job)
            done += 1  # noqa: SIM113 (counts only the calls made before the deadline)
    else:
        await producer.send_batch(jobs[:batch])  # warm up
        done = 0
        start = time.perf_counter()
        deadline = start + budget
        for offset in range(batch, len(jobs), batch):
            if time.perf_counter() >= deadline:
                break
            await producer.send_batch(jobs[offset:offset + batch])
            done += batch
    return {"done": done, "seconds": time.perf_counter() - start}


async def _produce(producer: Producer, rate: float, seconds: float) -> dict[str, float]:
    """A steady stream: job ``i`` is due at ``start + i / rate``; late ones go at once."""
    count = max(1, int(rate * seconds))
    jobs = payloads(count + 5, _FIRST["produce"])
    for job in jobs[:5]:  # warm up (t = 0: left out of the latencies)
        await producer.send(job)
    await asyncio.sleep(0.5)
    start = time.perf_counter()
    for i, job in enumerate(jobs[5:]):
        pause = start + i / rate - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)
        job["t"] = time.time()
        await producer.send(job)
    return {"done": count, "seconds": time.perf_counter() - start}


def main(argv: list[str]) -> int:
    role, name, place_text, *args = argv
    peer = load(name)
    place = Place.loads(place_text)
    if role == "work":
        index, latency = int(args[0]), args[1] == "1"
        job = JobLog(place.path / f"count-{index}.txt", place.path / "latency.txt" if latency else None)
        try:
            peer.work(place, job, Gate())
        finally:
            job.close()
        print(json.dumps({"done": job.count}), flush=True)
        return 0
    if role not in _FIRST:
        raise SystemExit(f"unknown role {role!r} (fill, enqueue, produce, work)")
    result = asyncio.run(_with_producer(peer, place, role, args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
