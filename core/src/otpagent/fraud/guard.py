"""The fraud guard: counts codes sent and verified per destination prefix and country, shared by
the fleet, and refuses OTPs to a prefix it holds.

Each process adds its counts in memory and publishes them every ``flush_seconds`` with one
atomic ``update_state`` per prefix and country touched (so issuing a code costs no extra
database write); whoever's update makes a prefix cross the line holds it for everyone and
emits ``fraud_prefix_held``. Holds are read from the shared record (cached for
``flush_seconds``), so an operator's release reaches every process within a second.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable

import attrs

from otpagent.errors import InvalidRequest, OtpHeld
from otpagent.fraud.prefixes import Destination, destination
from otpagent.fraud.record import Hold, Record, Tally
from otpagent.fraud.rules import Change, release, step
from otpagent.fraud.settings import PREFIX_PATTERN, FraudGuardSettings
from otpagent.logs import get_logger
from otpagent.model import Event
from otpagent.protocols import SharedState

__all__ = ["PREFIX_KEY", "FraudGuard", "PrefixStatus"]

log = get_logger("otpagent.fraud")

PREFIX_KEY = "fraud:prefix:"
COUNTRY_KEY = "fraud:country:"
HOLD_KEY = "fraud:hold:"
_CACHE_LIMIT = 4096


@attrs.frozen
class PrefixStatus:
    """One prefix (or country, ``prefix`` None) as ``otpagent fraud status`` shows it."""

    prefix: str | None
    country: str | None
    held_until: float | None
    reason: str
    sent: int
    verified: int
    refused: int
    baseline_conversion: float | None
    baseline_per_hour: float

    @property
    def conversion(self) -> float | None:
        return min(1.0, self.verified / self.sent) if self.sent else None


class FraudGuard:
    """Hold OTPs to destination prefixes whose volume rose while their conversion collapsed."""

    def __init__(self, state: SharedState, settings: FraudGuardSettings, *,
                 on_event: Callable[[Event], None] | None = None) -> None:
        self.state = state
        self.settings = settings
        self.on_event = on_event
        self._lock = threading.Lock()
        self._prefixes: dict[Destination, Tally] = collections.defaultdict(Tally)
        self._countries: dict[str, Tally] = collections.defaultdict(Tally)
        self._last_flush = float("-inf")
        self._holds: dict[str, tuple[float, Hold | None]] = {}

    # -- the issue and verify paths -------------------------------------------------------------
    def check(self, phone_number: str | None, now: float) -> None:
        """Raise :class:`OtpHeld` when the number's prefix is held (the refusal is counted)."""
        where = self._destination(phone_number)
        if where is None:
            return
        self.maybe_flush(now)
        hold = self._hold(where.prefix, now)
        if hold is None:
            return
        if now >= hold.until:  # due: re-evaluate now, so an attack still going leaks nothing
            record = self._update_prefix(where, Tally(), now, self._country_conversion(where.country))
            self._publish_hold(where.prefix, record, now)
            hold = record.hold
            if hold is None or now >= hold.until:
                return
        self._add(where, Tally(refused=1))
        raise OtpHeld(where.prefix, hold.until, now)

    def record_sent(self, phone_number: str | None, now: float) -> None:
        """Count a code issued to the number (after the store accepted it)."""
        self._count(phone_number, Tally(sent=1), now)

    def record_verified(self, phone_number: str | None, now: float) -> None:
        """Count a code verified by the number's owner."""
        self._count(phone_number, Tally(verified=1), now)

    def _count(self, phone_number: str | None, tally: Tally, now: float) -> None:
        where = self._destination(phone_number)
        if where is not None:
            self._add(where, tally)
            self.maybe_flush(now)

    def _destination(self, phone_number: str | None) -> Destination | None:
        if not self.settings.enabled or not phone_number or not phone_number.startswith("+"):
            return None
        where = destination(phone_number, self.settings.prefix_digits)
        if where is None or (self.settings.allow and self.settings.allows(phone_number, where.country)):
            return None
        return where

    def _add(self, where: Destination, tally: Tally) -> None:
        with self._lock:
            _merge(self._prefixes[where], tally)
            _merge(self._countries[where.country], tally)

    # -- publishing -----------------------------------------------------------------------------
    def maybe_flush(self, now: float) -> None:
        if now - self._last_flush >= self.settings.flush_seconds:
            self.flush(now)

    def flush(self, now: float) -> None:
        """Publish this process's counts: one atomic update per country, then per prefix.

        A store that fails keeps the counts for the next flush and is logged, never raised: a
        code already queued must not look failed to its caller because a count could not be
        written (the guard fails open, as Twilio's does).
        """
        with self._lock:
            self._last_flush = now
            prefixes, self._prefixes = self._prefixes, collections.defaultdict(Tally)
            countries, self._countries = self._countries, collections.defaultdict(Tally)
        conversions: dict[str, float] = {}
        try:
            while countries:
                country, tally = next(iter(countries.items()))
                conversions[country] = self._update_country(country, tally, now)
                del countries[country]
            while prefixes:
                where, tally = next(iter(prefixes.items()))
                fallback = conversions.get(where.country)
                self._update_prefix(where, tally, now,
                                    self._country_conversion(where.country) if fallback is None else fallback)
                del prefixes[where]
        except Exception:
            log.exception("fraud_guard_flush_failed", prefixes=len(prefixes), countries=len(countries))
            self._restore(prefixes, countries)

    def _restore(self, prefixes: dict[Destination, Tally], countries: dict[str, Tally]) -> None:
        with self._lock:
            for where, tally in prefixes.items():
                _merge(self._prefixes[where], tally)
            for country, tally in countries.items():
                _merge(self._countries[country], tally)

    def _update_country(self, country: str, tally: Tally, now: float) -> float:
        result: list[Record] = []

        def update(raw: str | None) -> str:
            record = Record.decode(raw)
            record.add(tally, now, self.settings)
            result[:] = [record]
            return record.encode()

        self.state.update_state(COUNTRY_KEY + country, update)
        return self._conversion_of(result[0])

    def _country_conversion(self, country: str) -> float:
        return self._conversion_of(Record.decode(self.state.get_state(COUNTRY_KEY + country)))

    def _conversion_of(self, record: Record) -> float:
        usual = record.baseline_conversion(self.settings.min_volume)
        return self.settings.expected_conversion if usual is None else usual

    def _update_prefix(self, where: Destination, tally: Tally, now: float, fallback: float) -> Record:
        result: list[tuple[Record, Change | None]] = []

        def update(raw: str | None) -> str:
            record = Record.decode(raw)
            record.country = where.country
            result[:] = [(record, step(record, tally, now, self.settings, fallback))]
            return record.encode()

        self.state.update_state(PREFIX_KEY + where.prefix, update)
        record, change = result[0]
        if change is not None or record.hold is not None:
            self._publish_hold(where.prefix, record, now)
        if change is not None:
            self._announce(where, change, now)
        return record

    def _publish_hold(self, prefix: str, record: Record, now: float) -> None:
        """Mirror a prefix's hold under its own small key, which every issue reads (usually
        finding nothing) instead of the prefix's whole record. The record stays the truth; the
        mirror only ever moves to a newer version of its hold."""
        mirror = json.dumps({"v": record.version, "h": attrs.asdict(record.hold) if record.hold else None})

        def update(raw: str | None) -> str:
            return mirror if not raw or json.loads(raw)["v"] <= record.version else raw

        stored = json.loads(self.state.update_state(HOLD_KEY + prefix, update))
        self._cache_hold(prefix, now, Hold(**stored["h"]) if stored["h"] else None)

    def _cache_hold(self, prefix: str, now: float, hold: Hold | None) -> None:
        with self._lock:
            if len(self._holds) >= _CACHE_LIMIT:
                self._holds.clear()
            self._holds[prefix] = (now, hold)

    def _hold(self, prefix: str, now: float) -> Hold | None:
        with self._lock:
            cached = self._holds.get(prefix)
        if cached is not None and now - cached[0] < self.settings.flush_seconds:
            return cached[1]
        raw = self.state.get_state(HOLD_KEY + prefix)
        stored = json.loads(raw) if raw else {"h": None}
        hold = Hold(**stored["h"]) if stored["h"] else None
        self._cache_hold(prefix, now, hold)
        return hold

    def _announce(self, where: Destination, change: Change, now: float) -> None:
        if self.on_event is None:
            return
        data: dict[str, object] = {"prefix": where.prefix, "country": where.country, "reason": change.reason}
        if change.hold is not None:
            data |= {"held_until": change.hold.until, "extended": change.kind == "extended"}
        kind = "fraud_prefix_released" if change.hold is None else "fraud_prefix_held"
        self.on_event(Event(type=kind, message_id=None, at=now, data={**data, "by": "guard"}))

    # -- the operator's view --------------------------------------------------------------------
    def release(self, prefix: str, now: float) -> bool:
        """Release a held prefix (the override): codes flow again at once, the window's evidence
        is forgotten and the guard leaves the prefix alone for ``release_grace_seconds``.
        Returns whether it was held. Emits ``fraud_prefix_released`` (``by: operator``)."""
        prefix = prefix.strip()
        if not PREFIX_PATTERN.match(prefix):
            raise InvalidRequest.single("prefix", f"{prefix!r} is not a prefix like +447700 (+, country code, digits)")
        result: list[tuple[Record, bool]] = []

        def update(raw: str | None) -> str:
            record = Record.decode(raw)
            record.advance(now, self.settings)
            result[:] = [(record, release(record, now, self.settings))]
            return record.encode()

        self.state.update_state(PREFIX_KEY + prefix, update)
        record, was_held = result[0]
        self._publish_hold(prefix, record, now)
        if was_held and self.on_event is not None:
            self.on_event(Event(type="fraud_prefix_released", message_id=None, at=now,
                                data={"prefix": prefix, "reason": "released by an operator", "by": "operator"}))
        return was_held

    def held(self, now: float) -> dict[str, Hold]:
        """The prefixes held now, fleet-wide, from the holds' small keys (cheap: for metrics)."""
        out = {}
        for key, raw in self.state.states_with_prefix(HOLD_KEY).items():
            stored = json.loads(raw) if raw else {"h": None}
            if stored["h"] and now < stored["h"]["until"]:
                out[key.removeprefix(HOLD_KEY)] = Hold(**stored["h"])
        return out

    def status(self, now: float) -> list[PrefixStatus]:
        """Every tracked prefix and country: held ones first, then by volume in the window."""
        self.flush(now)
        rows = [self._status(key.removeprefix(PREFIX_KEY), None, raw, now)
                for key, raw in self.state.states_with_prefix(PREFIX_KEY).items()]
        rows += [self._status(None, key.removeprefix(COUNTRY_KEY), raw, now)
                 for key, raw in self.state.states_with_prefix(COUNTRY_KEY).items()]
        return sorted(rows, key=lambda r: (r.held_until is None, r.prefix is None, -(r.sent + r.refused)))

    def _status(self, prefix: str | None, country: str | None, raw: str, now: float) -> PrefixStatus:
        record = Record.decode(raw)
        record.advance(now, self.settings)
        totals = record.window_totals()
        held = record.hold if record.held(now) else None
        return PrefixStatus(prefix=prefix, country=country or record.country, held_until=held.until if held else None,
                            reason=held.reason if held else "", sent=totals.sent, verified=totals.verified,
                            refused=totals.refused,
                            baseline_conversion=record.baseline_conversion(self.settings.min_volume),
                            baseline_per_hour=record.baseline_rate() * 3600.0)


def _merge(into: Tally, tally: Tally) -> None:
    into.sent += tally.sent
    into.verified += tally.verified
    into.refused += tally.refused
