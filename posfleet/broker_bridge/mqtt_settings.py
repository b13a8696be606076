"""How the central bridge reaches the MQTT broker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from posfleet.broker_bridge.partition import Partition, check_one_split
from posfleet.contract import UPLINK_CHANNELS, Channel, uplink_filters
from posfleet.tls_contexts import TlsFiles


class BrokerConnection(BaseModel):
    """Address, credentials and session options of one central MQTT client.

    Every central instance needs its own ``client_id``: the broker keeps one persistent
    session per id, and two clients with the same id keep disconnecting each other.
    Instances that split the fleet between them share a ``share_group`` (on a broker
    that routes it by client id) or each take a ``partition`` (see
    :mod:`posfleet.broker_bridge.partition`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password: SecretStr | None = None
    client_id: Annotated[str, Field(min_length=1, max_length=128)] = "posfleet-central"
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30
    tls: bool = False
    tls_files: TlsFiles = Field(default_factory=TlsFiles, description="CA and client cert")
    share_group: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    session_expiry_s: Annotated[int, Field(ge=0)] = Field(
        default=24 * 3600,
        description="how long the broker queues QoS 1 messages for us while we are away",
    )
    reconnect_max_s: Annotated[int, Field(ge=1, le=3600)] = 60
    partition: str | None = Field(
        default=None, description="K/N: serve the K-th of N shares of the terminals"
    )

    @field_validator("partition")
    @classmethod
    def _valid_partition(cls, value: str | None) -> str | None:
        return None if value is None else str(Partition.parse(value))

    @model_validator(mode="after")
    def _one_way_to_split(self) -> BrokerConnection:
        check_one_split(self.share_group, self.partition)
        return self

    @property
    def share(self) -> Partition | None:
        """The partition this client serves, if any."""
        return None if self.partition is None else Partition.parse(self.partition)

    @property
    def address(self) -> str:
        """``host:port``, for messages."""
        return f"{self.host}:{self.port}"

    def subscriptions(self, channels: Sequence[Channel] = UPLINK_CHANNELS) -> list[str]:
        """The topic filters this client subscribes to for ``channels`` (all by default).

        With a ``share_group`` the live channels are shared subscriptions, so each
        message goes to one instance of the group. The retained channels (``state``,
        ``inventory``) stay ordinary subscriptions on every instance: a broker never
        sends retained messages to a shared subscription, and storing them is
        idempotent, so each instance applying them costs nothing but a few upserts.
        """
        plain = uplink_filters()
        shared = uplink_filters(self.share_group) if self.share_group is not None else plain
        return [
            own if channel.retained or self.share_group is None else share
            for channel, own, share in zip(UPLINK_CHANNELS, plain, shared, strict=True)
            if channel in channels
        ]
