"""Reads and validates a ``sendgrid-email`` channel section into :class:`SendGridSettings`.

Every problem raises :class:`~otpagent.errors.ConfigError` naming the key path
(``channels.EMAIL.api_config.from``), so a typo is found at start-up, not on the first send.
Sender keys (``from``, ``from_name``, ``reply_to``, ...) may sit in ``api_config`` (as in the
design's example) or at the top of the section; ``api_key`` belongs in ``api_config`` only.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
import email_validator

from otpagent.errors import ConfigError
from otpagent.model import MessageType
from otpagent.protocols import Capability, ChannelSpec
from otpagent.settings import setting, structure_channel
from otpagent.storage.capabilities import require
from otpagent_sendgrid.templates import EmailTemplate, check_template

__all__ = ["DEFAULT_BASE_URL", "SendGridSection", "SendGridSettings", "TypeSettings", "parse_settings"]

DEFAULT_BASE_URL = "https://api.sendgrid.com"
DEFAULT_TIMEOUT_SECONDS = 10.0

_MESSAGE_TYPES = tuple(t.value for t in MessageType)
_SHARED_KEYS = ("from", "from_name", "reply_to", "base_url", "timeout_seconds", "sandbox_mode", "webhook_public_key")


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


@attrs.frozen(kw_only=True)
class SenderKeys:
    """Keys that may be written in ``api_config`` or at the top of the section (not both)."""

    sender: str | None = setting(None, key="from", doc="The sender address (a verified Sender Identity)")
    from_name: str | None = setting(None, min_length=1)
    reply_to: str | None = setting(None)
    base_url: str | None = setting(None, doc=f"Default {DEFAULT_BASE_URL}")
    timeout_seconds: float | None = setting(None, gt=0, le=300,
                                            reason="must be a number of seconds above 0 and at most 300")
    sandbox_mode: bool | None = setting(None, doc="Validate without sending (default false)")
    webhook_public_key: str | None = setting(None, doc="The base64 key from SendGrid's Signed Event Webhook settings")

    def given(self) -> dict[str, Any]:
        """The shared keys this object sets, by their JSON names."""
        values = {"from": self.sender, "from_name": self.from_name, "reply_to": self.reply_to,
                  "base_url": self.base_url, "timeout_seconds": self.timeout_seconds,
                  "sandbox_mode": self.sandbox_mode, "webhook_public_key": self.webhook_public_key}
        return {k: v for k, v in values.items() if v is not None}


@attrs.frozen(kw_only=True)
class SendGridApiConfig(SenderKeys):
    """``api_config`` of a ``sendgrid-email`` channel."""

    api_key: str = setting(secret=True, min_length=1, doc="The SendGrid API key (e.g. \"${SENDGRID_API_KEY}\")")


@attrs.frozen
class TemplateEntry:
    """How one message type is written: local templates (``$code``, ``$body``...) or a dynamic template."""

    subject: str | None = setting(None, min_length=1)
    text: str | None = setting(None, min_length=1)
    html: str | None = setting(None, min_length=1)
    template_id: str | None = setting(None, min_length=1, doc="A SendGrid dynamic template id such as \"d-0123...\"")
    template_data: Mapping[str, Any] = setting(factory=dict)


@attrs.frozen
class Tracking:
    """SendGrid's tracking, off unless asked for: an OTP email must not carry an open pixel or rewritten links."""

    open: bool = setting(False)
    click: bool = setting(False)
    subscription: bool = setting(False)


@attrs.frozen(kw_only=True)
class SendGridSection(SenderKeys):
    """A ``sendgrid-email`` channel's own keys."""

    api_config: SendGridApiConfig = setting(doc="The API key, and the sender keys")
    templates: Mapping[str, TemplateEntry] = setting(factory=dict, doc="By message type: otp, alert, notification, "
                                                                       "reminder")
    template_id: str | Mapping[str, str] | None = setting(None, doc="A dynamic template id, or one per message type")
    categories: tuple[str, ...] | Mapping[str, tuple[str, ...]] | None = setting(
        None, doc="Categories (at most 10), or per message type")
    tracking: Tracking = setting(factory=Tracking)

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        api, top = self.api_config.given(), self.given()
        for key in sorted(api.keys() & top.keys()):
            yield key, f"given twice: here and in api_config.{key}; keep one"
        merged = {**{k: (v, k) for k, v in top.items()}, **{k: (v, f"api_config.{k}") for k, v in api.items()}}
        if "from" not in merged:
            yield "api_config.from", "missing: the sender address (a verified Sender Identity)"
        for key, check in (("from", _email_problem), ("reply_to", _email_problem), ("base_url", _base_url_problem),
                           ("webhook_public_key", _public_key_problem)):
            if key in merged and (problem := check(merged[key][0])) is not None:
                yield merged[key][1], problem
        yield from _per_type_problems("templates", self.templates)
        if isinstance(self.template_id, Mapping):
            yield from _per_type_problems("template_id", self.template_id)
        yield from _category_problems(self.categories)
        for mtype, entry in self.templates.items():
            if mtype in _MESSAGE_TYPES:
                for key, problem in check_template(_template(MessageType(mtype), entry)).items():
                    yield f"templates.{mtype}.{key}", problem

    def merged(self) -> dict[str, Any]:
        return {**self.given(), **self.api_config.given()}


def parse_settings(spec: ChannelSpec) -> SendGridSettings:
    """Validate ``spec`` (the channel's config section) or raise ConfigError naming every key at fault."""
    path = f"channels.{spec.name}"
    if spec.kind not in (None, "email"):
        raise ConfigError(f"{path}.kind", f"the sendgrid-email plugin is an email channel, not {spec.kind}")
    section = structure_channel(SendGridSection, spec)
    merged = section.merged()
    public_key = merged.get("webhook_public_key")
    if public_key is not None and spec.context.storage is not None:
        # The Event Webhook is accepted once a key is set: the store must apply provider events.
        where = "api_config.webhook_public_key" if section.api_config.webhook_public_key else "webhook_public_key"
        require(spec.context.storage, Capability.PROVIDER_EVENTS, config_path=f"{path}.{where}",
                needed_by=f"the SendGrid Event Webhook of channel {spec.name}")
    reply_to = merged.get("reply_to")
    return SendGridSettings(
        name=spec.name, api_key=section.api_config.api_key.strip(), from_email=_normalized(merged["from"]),
        from_name=merged["from_name"].strip() if "from_name" in merged else None,
        reply_to=None if reply_to is None else _normalized(reply_to),
        base_url=str(merged.get("base_url", DEFAULT_BASE_URL)).rstrip("/"),
        timeout_seconds=float(merged.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)),
        sandbox_mode=bool(merged.get("sandbox_mode", False)),
        webhook_public_key=None if public_key is None else "".join(public_key.split()),
        tracking=attrs.asdict(section.tracking), types=_types(section), cost=spec.cost or 0.0,
    )


def _normalized(address: str) -> str:
    return str(email_validator.validate_email(address.strip(), check_deliverability=False).normalized)


def _email_problem(value: str) -> str | None:
    try:
        _normalized(value)
    except email_validator.EmailNotValidError as exc:
        return f"{value!r} is not a valid email address: {exc}"
    return None


def _base_url_problem(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        return f"must be an http(s) URL such as {DEFAULT_BASE_URL}, got {value!r}"
    return None


def _public_key_problem(value: str) -> str | None:
    key = "".join(value.split())
    if not key:
        return "must be the base64 verification key from SendGrid's Signed Event Webhook settings"
    try:
        base64.b64decode(key, validate=True)
        from sendgrid.helpers.eventwebhook import EventWebhook

        EventWebhook().convert_public_key_to_ecdsa(key)
    except (binascii.Error, ValueError, TypeError):
        return ("is not a valid base64 ECDSA public key (copy it from Mail Settings > Signed Event Webhook "
                "Requests)")
    return None


def _per_type_problems(key: str, value: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for mtype in value:
        if mtype not in _MESSAGE_TYPES:
            yield f"{key}.{mtype}", f"unknown message type (expected one of {', '.join(_MESSAGE_TYPES)})"


def _category_problems(value: tuple[str, ...] | Mapping[str, tuple[str, ...]] | None) -> Iterator[tuple[str, str]]:
    if value is None:
        return
    if isinstance(value, Mapping):
        yield from _per_type_problems("categories", value)
        lists = {f"categories.{mtype}": cats for mtype, cats in value.items()}
    else:
        lists = {"categories": value}
    for where, cats in lists.items():
        if not all(c.strip() for c in cats):
            yield where, "must be a list of non-empty strings"
        elif len(set(c.strip() for c in cats)) > 10:
            yield where, f"SendGrid allows at most 10 categories, got {len(set(cats))}"
        elif long := [c for c in cats if len(c.strip()) > 255]:
            yield where, f"category {long[0][:20]!r}... is longer than 255 characters"


def _template(mtype: MessageType, entry: TemplateEntry | None) -> EmailTemplate:
    overrides = {} if entry is None else {k: v for k in ("subject", "text", "html")
                                          if (v := getattr(entry, k)) is not None}
    return EmailTemplate.builtin(mtype).evolve(**overrides)


def _for_type(value: Any, mtype: MessageType) -> Any:
    """A value given once for every message type, or the one for ``mtype`` from a mapping."""
    return value.get(mtype.value) if isinstance(value, Mapping) else value


def _types(section: SendGridSection) -> Mapping[MessageType, TypeSettings]:
    out: dict[MessageType, TypeSettings] = {}
    for mtype in MessageType:
        entry = section.templates.get(mtype.value)
        template_id = entry.template_id if entry is not None and entry.template_id else \
            _for_type(section.template_id, mtype)
        cats = _for_type(section.categories, mtype)
        out[mtype] = TypeSettings(
            template=_template(mtype, entry), template_id=template_id.strip() if template_id else None,
            template_data=dict(entry.template_data) if entry is not None else {},
            categories=tuple(dict.fromkeys(c.strip() for c in cats)) if cats is not None else ("otpagent", mtype.value))
    return out
