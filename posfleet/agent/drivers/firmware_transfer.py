"""Write a firmware image into a terminal's inactive slot, block by block, and verify it.

The updater calls :func:`write_firmware_image`, then (in the maintenance window)
``firmware_activate`` and, once the terminal reports healthy, ``firmware_confirm``.
"""

from __future__ import annotations

import hashlib
import mmap
from collections.abc import Callable

from posfleet.agent.drivers.base import FirmwareSlot, SupportsRemoteActions

Progress = Callable[[int, int], None]
"""Called with (bytes written, image size) after every block."""


async def write_firmware_image(
    driver: SupportsRemoteActions,
    image: bytes | mmap.mmap,
    version: str,
    *,
    progress: Progress | None = None,
) -> FirmwareSlot:
    """Transfer ``image`` and have the terminal verify its SHA-256; returns the slot written.

    ``image`` may be memory-mapped (the updater maps the downloaded file), so a large
    image is never copied into the agent's memory whole.

    A transfer that was interrupted resumes where the terminal says it stopped. Raises
    ``TerminalRefusedError`` if the terminal rejects the image (too large, hash mismatch).
    """
    digest = hashlib.sha256(image).digest()
    transfer = await driver.firmware_begin(len(image), digest, version)
    offset = transfer.resume_offset
    while offset < len(image):
        block = image[offset : offset + transfer.block_size]
        await driver.firmware_write_block(offset, block)
        offset += len(block)
        if progress is not None:
            progress(offset, len(image))
    await driver.firmware_verify()
    return transfer.slot
