"""Routing simulation: every strategy against an oracle, over channels with hidden behaviour.

Simulated channels have delivery probabilities, costs and latencies the strategies never see;
they only observe outcomes (an accepted send, then a delivered/undelivered callback), exactly
as through the dispatcher. Midway, the channel the oracle likes best (WhatsApp: cheapest per
delivered message for phone-only recipients) has an outage, then recovers.

For each message the strategy plans a route; channels are tried in order until one delivers
or the message's deadline passes (OTP: 300 s; others: 1 h). Every attempt costs its price.
Reported per strategy: delivered rate, cost per delivered message, p95 time to deliver, and
how many messages during the outage were still routed first to the failing channel.

Run alone: ``python -m bench.routing [--messages N] [--seed S] [--write-docs]``.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from otpagent.model import Envelope, MessageType, Priority, Status
from otpagent.protocols import ChannelInfo, ChannelStats, RouteOutcome, RoutingStrategy
from otpagent.routing.adaptive import AdaptiveSettings, AdaptiveStrategy
from otpagent.routing.priority import PriorityStrategy
from otpagent.routing.simple import CheapestStrategy, MostReliableStrategy
from otpagent.storage.sqlite import SqliteStorage

__all__ = ["SimChannel", "main", "run"]


@attrs.frozen
class SimChannel:
    name: str
    kind: str
    cost: float
    p: float
    latency: float  # seconds from send to the delivery callback


CHANNELS = (
    SimChannel("sms-a", "sms", 0.0079, 0.96, 4.0),
    SimChannel("sms-b", "sms", 0.0095, 0.94, 5.0),
    SimChannel("whatsapp", "whatsapp", 0.0050, 0.88, 6.0),
    SimChannel("voice", "voice", 0.0130, 0.985, 30.0),
    SimChannel("email", "email", 0.0006, 0.55, 60.0),
)
OUTAGE_CHANNEL = "whatsapp"
OUTAGE_P = 0.03
MIX = ((MessageType.OTP, Priority.HIGH, 0.45), (MessageType.ALERT, Priority.CRITICAL, 0.05),
       (MessageType.NOTIFICATION, Priority.MEDIUM, 0.35), (MessageType.REMINDER, Priority.LOW, 0.15))
EMAIL_SHARE = 0.4
SECONDS_PER_MESSAGE = 1.0


@attrs.frozen
class Message:
    index: int
    message_type: MessageType
    priority: Priority
    has_email: bool

    @property
    def deadline(self) -> float:
        return 300.0 if self.message_type is MessageType.OTP else 3600.0


@attrs.define
class Outcome:
    delivered: int = 0
    cost: float = 0.0
    times: list[float] = attrs.Factory(list)
    outage_first_choices: int = 0
    messages: int = 0


class SimClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def hidden_p(channel: SimChannel, index: int, outage: tuple[int, int]) -> float:
    if channel.name == OUTAGE_CHANNEL and outage[0] <= index < outage[1]:
        return OUTAGE_P
    return channel.p


def make_messages(n: int, rng: random.Random) -> list[Message]:
    out = []
    for i in range(n):
        roll, acc = rng.random(), 0.0
        chosen = MIX[-1]
        for kind in MIX:
            acc += kind[2]
            if roll < acc:
                chosen = kind
                break
        out.append(Message(i, chosen[0], chosen[1], rng.random() < EMAIL_SHARE))
    return out


def candidates_for(message: Message, stats: dict[str, ChannelStats]) -> list[SimChannel]:
    out = []
    for c in CHANNELS:
        if c.kind == "email" and not message.has_email:
            continue
        if c.kind == "voice" and message.message_type is MessageType.OTP:
            continue  # voice OTPs are off by default
        out.append(c)
    return out


class Oracle:
    """Knows every hidden probability at every moment; plans like adaptive with the truth."""

    def __init__(self, outage: tuple[int, int]) -> None:
        self.outage = outage
        self.index = 0

    def plan(self, envelope: Envelope, candidates: Sequence[ChannelInfo]) -> list[str]:
        by_name = {c.name: c for c in CHANNELS}

        def p(name: str) -> float:
            return hidden_p(by_name[name], self.index, self.outage)

        if envelope.priority is Priority.CRITICAL:
            return [c.name for c in sorted(candidates, key=lambda c: -p(c.name))]
        return [c.name for c in sorted(candidates, key=lambda c: c.cost / p(c.name))]

    def observe(self, outcome: RouteOutcome) -> None:
        pass


def simulate(strategy: RoutingStrategy, messages: Sequence[Message], outage: tuple[int, int], clock: SimClock,
             rng: random.Random, on_message: Callable[[int], None] | None = None) -> Outcome:
    by_name = {c.name: c for c in CHANNELS}
    stats: dict[str, list[int]] = {c.name: [0, 0] for c in CHANNELS}  # attempts, delivered
    result = Outcome()
    start = clock.now
    for m in messages:
        clock.now = start + m.index * SECONDS_PER_MESSAGE
        if on_message is not None:
            on_message(m.index)
        channel_stats = {
            n: ChannelStats(attempts=a, accepted=a, delivered=d, undelivered=a - d) for n, (a, d) in stats.items()
        }
        infos = [ChannelInfo(name=c.name, kind=c.kind, cost=c.cost, stats=channel_stats[c.name])
                 for c in candidates_for(m, channel_stats)]
        envelope = Envelope(message_id=f"m{m.index}", message_type=m.message_type, priority=m.priority, body="x",
                            phone_number="+447700900123", email="a@example.com" if m.has_email else None,
                            expires_at=clock.now + m.deadline if m.message_type is MessageType.OTP else None)
        route = strategy.plan(envelope, infos)
        result.messages += 1
        if outage[0] <= m.index < outage[1] and route and route[0] == OUTAGE_CHANNEL:
            result.outage_first_choices += 1
        elapsed = 0.0
        for name in route:
            c = by_name[name]
            if elapsed + c.latency > m.deadline:
                break
            result.cost += c.cost
            elapsed += c.latency
            delivered = rng.random() < hidden_p(c, m.index, outage)
            stats[name][0] += 1
            stats[name][1] += int(delivered)
            strategy.observe(RouteOutcome(message_id=envelope.message_id, channel=name, priority=m.priority,
                                          status=Status.SENT, country="GB", latency_ms=c.latency * 1000, cost=c.cost))
            strategy.observe(RouteOutcome(message_id=envelope.message_id, channel=name, priority=m.priority,
                                          status=Status.DELIVERED if delivered else Status.UNDELIVERED,
                                          country="GB", callback=True))
            if delivered:
                result.delivered += 1
                result.times.append(elapsed)
                break
    return result


def p95(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def run(messages: int = 3000, seed: int = 11) -> list[dict[str, Any]]:
    outage = (int(messages * 0.4), int(messages * 0.6))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="otpagent-routing-") as tmp:
        def adaptive(clock: SimClock) -> RoutingStrategy:
            storage = SqliteStorage(Path(tmp) / f"adaptive-{seed}.db", synchronous="normal")
            return AdaptiveStrategy(storage, AdaptiveSettings(sync_interval_seconds=5.0, seed=seed), clock=clock)

        makers: dict[str, Callable[[SimClock], Any]] = {
            "priority": lambda _c: PriorityStrategy(rng=random.Random(seed)),
            "cheapest": lambda _c: CheapestStrategy(),
            "most-reliable": lambda _c: MostReliableStrategy(),
            "adaptive": adaptive,
            "oracle": lambda _c: Oracle(outage),
        }
        for name, make in makers.items():
            clock = SimClock()
            strategy = make(clock)
            on_message = (lambda i, s=strategy: setattr(s, "index", i)) if name == "oracle" else None
            result = simulate(strategy, make_messages(messages, random.Random(seed)), outage, clock,
                              random.Random(seed + 1), on_message)
            rows.append({
                "strategy": name,
                "delivered_rate": result.delivered / result.messages,
                "cost_per_delivered": result.cost / max(1, result.delivered),
                "p95_seconds": p95(result.times),
                "outage_first_choices": result.outage_first_choices,
            })
            storage = getattr(strategy, "storage", None)
            if storage is not None:
                storage.close()
    oracle = next(r for r in rows if r["strategy"] == "oracle")
    for r in rows:
        r["cost_vs_oracle"] = r["cost_per_delivered"] / oracle["cost_per_delivered"]
    return rows


def verdicts(rows: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    by = {r["strategy"]: r for r in rows}
    a, p = by["adaptive"], by["priority"]
    return [
        (f"adaptive cost per delivered within 10% of the oracle ({a['cost_vs_oracle']:.3f}x)",
         a["cost_vs_oracle"] <= 1.10),
        (f"adaptive delivered rate >= priority ({a['delivered_rate']:.4f} vs {p['delivered_rate']:.4f})",
         a["delivered_rate"] >= p["delivered_rate"]),
        (f"adaptive reroutes within 50 messages of the outage ({a['outage_first_choices']})",
         a["outage_first_choices"] <= 50),
    ]


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| strategy | delivered | cost per delivered | vs oracle | p95 time to deliver "
             "| outage messages routed first to the failing channel |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['strategy']} | {100 * r['delivered_rate']:.2f}% | {r['cost_per_delivered']:.5f} | "
                     f"{r['cost_vs_oracle']:.3f}x | {r['p95_seconds']:.0f} s | {r['outage_first_choices']} |")
    return "\n".join(lines)


DOC = Path(__file__).resolve().parent.parent / "docs" / "routing.md"
MARK_START, MARK_END = "<!-- routing-table:start -->", "<!-- routing-table:end -->"


def write_docs(rows: list[dict[str, Any]], messages: int, seed: int) -> None:
    text = DOC.read_text(encoding="utf-8")
    body = (f"{MARK_START}\n{messages} messages, seed {seed}, outage of `{OUTAGE_CHANNEL}` from message "
            f"{int(messages * 0.4)} to {int(messages * 0.6)}.\n\n{table(rows)}\n\n"
            + "\n".join(f"- {'PASS' if ok else 'MISS'}: {what}" for what, ok in verdicts(rows)) + f"\n{MARK_END}")
    start, end = text.index(MARK_START), text.index(MARK_END) + len(MARK_END)
    DOC.write_text(text[:start] + body + text[end:], encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--write-docs", action="store_true", help="update the table in docs/routing.md")
    args = parser.parse_args(argv)
    rows = run(args.messages, args.seed)
    print(table(rows))
    ok = True
    for what, passed in verdicts(rows):
        print(f"{'PASS' if passed else 'MISS'}: {what}")
        ok = ok and passed
    if args.write_docs:
        write_docs(rows, args.messages, args.seed)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
