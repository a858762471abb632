"""The webhook retry schedule: exponential with jitter, retried for at least a day by default."""

from __future__ import annotations

import random

import pytest

from otpagent.backoff import backoff_delay
from otpagent.errors import ConfigError
from otpagent.sinks.webhook import WEBHOOK_JITTER_FLOOR
from otpagent.sinks.webhook_settings import parse_webhook_settings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_delays_double_up_to_the_cap_with_jitter() -> None:
    rng = random.Random(7)

    delays = [backoff_delay(n, 5.0, 7200.0, rng, floor=WEBHOOK_JITTER_FLOOR) for n in range(1, 15)]

    for n, delay in enumerate(delays, start=1):
        full = min(7200.0, 5.0 * 2 ** (n - 1))
        assert full / 2 <= delay <= full


def test_by_default_a_delivery_is_retried_for_a_day_before_it_is_dead() -> None:
    settings = parse_webhook_settings({"url": "https://hooks.example.com/x", "secret": SECRET})
    rng = random.Random(1)
    elapsed, attempts = 0.0, 0

    while elapsed < settings.horizon_seconds:
        attempts += 1
        elapsed += backoff_delay(attempts, settings.base_delay_seconds, settings.max_delay_seconds, rng,
                                 floor=WEBHOOK_JITTER_FLOOR)

    assert settings.horizon_seconds == 86400.0
    assert 15 <= attempts <= 40  # a day of tries, neither hammering nor giving up early


@pytest.mark.parametrize(("section", "path"), [
    ({"events": ["delivered", "teleported"]}, "sinks[].events"),
    ({"retry": {"base_delay_seconds": 10, "max_delay_seconds": 1}}, "sinks[].retry.max_delay_seconds"),
    ({"retry": {"jitter": True}}, "sinks[].retry.jitter"),
    ({"timeout_seconds": 0}, "sinks[].timeout_seconds"),
    ({"url": "https://user:pw@hooks.example.com/x"}, "sinks[].url"),
    ({"colour": "blue"}, "sinks[].colour"),
])
def test_bad_settings_name_the_key(section: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_webhook_settings({"url": "https://hooks.example.com/x", "secret": SECRET, **section}, "sinks[].")

    assert info.value.path == path


def test_event_filters_accept_bare_and_dotted_names() -> None:
    settings = parse_webhook_settings({"url": "https://hooks.example.com/x", "secret": SECRET,
                                       "events": ["message.delivered", "failed", "otp.verified"]})

    assert settings.events == frozenset({"delivered", "failed", "otp_verified"})
    assert SECRET not in repr(settings)
