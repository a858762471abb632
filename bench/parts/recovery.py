"""Crash recovery: SIGKILL one of two worker processes and time until its in-flight messages are sent again.

Two real ``otpagent run`` processes with the default lease and heartbeat share one store
(SQLite file, then PostgreSQL schema) and a 200 ms console channel; one is killed while it holds
sends in flight. The figure is the time from the kill to the survivor's send of the last message
the dead worker held; its baseline is the configured lease, which bounds it up to one claim and
one send (a message claimed just before the kill holds a whole lease, so the ratio is about 1).
See bench/crashrecovery.py.
"""

from __future__ import annotations

import uuid
from typing import Any

from bench.common import Context, Row, child_env
from bench.crashrecovery import KillRun, kill_one_of_two
from bench.parts.postgres import DSN, drop, unavailable

TARGET = 10.0


def _row(backend: str, run: KillRun) -> Row:
    figure = f"SIGKILL -> dead worker's in-flight messages sent again, {backend}"
    value = run.recovery_seconds
    lost = set(run.ids) - set(run.delivered)
    note = f"{len(run.held)} in flight at the kill, {len(run.duplicates)} sent twice, {len(lost)} lost"
    if value is None:
        return Row(figure, None, "s", f"<= {TARGET:g} s", run.lease_seconds, "configured lease", passed=False,
                   note=f"{note}: not all of them were sent again")
    return Row(figure, value, "s", f"<= {TARGET:g} s", run.lease_seconds, "configured lease",
               passed=value <= TARGET and not lost, note=note)


def run(ctx: Context) -> list[Row]:
    count = ctx.pick(300, 60)
    with ctx.scratch("recovery-sqlite") as tmp:
        storage: dict[str, Any] = {"backend": "sqlite", "path": str(tmp / "shared.db")}
        rows = [_row("SQLite", kill_one_of_two(tmp, storage, count=count,
                                               env=child_env(OTPAGENT_LOAD_PLUGINS="console")))]
    why = unavailable()
    if why is not None:
        rows.append(Row.unavailable("SIGKILL -> dead worker's in-flight messages sent again, PostgreSQL", "s",
                                    f"<= {TARGET:g} s", why))
    else:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        try:
            with ctx.scratch("recovery-postgres") as tmp:
                storage = {"backend": "postgres", "dsn": DSN, "schema": schema, "pool_max_size": 6}
                rows.append(_row("PostgreSQL", kill_one_of_two(
                    tmp, storage, count=count, env=child_env(OTPAGENT_LOAD_PLUGINS="console,postgres"))))
        finally:
            drop(schema)
    for row in rows:
        if row.value is not None:
            ctx.say(f"{row.figure}: {row.value:.1f} s (lease {row.baseline or 0:g} s); {row.note}")
    return rows
