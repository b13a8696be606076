"""Firmware images for the simulated terminal: ones it boots, rejects, boot-loops or crashes on.

:func:`make_image` builds one. An image starts with a small header the simulated terminal
checks after the SHA-256, as a real terminal checks its vendor's own signature::

    POSFLEET-SIM-FW1\\n{"version": "2.5.0", "models": ["PF-M100", "PF-C200"]}\\n<body>

What the simulated terminal does with it (:mod:`posfleet.simulator.firmware_slots`):

- header version differs from the version announced at FIRMWARE BEGIN, the terminal's
  model is not listed, or :data:`REJECT_MARKER` is in the image: FIRMWARE VERIFY is
  refused (``IMAGE_MISMATCH``) and the image is thrown away;
- :data:`BOOT_LOOP_MARKER`: the image never boots, the
  terminal rolls back on its own after three tries (so does any image activated while the
  ``firmware_boot_loop`` fault of a scenario is active);
- :data:`CRASH_MARKER`: the image boots and reports its version, then the payment
  application crashes (a critical ``firmware.app_crash`` fault): the agent's health
  window must catch it and roll back;
- :data:`READER_ERRORS_MARKER` followed by a rate (``make_image(...,
  reader_error_rate=0.3)``): the image installs, boots and is confirmed like a good one,
  but while it runs the card reader gets that share of read attempts wrong (a driver
  regression only the terminals' health figures show). The same can be had for any image
  from a scenario file (``[terminal] firmware_reader_error_rates = { "2.6.0" = 0.3 }``).

An image without the header (any bytes) is accepted as it is, as before.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

IMAGE_MAGIC = b"POSFLEET-SIM-FW1\n"
BOOT_LOOP_MARKER = b"POSFLEET-SIM-BOOT-LOOP"
"""An image that contains these bytes never boots: the terminal rolls back on its own."""
REJECT_MARKER = b"POSFLEET-SIM-VENDOR-REJECT"
"""An image holding these bytes fails the terminal's own vendor check at verify."""
CRASH_MARKER = b"POSFLEET-SIM-CRASH-AFTER-BOOT"
"""An image holding these bytes boots, then its payment application crashes."""
READER_ERRORS_MARKER = b"POSFLEET-SIM-READER-ERRORS="
"""Followed by a rate like ``0.300``: the share of card reads the image gets wrong."""
_READER_ERRORS = re.compile(re.escape(READER_ERRORS_MARKER) + rb"([01]\.\d{3})")
DEFAULT_MODELS = ("PF-M100", "PF-C200")
MAX_HEADER_BYTES = 4096

__all__ = [
    "BOOT_LOOP_MARKER",
    "CRASH_MARKER",
    "DEFAULT_MODELS",
    "IMAGE_MAGIC",
    "READER_ERRORS_MARKER",
    "REJECT_MARKER",
    "ImageHeader",
    "make_image",
    "read_header",
    "reader_error_rate_of",
]


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What an image says about itself."""

    version: str
    models: tuple[str, ...]


def make_image(
    version: str,
    size: int,
    *,
    models: tuple[str, ...] = DEFAULT_MODELS,
    boot_loop: bool = False,
    reject: bool = False,
    crash_after_boot: bool = False,
    reader_error_rate: float | None = None,
) -> bytes:
    """A firmware image of exactly ``size`` bytes for the simulated terminal.

    The body is pseudo-random but the same for the same arguments, so tests can build
    the image twice (server side and expected side) and compare. ``reader_error_rate``
    (0 to 1, kept to three decimals) makes an image whose card reader misreads that share
    of attempts once it runs.
    """
    reader_marker = b""
    if reader_error_rate is not None:
        if not 0.0 <= reader_error_rate <= 1.0:
            raise ValueError(f"reader_error_rate must be between 0 and 1, not {reader_error_rate}")
        reader_marker = READER_ERRORS_MARKER + f"{reader_error_rate:.3f}".encode()
    header = IMAGE_MAGIC + json.dumps({"version": version, "models": list(models)}).encode()
    header += b"\n"
    markers = b"".join(
        marker
        for marker, wanted in (
            (BOOT_LOOP_MARKER, boot_loop),
            (REJECT_MARKER, reject),
            (CRASH_MARKER, crash_after_boot),
            (reader_marker, bool(reader_marker)),
        )
        if wanted
    )
    body_size = size - len(header) - len(markers)
    if body_size < 0:
        raise ValueError(f"an image of {size} bytes cannot hold its header and markers")
    seed = f"{version}|{size}|{','.join(models)}|{boot_loop}{reject}{crash_after_boot}"
    seed += f"|{reader_marker.decode()}" if reader_marker else ""
    body = random.Random(seed).randbytes(body_size)
    # Markers at the end: a transfer cut short has not carried them yet.
    return header + body + markers


def read_header(image: bytes | bytearray) -> ImageHeader | None:
    """The header of a simulator image, or None for an image without one."""
    if not image.startswith(IMAGE_MAGIC):
        return None
    end = image.find(b"\n", len(IMAGE_MAGIC), MAX_HEADER_BYTES)
    if end < 0:
        return None
    try:
        data = json.loads(bytes(image[len(IMAGE_MAGIC) : end]))
        return ImageHeader(str(data["version"]), tuple(str(m) for m in data["models"]))
    except (ValueError, KeyError, TypeError):
        return None


def reader_error_rate_of(image: bytes | bytearray) -> float | None:
    """The card-read error rate an image forces while it runs, or None if it sets none."""
    # Markers sit at the end of an image: look there first, then anywhere.
    found = _READER_ERRORS.search(image, max(0, len(image) - 256)) or _READER_ERRORS.search(image)
    return None if found is None else min(1.0, float(found.group(1)))
