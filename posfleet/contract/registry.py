"""Which payload model each channel carries, and decoding of raw messages."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from posfleet.contract.commands import Command, CommandResult
from posfleet.contract.errors import ContractError
from posfleet.contract.events import FaultEvent
from posfleet.contract.firmware import FirmwareOffer, UpdateStatus
from posfleet.contract.health import HealthReport
from posfleet.contract.state import Inventory, State
from posfleet.contract.topics import Channel, Topic
from posfleet.contract.vocabulary import MAX_PAYLOAD_BYTES

__all__ = ["MAX_PAYLOAD_BYTES", "MODEL_FOR_CHANNEL", "Message", "PayloadError", "decode", "encode"]

MODEL_FOR_CHANNEL: dict[Channel, type[BaseModel]] = {
    Channel.STATE: State,
    Channel.INVENTORY: Inventory,
    Channel.HEALTH: HealthReport,
    Channel.EVENT: FaultEvent,
    Channel.CMD: Command,
    Channel.CMD_RESULT: CommandResult,
    Channel.FW_OFFER: FirmwareOffer,
    Channel.FW_STATUS: UpdateStatus,
}


class PayloadError(ContractError):
    """A message whose topic or payload is not valid under the contract."""

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"{topic}: {reason}")
        self.topic = topic
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded, validated contract message."""

    topic: Topic
    payload: BaseModel


def decode(topic: str, payload: bytes) -> Message:
    """Parse ``topic`` and validate ``payload`` (raw JSON bytes) against its model.

    Raises :class:`PayloadError` with a one-line reason for anything off-contract.
    """
    try:
        parsed = Topic.parse(topic)
    except ContractError as exc:
        raise PayloadError(topic, str(exc)) from exc
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(topic, f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    model = MODEL_FOR_CHANNEL[parsed.channel]
    try:
        return Message(parsed, model.model_validate_json(payload))
    except ValidationError as exc:
        raise PayloadError(topic, _summarise(exc)) from exc


def encode(model: BaseModel) -> bytes:
    """Serialise a payload model to the JSON bytes that travel on the wire."""
    return model.model_dump_json(exclude_none=True).encode()


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)
