"""Turning interleaved peer measurements into table rows: otpagent's figure, the peer's, the ratio.

Rounds alternate the systems (otpagent, peer A, peer B, otpagent, ...) so each meets the same
weather on a shared machine; the best round of each is compared, and every round's value
is kept in the row's note, so a spread is visible rather than hidden behind the best.
A peer that is not installed or whose run crashed gets a row anyway, saying why.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bench.common import Context, Row
from bench.peers import load

__all__ = ["Measured", "describe", "interleave", "versus"]

T = TypeVar("T")


@dataclass
class Measured(Generic[T]):
    """Every round's result for one system, or why there is none."""

    key: str
    rounds: list[T] = field(default_factory=list)
    why_not: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.rounds)


def interleave(ctx: Context, keys: Sequence[str], measure: Callable[[str], T], rounds: int,
               once: Sequence[str] = (), brief: Callable[[T], str] = repr) -> dict[str, Measured[T]]:
    """``measure(key)`` for every key, round after round (keys in ``once`` only in the first);
    ``brief`` says a result in a line of progress."""
    out: dict[str, Measured[T]] = {}
    for key in keys:
        out[key] = Measured(key)
        why = load(key).unavailable()
        if why:
            out[key].why_not = why
    for round_index in range(rounds):
        for key in keys:
            slot = out[key]
            if slot.why_not or (round_index and key in once):
                continue
            try:
                slot.rounds.append(measure(key))
            except Exception as exc:  # a peer that crashes gets a row saying so; the part goes on
                traceback.print_exc()
                slot.why_not = f"crashed: {type(exc).__name__}: {str(exc)[:300]}"
                slot.rounds.clear()
            ctx.say(f"{key}: round {round_index + 1}: " + (slot.why_not or brief(slot.rounds[-1])))
    return out


def describe(key: str) -> str:
    """``PgQueuer 1.6.0 (no-op job; 1 process: ...; guarantee ...)`` for notes and docs."""
    peer = load(key)
    return f"{peer.name} {peer.version()}: {peer.workers}; {peer.guarantee}"


def _fmt(values: Sequence[float]) -> str:
    return ", ".join(f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}" for v in values)


def versus(figure: str, unit: str, ours: Measured[float], theirs: Measured[float], *, target: str = "",
           goal: float | None = None, higher_is_better: bool = True, extra: str = "") -> Row:
    """One comparison row: otpagent's best round against the peer's best round.

    ``goal`` is the ratio otpagent must reach (``>= goal`` when higher is better, ``<=``
    otherwise); without it the row is for information and never passes or fails.
    """
    peer = load(theirs.key)
    pick = max if higher_is_better else min
    value = pick(ours.rounds) if ours.ok else None
    baseline = pick(theirs.rounds) if theirs.ok else None
    notes = []
    if not ours.ok:
        notes.append(f"otpagent: {ours.why_not}")
    if not theirs.ok:
        notes.append(f"{peer.name}: {theirs.why_not}")
    if ours.ok and theirs.ok and (len(ours.rounds) > 1 or len(theirs.rounds) > 1):
        notes.append(f"rounds: otpagent {_fmt(ours.rounds)}; {peer.name} {_fmt(theirs.rounds)}")
    if extra:
        notes.append(extra)
    passed = None
    if goal is not None and value is not None and baseline:
        ratio = value / baseline
        passed = ratio >= goal if higher_is_better else ratio <= goal
    label = f"{peer.name} {peer.version()}"
    return Row(figure, value, unit, target or "— (for information)", baseline, label, passed=passed,
               note="; ".join(notes))
