"""The SMS-pumping fraud guard (docs/fraud.md): per destination prefix and country, it tracks
how many OTPs are sent and verified, shared by the fleet, and holds OTPs to a prefix whose
volume rose while its conversion collapsed."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otpagent.fraud.guard import FraudGuard, PrefixStatus
    from otpagent.fraud.prefixes import Destination, destination
    from otpagent.fraud.settings import FraudGuardSettings, parse_fraud_guard

__all__ = ["Destination", "FraudGuard", "FraudGuardSettings", "PrefixStatus", "destination", "parse_fraud_guard"]

#: Where each name lives: imported on first use, so that reading the config (which needs only
#: the settings) does not import the guard.
_HOMES = {"FraudGuard": "guard", "PrefixStatus": "guard", "Destination": "prefixes", "destination": "prefixes",
          "FraudGuardSettings": "settings", "parse_fraud_guard": "settings"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
