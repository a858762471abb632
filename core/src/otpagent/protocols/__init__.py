"""What a plugin must provide: the extension-point protocols and their small value types.

The core never checks ``isinstance`` against a concrete class; anything with these methods
works. One submodule per concern; everything is re-exported here, so
``from otpagent.protocols import X`` is the way to import any of it.

- :mod:`~otpagent.protocols.channels`: :class:`Channel`
- :mod:`~otpagent.protocols.routing`: :class:`RoutingStrategy` and what it sees
- :mod:`~otpagent.protocols.sinks`: :class:`EventSink`, the :class:`WebhookOutbox`
- :mod:`~otpagent.protocols.storage`: the required :class:`StorageBackend` core, :class:`Capability`
- :mod:`~otpagent.protocols.capabilities`: the optional storage capabilities
- :mod:`~otpagent.protocols.activity`: what the fleet did over a window (``Housekeeping`` reads)
- :mod:`~otpagent.protocols.otp`, :mod:`~otpagent.protocols.provider_events`: their values
- :mod:`~otpagent.protocols.callbacks`: :class:`CallbackHost`, what a provider callback may use
- :mod:`~otpagent.protocols.context`: :class:`PluginContext`, :class:`ChannelSpec`
"""

from __future__ import annotations

from otpagent.protocols.activity import (
    ACTIVITY_EVENT_TYPES,
    MAX_HISTORY_BUCKETS,
    ActivityBucket,
    AttemptTally,
    total_attempts,
)
from otpagent.protocols.callbacks import CallbackHost
from otpagent.protocols.capabilities import (
    BatchUpdates,
    Housekeeping,
    OtpStore,
    ProviderEvents,
    RateLimits,
    SharedState,
    StreamedEnqueue,
    WebhookOutboxes,
    WorkWakeup,
)
from otpagent.protocols.channels import Channel
from otpagent.protocols.context import ChannelSpec, PluginContext
from otpagent.protocols.otp import (
    LEGACY_OTP_KEY_STATE,
    BatchIssueResult,
    OtpIssue,
    OtpIssueOutcome,
    OtpRecord,
    OtpVerifyOutcome,
)
from otpagent.protocols.provider_events import ProviderEvent, ProviderEventOutcome, ProviderEventResult
from otpagent.protocols.routing import ChannelInfo, ChannelStats, RouteOutcome, RoutingStrategy, observes_country
from otpagent.protocols.sinks import (
    Delivery,
    DeliveryStatus,
    EventSink,
    WebhookOutbox,
    event_payload,
    event_type_name,
    sink_event_types,
    sink_start,
)
from otpagent.protocols.storage import (
    FINISHED_STATUSES,
    IDEMPOTENCY_WINDOW_SECONDS,
    STATS_WINDOW_SECONDS,
    Capability,
    EnqueueResult,
    IdempotencyConflict,
    MessageUpdate,
    MessageWrite,
    NewMessage,
    StorageBackend,
    StorageStats,
)

__all__ = [
    "ACTIVITY_EVENT_TYPES",
    "FINISHED_STATUSES",
    "IDEMPOTENCY_WINDOW_SECONDS",
    "LEGACY_OTP_KEY_STATE",
    "MAX_HISTORY_BUCKETS",
    "STATS_WINDOW_SECONDS",
    "ActivityBucket",
    "AttemptTally",
    "BatchIssueResult",
    "BatchUpdates",
    "CallbackHost",
    "Capability",
    "Channel",
    "ChannelInfo",
    "ChannelSpec",
    "ChannelStats",
    "Delivery",
    "DeliveryStatus",
    "EnqueueResult",
    "EventSink",
    "Housekeeping",
    "IdempotencyConflict",
    "MessageUpdate",
    "MessageWrite",
    "NewMessage",
    "OtpIssue",
    "OtpIssueOutcome",
    "OtpRecord",
    "OtpStore",
    "OtpVerifyOutcome",
    "PluginContext",
    "ProviderEvent",
    "ProviderEventOutcome",
    "ProviderEventResult",
    "ProviderEvents",
    "RateLimits",
    "RouteOutcome",
    "RoutingStrategy",
    "SharedState",
    "StorageBackend",
    "StorageStats",
    "StreamedEnqueue",
    "WebhookOutbox",
    "WebhookOutboxes",
    "WorkWakeup",
    "event_payload",
    "event_type_name",
    "observes_country",
    "sink_event_types",
    "sink_start",
    "total_attempts",
]
