"""Central MQTT ingest: subscribe, validate, dead-letter bad input, store, fan out.

Public surface: :class:`Ingest` with its :class:`IngestStats`, the connection settings
:class:`BrokerConnection`, the broker-free batch step (:func:`store_batch`), the
InfluxDB telemetry sink (:class:`InfluxSink`) and the periodic :class:`Housekeeping`.
"""

from posfleet.broker_bridge.errors import BridgeError, NotSubscribedError
from posfleet.broker_bridge.gc_tuning import tune_gc
from posfleet.broker_bridge.housekeeping import (
    Housekeeping,
    HousekeepingSchedule,
    HousekeepingStats,
)
from posfleet.broker_bridge.influx_sink import InfluxSink
from posfleet.broker_bridge.ingest import Ingest, StoredHook
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

__all__ = [
    "DEFAULT_HANDLERS",
    "BatchOutcome",
    "BridgeError",
    "BrokerConnection",
    "ChannelHandler",
    "Histogram",
    "Housekeeping",
    "HousekeepingSchedule",
    "HousekeepingStats",
    "InfluxSink",
    "Ingest",
    "IngestStats",
    "NotSubscribedError",
    "RawMessage",
    "SinkStats",
    "StoredHook",
    "TelemetrySink",
    "store_batch",
    "tune_gc",
]
