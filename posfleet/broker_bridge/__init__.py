"""Central MQTT ingest: subscribe, validate, dead-letter bad input, store.

Public surface: :class:`Ingest` and its :class:`IngestStats`, the connection settings
:class:`BrokerConnection`, and the broker-free batch step (:func:`store_batch`).
"""

from posfleet.broker_bridge.errors import BridgeError, NotSubscribedError
from posfleet.broker_bridge.ingest import Ingest, IngestStats, StoredHook
from posfleet.broker_bridge.ingest_batch import (
    DEFAULT_HANDLERS,
    BatchOutcome,
    ChannelHandler,
    RawMessage,
    store_batch,
)
from posfleet.broker_bridge.mqtt_settings import BrokerConnection

__all__ = [
    "DEFAULT_HANDLERS",
    "BatchOutcome",
    "BridgeError",
    "BrokerConnection",
    "ChannelHandler",
    "Ingest",
    "IngestStats",
    "NotSubscribedError",
    "RawMessage",
    "StoredHook",
    "store_batch",
]
