"""Garbage-collector settings for a process that ingests at high rates."""

from __future__ import annotations

import gc

YOUNG_GENERATION_THRESHOLD = 50_000
"""Allocations between young collections (CPython's default is 700)."""


def tune_gc() -> None:
    """Move everything allocated so far out of the collector's way and collect less often.

    Ingest allocates a few dozen short-lived objects per message (the validated payload
    models); with CPython's default thresholds the collector runs every few messages and
    each older-generation pass rescans the whole heap of modules, SQLAlchemy metadata and
    caches, which measured as a third of the pipeline's time. Call once at start-up,
    after imports, in the process's composition root (it changes process-wide settings).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, 20, 100)
