"""Reads and validates a ``sendgrid-email`` channel section into :class:`SendGridSettings`.

Every problem raises :class:`~otpagent.errors.ConfigError` naming the key path
(``channels.EMAIL.api_config.from``), so a typo is found at start-up, not on the first send.
Sender keys (``from``, ``from_name``, ``reply_to``, ...) may sit in ``api_config`` (as in the
design's example) or at the top of the section; ``api_key`` belongs in ``api_config`` only.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
import email_validator

from otpagent.config import COMMON_CHANNEL_KEYS
from otpagent.errors import ConfigError
from otpagent.model import MessageType
from otpagent.protocols import Capability, ChannelSpec
from otpagent.storage.capabilities import require
from otpagent_sendgrid.templates import EmailTemplate, check_template

__all__ = ["DEFAULT_BASE_URL", "SendGridSettings", "TypeSettings", "parse_settings"]

DEFAULT_BASE_URL = "https://api.sendgrid.com"
DEFAULT_TIMEOUT_SECONDS = 10.0

#: Keys the core reads from every channel section.
_COMMON_KEYS = COMMON_CHANNEL_KEYS
#: Keys that may be written in ``api_config`` or at the top of the section.
_SHARED_KEYS = {"from", "from_name", "reply_to", "base_url", "timeout_seconds", "sandbox_mode", "webhook_public_key"}
_SECTION_KEYS = _COMMON_KEYS | _SHARED_KEYS | {"templates", "template_id", "categories", "tracking"}
_API_KEYS = _SHARED_KEYS | {"api_key"}
_TEMPLATE_KEYS = {"subject", "text", "html", "template_id", "template_data"}
_TRACKING_KEYS = {"open", "click", "subscription"}


@attrs.frozen(kw_only=True)
class TypeSettings:
    """How one message type is written: local templates, or a SendGrid dynamic template."""

    template: EmailTemplate
    template_id: str | None = None
    template_data: Mapping[str, Any] = attrs.field(factory=dict)
    categories: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class SendGridSettings:
    """A validated ``sendgrid-email`` channel section."""

    name: str
    api_key: str = attrs.field(repr=False)
    from_email: str
    from_name: str | None
    reply_to: str | None
    base_url: str
    timeout_seconds: float
    sandbox_mode: bool
    webhook_public_key: str | None = attrs.field(repr=False)
    tracking: Mapping[str, bool]
    types: Mapping[MessageType, TypeSettings]
    cost: float


def parse_settings(spec: ChannelSpec) -> SendGridSettings:
    """Validate ``spec`` (the channel's config section) or raise ConfigError naming the key."""
    path = f"channels.{spec.name}"
    section = spec.settings
    for key in section:
        if key not in _SECTION_KEYS:
            raise ConfigError(f"{path}.{key}", f"unknown key for a sendgrid-email channel (expected one of "
                                               f"{', '.join(sorted(_SECTION_KEYS))})")
    api = spec.api_config
    for key in api:
        if key not in _API_KEYS:
            expected = ", ".join(sorted(_API_KEYS))
            raise ConfigError(f"{path}.api_config.{key}", f"unknown key (expected one of {expected})")
    merged: dict[str, tuple[Any, str]] = {}
    for key in _SHARED_KEYS:
        if key in api and key in section:
            raise ConfigError(f"{path}.{key}", f"given twice: here and in api_config.{key}; keep one")
        if key in api:
            merged[key] = (api[key], f"{path}.api_config.{key}")
        elif key in section:
            merged[key] = (section[key], f"{path}.{key}")

    def get(key: str) -> tuple[Any, str]:
        return merged.get(key, (None, f"{path}.api_config.{key}"))

    api_key = api.get("api_key")
    if not isinstance(api_key, str) or not api_key.strip():
        raise ConfigError(f"{path}.api_config.api_key", "missing: the SendGrid API key (e.g. \"${SENDGRID_API_KEY}\")")
    from_value, from_path = get("from")
    if from_value is None:
        raise ConfigError(from_path, "missing: the sender address (a verified Sender Identity)")
    from_email = _email(from_value, from_path)
    from_name = _opt_text(*get("from_name"))
    reply_raw, reply_path = get("reply_to")
    reply_to = None if reply_raw is None else _email(reply_raw, reply_path)
    base_url = _base_url(*get("base_url"))
    timeout = _timeout(*get("timeout_seconds"))
    sandbox_mode = _bool(*get("sandbox_mode"), default=False)
    public_key = _public_key(*get("webhook_public_key"))
    if public_key is not None and spec.context.storage is not None:
        # The Event Webhook is accepted once a key is set: the store must apply provider events.
        require(spec.context.storage, Capability.PROVIDER_EVENTS, config_path=get("webhook_public_key")[1],
                needed_by=f"the SendGrid Event Webhook of channel {spec.name}")
    tracking = _tracking(section.get("tracking"), f"{path}.tracking")
    types = _types(section, path)
    return SendGridSettings(
        name=spec.name, api_key=api_key.strip(), from_email=from_email, from_name=from_name, reply_to=reply_to,
        base_url=base_url, timeout_seconds=timeout, sandbox_mode=sandbox_mode, webhook_public_key=public_key,
        tracking=tracking, types=types, cost=spec.cost or 0.0,
    )


def _email(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, "must be an email address")
    try:
        return str(email_validator.validate_email(value.strip(), check_deliverability=False).normalized)
    except email_validator.EmailNotValidError as exc:
        raise ConfigError(path, f"{value!r} is not a valid email address: {exc}") from None


def _opt_text(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, "must be a non-empty string")
    return value.strip()


def _bool(value: Any, path: str, *, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(path, "must be true or false")
    return value


def _base_url(value: Any, path: str) -> str:
    if value is None:
        return DEFAULT_BASE_URL
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise ConfigError(path, f"must be an http(s) URL such as {DEFAULT_BASE_URL}, got {value!r}")
    return str(value).rstrip("/")


def _timeout(value: Any, path: str) -> float:
    if value is None:
        return DEFAULT_TIMEOUT_SECONDS
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 300:
        raise ConfigError(path, f"must be a number of seconds above 0 and at most 300, got {value!r}")
    return float(value)


def _public_key(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, "must be the base64 verification key from SendGrid's Signed Event Webhook settings")
    key = "".join(value.split())
    try:
        base64.b64decode(key, validate=True)
        from sendgrid.helpers.eventwebhook import EventWebhook

        EventWebhook().convert_public_key_to_ecdsa(key)
    except (binascii.Error, ValueError, TypeError):
        raise ConfigError(path, "is not a valid base64 ECDSA public key (copy it from Mail Settings > "
                                "Signed Event Webhook Requests)") from None
    return key


def _tracking(value: Any, path: str) -> Mapping[str, bool]:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(path, "must be a JSON object such as {\"open\": false, \"click\": false}")
    for key in value:
        if key not in _TRACKING_KEYS:
            raise ConfigError(f"{path}.{key}", f"unknown key (expected {', '.join(sorted(_TRACKING_KEYS))})")
    # Off unless asked for: an OTP email must not carry an open pixel or rewritten links.
    return {key: _bool(value.get(key), f"{path}.{key}", default=False) for key in sorted(_TRACKING_KEYS)}


def _categories(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(c, str) and c.strip() for c in value):
        raise ConfigError(path, "must be a list of non-empty strings")
    out = tuple(dict.fromkeys(c.strip() for c in value))
    if len(out) > 10:
        raise ConfigError(path, f"SendGrid allows at most 10 categories, got {len(out)}")
    for c in out:
        if len(c) > 255:
            raise ConfigError(path, f"category {c[:20]!r}... is longer than 255 characters")
    return out


def _per_type(value: Any, path: str) -> dict[MessageType, Any]:
    """A value given once for every message type, or a mapping from message type to value."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        return dict.fromkeys(MessageType, value)
    out: dict[MessageType, Any] = {}
    for key, item in value.items():
        try:
            out[MessageType(key)] = item
        except ValueError:
            kinds = ", ".join(t.value for t in MessageType)
            raise ConfigError(f"{path}.{key}", f"unknown message type (expected one of {kinds})") from None
    return out


def _types(section: Mapping[str, Any], path: str) -> Mapping[MessageType, TypeSettings]:
    templates = section.get("templates", {})
    if not isinstance(templates, Mapping):
        raise ConfigError(f"{path}.templates", "must map message types to {subject, text, html, template_id}")
    per_type_templates = _per_type(templates, f"{path}.templates")
    ids_raw = section.get("template_id")
    if ids_raw is not None and not isinstance(ids_raw, str | Mapping):
        raise ConfigError(f"{path}.template_id", "must be a dynamic template id (d-...) or map message types to ids")
    ids = _per_type(ids_raw, f"{path}.template_id")
    cats_raw = section.get("categories")
    cats = _per_type(cats_raw, f"{path}.categories")
    out: dict[MessageType, TypeSettings] = {}
    for mtype in MessageType:
        tpath = f"{path}.templates.{mtype.value}"
        entry = per_type_templates.get(mtype, {})
        if not isinstance(entry, Mapping):
            raise ConfigError(tpath, "must be a JSON object with subject, text, html, template_id, template_data")
        for key in entry:
            if key not in _TEMPLATE_KEYS:
                raise ConfigError(f"{tpath}.{key}", f"unknown key (expected {', '.join(sorted(_TEMPLATE_KEYS))})")
        overrides = {}
        for key in ("subject", "text", "html"):
            if key in entry:
                if not isinstance(entry[key], str) or not entry[key].strip():
                    raise ConfigError(f"{tpath}.{key}", "must be a non-empty string")
                overrides[key] = entry[key]
        template = EmailTemplate.builtin(mtype).evolve(**overrides)
        for key, problem in check_template(template).items():
            raise ConfigError(f"{tpath}.{key}", problem)
        template_id = entry.get("template_id", ids.get(mtype))
        id_path = f"{tpath}.template_id" if "template_id" in entry else f"{path}.template_id"
        if template_id is not None and (not isinstance(template_id, str) or not template_id.strip()):
            raise ConfigError(id_path, "must be a SendGrid dynamic template id such as \"d-0123...\"")
        data = entry.get("template_data", {})
        if not isinstance(data, Mapping):
            raise ConfigError(f"{tpath}.template_data", "must be a JSON object")
        if mtype in cats:
            categories = _categories(cats[mtype], f"{path}.categories" if not isinstance(cats_raw, Mapping)
                                     else f"{path}.categories.{mtype.value}")
        else:
            categories = ("otpagent", mtype.value)
        out[mtype] = TypeSettings(template=template, template_id=template_id.strip() if template_id else None,
                                  template_data=dict(data), categories=categories)
    return out
