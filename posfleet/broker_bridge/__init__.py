"""Central MQTT ingest: subscribe, validate, dead-letter bad input, store, fan out.

Public surface: :class:`Ingest` with its :class:`IngestStats`, the connection settings
:class:`BrokerConnection`, the broker-free batch step (:func:`store_batch`), the
InfluxDB telemetry sink (:class:`InfluxSink`), the periodic :class:`Housekeeping`, and
egress: the one downlink :class:`MqttPublisher` (with its :class:`BrokerLogin`), the
:class:`Publisher` protocol and the in-memory :class:`MemoryPublisher`.

Names are imported on first use, so that a process needing only one part (the store
writer process imports no MQTT, HTTP or InfluxDB client) starts quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from posfleet.broker_bridge.downlink import (
        BrokerLogin,
        MemoryPublisher,
        MqttPublisher,
        Publisher,
    )
    from posfleet.broker_bridge.errors import BridgeError, NotSubscribedError
    from posfleet.broker_bridge.housekeeping import (
        Housekeeping,
        HousekeepingSchedule,
        HousekeepingStats,
    )
    from posfleet.broker_bridge.influx_sink import InfluxSink
    from posfleet.broker_bridge.ingest import Ingest, StoredHook, WriterKind
    from posfleet.broker_bridge.ingest_batch import (
        DEFAULT_HANDLERS,
        BatchOutcome,
        ChannelHandler,
        RawMessage,
        store_batch,
    )
    from posfleet.broker_bridge.ingest_stats import Histogram, IngestStats
    from posfleet.broker_bridge.mqtt_settings import BrokerConnection
    from posfleet.broker_bridge.telemetry_sink import SinkStats, TelemetrySink
    from posfleet.gc_tuning import tune_gc

_HOMES: dict[str, str] = {
    "BatchOutcome": "posfleet.broker_bridge.ingest_batch",
    "BridgeError": "posfleet.broker_bridge.errors",
    "BrokerConnection": "posfleet.broker_bridge.mqtt_settings",
    "BrokerLogin": "posfleet.broker_bridge.downlink",
    "MemoryPublisher": "posfleet.broker_bridge.downlink",
    "MqttPublisher": "posfleet.broker_bridge.downlink",
    "Publisher": "posfleet.broker_bridge.downlink",
    "ChannelHandler": "posfleet.broker_bridge.ingest_batch",
    "DEFAULT_HANDLERS": "posfleet.broker_bridge.ingest_batch",
    "Histogram": "posfleet.broker_bridge.ingest_stats",
    "Housekeeping": "posfleet.broker_bridge.housekeeping",
    "HousekeepingSchedule": "posfleet.broker_bridge.housekeeping",
    "HousekeepingStats": "posfleet.broker_bridge.housekeeping",
    "InfluxSink": "posfleet.broker_bridge.influx_sink",
    "Ingest": "posfleet.broker_bridge.ingest",
    "IngestStats": "posfleet.broker_bridge.ingest_stats",
    "NotSubscribedError": "posfleet.broker_bridge.errors",
    "RawMessage": "posfleet.broker_bridge.ingest_batch",
    "SinkStats": "posfleet.broker_bridge.telemetry_sink",
    "StoredHook": "posfleet.broker_bridge.ingest",
    "TelemetrySink": "posfleet.broker_bridge.telemetry_sink",
    "WriterKind": "posfleet.broker_bridge.ingest",
    "store_batch": "posfleet.broker_bridge.ingest_batch",
    "tune_gc": "posfleet.gc_tuning",
}

__all__ = [
    "DEFAULT_HANDLERS",
    "BatchOutcome",
    "BridgeError",
    "BrokerConnection",
    "BrokerLogin",
    "ChannelHandler",
    "Histogram",
    "Housekeeping",
    "HousekeepingSchedule",
    "HousekeepingStats",
    "InfluxSink",
    "Ingest",
    "IngestStats",
    "MemoryPublisher",
    "MqttPublisher",
    "NotSubscribedError",
    "Publisher",
    "RawMessage",
    "SinkStats",
    "StoredHook",
    "TelemetrySink",
    "WriterKind",
    "store_batch",
    "tune_gc",
]


def __getattr__(name: str) -> Any:
    """Import ``name`` from its module the first time it is asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
