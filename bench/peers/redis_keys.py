"""The Redis side the Redis peers share: the server, bench-only database numbers, key names.

Every key a peer creates holds ``otpbench-<tag>`` (Dramatiq's namespace, Celery's queue name),
in a database number only the bench uses (:data:`DB`; Celery's fixed bookkeeping keys such as
``unacked`` live in :data:`CELERY_DB`). Cleaning up deletes exactly those keys (``SCAN`` +
``DEL``), never a whole database. This machine's Redis runs without persistence (no RDB
snapshots, no AOF), which the docs state beside the figures.
"""

from __future__ import annotations

import os

__all__ = ["CELERY_DB", "DB", "URL", "delete_keys", "key_prefix", "persistence", "redis_unavailable", "url"]

HOST = os.environ.get("OTPAGENT_BENCH_REDIS_HOST", "127.0.0.1")
PORT = int(os.environ.get("OTPAGENT_BENCH_REDIS_PORT", "6379"))
DB = int(os.environ.get("OTPAGENT_BENCH_REDIS_DB", "11"))
CELERY_DB = DB + 1


def url(db: int = DB) -> str:
    return f"redis://{HOST}:{PORT}/{db}"


URL = url()


def key_prefix(tag: str) -> str:
    return f"otpbench-{tag}"


def redis_unavailable() -> str | None:
    try:
        import redis
    except ImportError:
        return "redis (the Python client) is not installed"
    try:
        redis.Redis.from_url(URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"cannot reach Redis at {HOST}:{PORT}: {type(exc).__name__}"
    return None


def persistence() -> str:
    """The server's persistence settings, as CONFIG GET reports them."""
    import redis

    client = redis.Redis.from_url(URL, socket_connect_timeout=2, decode_responses=True)
    try:
        save = client.config_get("save").get("save", "?")
        aof = client.config_get("appendonly").get("appendonly", "?")
    except redis.RedisError:
        return "unknown (CONFIG GET refused)"
    if not save and aof == "no":
        return "no persistence (save \"\", appendonly no): a restart loses every queued job"
    return f"save {save!r}, appendonly {aof}"


def delete_keys(tag: str, db: int = DB, *names: str) -> int:
    """Delete every key holding ``tag``'s prefix, and ``names``, in ``db``; returns how many."""
    import redis

    client = redis.Redis.from_url(url(db), socket_connect_timeout=2)
    deleted = int(client.delete(*names)) if names else 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"*{key_prefix(tag)}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += int(client.delete(*batch))
            batch = []
    if batch:
        deleted += int(client.delete(*batch))
    return deleted
