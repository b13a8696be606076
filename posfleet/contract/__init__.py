"""The MQTT contract (v1) between terminals and the centre.

Pure: topic names, payload models and their JSON Schemas; no I/O.
"""

from posfleet.contract.base import AwareDatetime, StrictModel, utcnow
from posfleet.contract.commands import (
    FIRMWARE_CANCEL,
    Command,
    CommandResult,
    CommandStatus,
    FirmwareCancelArgs,
    offer_belongs_to,
)
from posfleet.contract.errors import ContractError, TopicError
from posfleet.contract.events import Component, FaultEvent, Severity
from posfleet.contract.firmware import (
    FirmwareManifest,
    FirmwareOffer,
    MaintenanceWindow,
    SignedManifest,
    UpdateState,
    UpdateStatus,
)
from posfleet.contract.health import (
    Battery,
    CardReader,
    HealthMetrics,
    HealthReport,
    Keys,
    Network,
    NetworkType,
    Printer,
    PrinterStatus,
    ReaderCounters,
    RebootReason,
    Transactions,
)
from posfleet.contract.registry import (
    MAX_PAYLOAD_BYTES,
    MODEL_FOR_CHANNEL,
    Message,
    PayloadError,
    decode,
    encode,
)
from posfleet.contract.state import Inventory, State
from posfleet.contract.topics import (
    PREFIX,
    QOS,
    TERMINAL_ID_PATTERN,
    UPLINK_CHANNELS,
    Channel,
    Topic,
    all_terminals_filter,
    terminal_filter,
    topic,
    uplink_filters,
    validate_terminal_id,
)

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
    "decode",
    "encode",
    "offer_belongs_to",
    "terminal_filter",
    "topic",
    "uplink_filters",
    "utcnow",
    "validate_terminal_id",
]
