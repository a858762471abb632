"""When a prefix is held, extended or released: pure functions over a :class:`Record`.

- **Hold** when, over the window, at least ``min_volume`` codes are old enough to have been
  entered, the request rate is at least ``volume_factor`` times the baseline's (a prefix
  without history has a baseline of zero: any such volume is a rise), and the share verified
  is at most ``collapse_ratio`` times the baseline conversion (the prefix's own, else its
  country's, else ``expected_conversion``).
- **At expiry**, re-evaluate: requests kept coming while held (at least ``min_volume`` refused
  in the window, at ``volume_factor`` times the baseline rate) extend the hold by
  ``hold_seconds``; otherwise it is released and codes flow again, judged afresh. A prefix held
  again within ``max_hold_seconds`` of its release is held twice as long as the time before
  (up to ``max_hold_seconds``): an attacker who pauses to wait out holds pays more each time.
- **An operator's release** ends the hold, forgets the window's evidence and keeps the guard
  off the prefix for ``release_grace_seconds``.
"""

from __future__ import annotations

import attrs

from otpagent.fraud.record import Hold, Record, Tally
from otpagent.fraud.settings import FraudGuardSettings

__all__ = ["Change", "collapse", "release", "step"]


@attrs.frozen
class Change:
    """What an update did to a hold: ``held``, ``extended`` or ``released``."""

    kind: str
    reason: str
    hold: Hold | None


def step(record: Record, tally: Tally, now: float, settings: FraudGuardSettings,
         fallback_conversion: float) -> Change | None:
    """Add ``tally`` to ``record``, then hold, extend or release it as the rules say."""
    record.add(tally, now, settings)
    if record.hold is not None and now >= record.hold.until:
        return _reconsider(record, now, settings)
    if record.hold is not None or now < record.grace_until:
        return None
    reason = collapse(record, now, settings, fallback_conversion)
    return None if reason is None else _hold(record, now, settings, reason, "held")


def collapse(record: Record, now: float, settings: FraudGuardSettings, fallback_conversion: float) -> str | None:
    """Why the window looks like pumping (volume up, conversion down), or None."""
    matured = record.matured_sent(now, settings)
    if matured < settings.min_volume:
        return None
    totals = record.window_totals()
    rate = (totals.sent + totals.refused) / settings.window_seconds
    usual_rate = record.baseline_rate()
    if rate < settings.volume_factor * usual_rate:
        return None
    usual = record.baseline_conversion(settings.min_volume)
    usual = fallback_conversion if usual is None else usual
    verified = min(totals.verified, matured)
    if verified > settings.collapse_ratio * usual * matured:
        return None
    rise = f"{rate / usual_rate:.1f}x the usual rate" if usual_rate else "no history before"
    return (f"{verified} of {matured} codes verified ({verified / matured:.0%}; usually {usual:.0%}), "
            f"{totals.sent + totals.refused} requests in {settings.window_seconds / 60:g} min ({rise})")


def _hold(record: Record, now: float, settings: FraudGuardSettings, reason: str, kind: str) -> Change:
    """Hold (a hold soon after the last one lasts twice as long), or extend by ``hold_seconds``."""
    seconds = settings.hold_seconds
    if kind == "held":
        again = record.holds > 0 and now - record.last_hold_end <= settings.max_hold_seconds
        record.holds = record.holds + 1 if again else 1
        seconds = min(settings.max_hold_seconds, settings.hold_seconds * 2 ** min(record.holds - 1, 16))
    since = record.hold.since if record.hold is not None else now
    record.set_hold(Hold(since=since, until=now + seconds, reason=reason))
    record.clear_window()
    return Change(kind, reason, record.hold)


def _reconsider(record: Record, now: float, settings: FraudGuardSettings) -> Change:
    refused = record.window_totals().refused
    rate = refused / settings.window_seconds
    if refused >= settings.min_volume and rate >= settings.volume_factor * record.baseline_rate():
        reason = f"{refused} requests refused in the last {settings.window_seconds / 60:g} min while held"
        return _hold(record, now, settings, reason, "extended")
    record.set_hold(None)
    record.last_hold_end = now
    return Change("released", "the hold expired and requests fell back to their usual rate", None)


def release(record: Record, now: float, settings: FraudGuardSettings) -> bool:
    """An operator's release; returns whether the prefix was held."""
    was_held = record.held(now)
    record.set_hold(None)
    record.holds = 0
    record.last_hold_end = now
    record.grace_until = now + settings.release_grace_seconds
    record.clear_window()
    return was_held
