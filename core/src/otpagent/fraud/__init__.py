"""The SMS-pumping fraud guard (docs/fraud.md): per destination prefix and country, it tracks
how many OTPs are sent and verified, shared by the fleet, and holds OTPs to a prefix whose
volume rose while its conversion collapsed."""

from __future__ import annotations

from otpagent.fraud.guard import FraudGuard, PrefixStatus
from otpagent.fraud.prefixes import Destination, destination
from otpagent.fraud.settings import FraudGuardSettings, parse_fraud_guard

__all__ = ["Destination", "FraudGuard", "FraudGuardSettings", "PrefixStatus", "destination", "parse_fraud_guard"]
