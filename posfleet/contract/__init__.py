"""The MQTT contract (v1) between terminals and the centre.

Pure: topic names, payload models and their JSON Schemas; no I/O.

The topics, the enumerations and the payload limit are imported at once; the pydantic
models (and pydantic with them) only when one is first used, so ``Channel`` or
``Severity`` costs an agent none of pydantic's memory (PEP 562 ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from posfleet.contract.errors import ContractError, TopicError
from posfleet.contract.topics import (
    PREFIX,
    QOS,
    TERMINAL_ID_PATTERN,
    UPLINK_CHANNELS,
    Channel,
    Topic,
    all_terminals_filter,
    channel_filter,
    terminal_filter,
    topic,
    uplink_filters,
    validate_terminal_id,
)
from posfleet.contract.vocabulary import (
    MAX_PAYLOAD_BYTES,
    CommandStatus,
    Component,
    NetworkType,
    PrinterStatus,
    RebootReason,
    Severity,
    UpdateState,
    utcnow,
)

if TYPE_CHECKING:
    from posfleet.contract.base import AwareDatetime, StrictModel
    from posfleet.contract.commands import (
        FIRMWARE_CANCEL,
        Command,
        CommandResult,
        FirmwareCancelArgs,
        offer_belongs_to,
    )
    from posfleet.contract.events import FaultEvent
    from posfleet.contract.firmware import (
        FirmwareManifest,
        FirmwareOffer,
        MaintenanceWindow,
        SignedManifest,
        UpdateStatus,
    )
    from posfleet.contract.health import (
        Battery,
        CardReader,
        HealthMetrics,
        HealthReport,
        Keys,
        Network,
        Printer,
        ReaderCounters,
        Transactions,
    )
    from posfleet.contract.registry import MODEL_FOR_CHANNEL, Message, PayloadError, decode, encode
    from posfleet.contract.state import Inventory, State

_LAZY: dict[str, str] = {
    **dict.fromkeys(["AwareDatetime", "StrictModel"], "base"),
    **dict.fromkeys(
        ["FIRMWARE_CANCEL", "Command", "CommandResult", "FirmwareCancelArgs", "offer_belongs_to"],
        "commands",
    ),
    "FaultEvent": "events",
    **dict.fromkeys(
        [
            "FirmwareManifest",
            "FirmwareOffer",
            "MaintenanceWindow",
            "SignedManifest",
            "UpdateStatus",
        ],
        "firmware",
    ),
    **dict.fromkeys(
        [
            "Battery",
            "CardReader",
            "HealthMetrics",
            "HealthReport",
            "Keys",
            "Network",
            "Printer",
            "ReaderCounters",
            "Transactions",
        ],
        "health",
    ),
    **dict.fromkeys(
        ["MODEL_FOR_CHANNEL", "Message", "PayloadError", "decode", "encode"], "registry"
    ),
    **dict.fromkeys(["Inventory", "State"], "state"),
}
"""The names that need pydantic, and the module of this package that defines each."""


def __getattr__(name: str) -> object:
    """Import the module that defines ``name`` (a payload model) on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "FIRMWARE_CANCEL",
    "MAX_PAYLOAD_BYTES",
    "MODEL_FOR_CHANNEL",
    "PREFIX",
    "QOS",
    "TERMINAL_ID_PATTERN",
    "UPLINK_CHANNELS",
    "AwareDatetime",
    "Battery",
    "CardReader",
    "Channel",
    "Command",
    "CommandResult",
    "CommandStatus",
    "Component",
    "ContractError",
    "FaultEvent",
    "FirmwareCancelArgs",
    "FirmwareManifest",
    "FirmwareOffer",
    "HealthMetrics",
    "HealthReport",
    "Inventory",
    "Keys",
    "MaintenanceWindow",
    "Message",
    "Network",
    "NetworkType",
    "PayloadError",
    "Printer",
    "PrinterStatus",
    "ReaderCounters",
    "RebootReason",
    "Severity",
    "SignedManifest",
    "State",
    "StrictModel",
    "Topic",
    "TopicError",
    "Transactions",
    "UpdateState",
    "UpdateStatus",
    "all_terminals_filter",
    "channel_filter",
    "decode",
    "encode",
    "offer_belongs_to",
    "terminal_filter",
    "topic",
    "uplink_filters",
    "utcnow",
    "validate_terminal_id",
]
