"""The numbers of the posfleet maintenance command set: class, instructions, result codes, tags.

``docs/serial-protocol.md`` describes each of them byte by byte for terminal vendors.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from posfleet.agent.serial.apdu import Apdu
from posfleet.agent.serial.tlv import Tlv

MAINTENANCE_CLASS = 0xE0
"""APDU class of every maintenance request (ZVT leaves it unassigned)."""

MAX_FAULTS_PER_REPLY = 16
MAX_LOG_CHUNK_BYTES = 4096
"""Largest log chunk a terminal sends in one COLLECT LOGS reply."""
MAX_FIRMWARE_BLOCK_BYTES = 16384
"""Largest firmware block a terminal may ask for; it states its own (smaller) size."""


class Instruction(IntEnum):
    """Instruction byte of a maintenance request."""

    IDENTIFY = 0x01
    READ_HEALTH = 0x02
    READ_FAULTS = 0x03
    READ_COUNTERS = 0x04
    FIRMWARE_STATUS = 0x05
    PRINT_LINE = 0x10
    SYNC_CLOCK = 0x11
    REBOOT = 0x12
    RUN_DIAGNOSTIC = 0x13
    COLLECT_LOGS = 0x14
    BACKUP_CONFIG = 0x15
    RESTORE_CONFIG = 0x16
    FIRMWARE_BEGIN = 0x20
    FIRMWARE_BLOCK = 0x21
    FIRMWARE_VERIFY = 0x22
    FIRMWARE_ACTIVATE = 0x23
    FIRMWARE_CONFIRM = 0x24
    FIRMWARE_ROLLBACK = 0x25


class ResultCode(IntEnum):
    """Result code of a negative completion ``84 <code> 00``."""

    NOT_SUPPORTED = 0x83
    MEMORY_FULL = 0xB1
    PRINTER_NOT_READY = 0xCC
    MALFORMED_REQUEST = 0xF1
    BUSY = 0xF2
    BATCH_UNSETTLED = 0xF3
    IMAGE_MISMATCH = 0xF4
    SECRET_PARAMETER = 0xF5
    WRONG_STATE = 0xF6
    BLOCK_OUT_OF_ORDER = 0xF7
    SYSTEM_ERROR = 0xFF


RESULT_MEANINGS = {
    ResultCode.NOT_SUPPORTED: "instruction not supported",
    ResultCode.MEMORY_FULL: "memory full: the image does not fit the slot",
    ResultCode.PRINTER_NOT_READY: "printer not ready",
    ResultCode.MALFORMED_REQUEST: "malformed request data",
    ResultCode.BUSY: "busy: a transaction is in progress",
    ResultCode.BATCH_UNSETTLED: "the batch is not settled; run end-of-day first",
    ResultCode.IMAGE_MISMATCH: "firmware image incomplete or its SHA-256 does not match",
    ResultCode.SECRET_PARAMETER: "parameter is secret and never leaves the terminal",
    ResultCode.WRONG_STATE: "not possible in the current firmware update state",
    ResultCode.BLOCK_OUT_OF_ORDER: "firmware block is not at the expected offset",
    ResultCode.SYSTEM_ERROR: "terminal system error",
}


class Tag(IntEnum):
    """TLV tags of the command set; one tag space for requests and replies."""

    MODEL = 0x01
    SERIAL = 0x02
    HW_REVISION = 0x03
    FIRMWARE_VERSION = 0x04
    APP_VERSION = 0x05
    CAPABILITY = 0x06
    MERCHANT_ID = 0x07

    BATTERY_PERMILLE = 0x20
    BATTERY_CHARGING = 0x21
    BATTERY_HEALTH_PERMILLE = 0x22
    BATTERY_CYCLES = 0x23
    TEMPERATURE_DECI_C = 0x24
    PRINTER_STATUS = 0x25
    PRINTER_LINES = 0x26
    CHIP_READS = 0x27
    CHIP_ERRORS = 0x28
    MAGSTRIPE_READS = 0x29
    MAGSTRIPE_ERRORS = 0x2A
    CONTACTLESS_READS = 0x2B
    CONTACTLESS_ERRORS = 0x2C
    CARD_INSERTIONS = 0x2D
    NETWORK_TYPE = 0x30
    RSSI_DBM = 0x31
    HOST_REACHABLE = 0x32
    TLS_FAILURES = 0x33
    HOST_LATENCY_MS = 0x34
    STORAGE_PERMILLE = 0x38
    MEMORY_PERMILLE = 0x39
    CLOCK_OFFSET_MS = 0x3A
    DUKPT_REMAINING = 0x40
    KEY_EXPIRY = 0x41
    KEY_MISSING = 0x42
    TAMPER = 0x43
    TX_APPROVED = 0x48
    TX_DECLINED = 0x49
    TX_FAILED = 0x4A
    TX_UNSETTLED = 0x4B
    TX_IN_PROGRESS = 0x4C
    DECLINE_CODE_COUNT = 0x4D
    UPTIME_S = 0x50
    REBOOT_REASON = 0x51

    FAULT = 0x60
    FAULT_SEQ = 0x61
    FAULT_CODE = 0x62
    FAULT_COMPONENT = 0x63
    FAULT_SEVERITY = 0x64
    FAULT_DETAIL = 0x65
    FAULT_ZVT_RESULT = 0x66
    FAULT_ACK_SEQ = 0x67

    PRINT_TEXT = 0x70
    UNIX_TIME_MS = 0x71
    DIAGNOSTIC_TEST = 0x72
    DIAGNOSTIC_PASSED = 0x73
    DIAGNOSTIC_DETAIL = 0x74
    DIAGNOSTIC_LATENCY_MS = 0x75
    PREVIOUS_OFFSET_MS = 0x76
    DIAGNOSTIC_CHECK = 0x77
    DIAGNOSTIC_CHECK_NAME = 0x78

    COUNT_LINES_PRINTED = 0x80
    COUNT_PAPER_ROLLS = 0x81
    COUNT_CARD_INSERTIONS = 0x82
    COUNT_MAGSTRIPE_SWIPES = 0x83
    COUNT_CONTACTLESS_TAPS = 0x84
    COUNT_READ_ERRORS = 0x85
    COUNT_BATTERY_CYCLES = 0x86
    COUNT_REBOOTS = 0x87
    COUNT_TRANSACTIONS = 0x88
    COUNT_SETTLEMENTS = 0x89
    COUNT_FIRMWARE_UPDATES = 0x8A

    LOG_START_S = 0x90
    LOG_END_S = 0x91
    LOG_OFFSET = 0x92
    LOG_TOTAL_BYTES = 0x93
    LOG_CHUNK = 0x94

    CONFIG_KEY_FILTER = 0xA0
    CONFIG_PARAM = 0xA1
    CONFIG_KEY = 0xA2
    CONFIG_VALUE = 0xA3
    CONFIG_WITHHELD = 0xA4
    CONFIG_APPLIED = 0xA5
    CONFIG_REJECTED = 0xA6
    CONFIG_REASON = 0xA7

    FW_ACTIVE_SLOT = 0xB0
    FW_SLOT_INFO = 0xB1
    FW_SLOT = 0xB2
    FW_VERSION = 0xB3
    FW_PENDING_CONFIRM = 0xB4
    FW_LAST_ROLLBACK = 0xB5
    FW_SIZE = 0xB6
    FW_SHA256 = 0xB7
    FW_BLOCK_SIZE = 0xB8
    FW_OFFSET = 0xB9
    FW_DATA = 0xBA


def request(instruction: Instruction, items: Iterable[Tlv] = ()) -> Apdu:
    """A maintenance request APDU."""
    return Apdu(MAINTENANCE_CLASS, instruction, b"".join(item.encode() for item in items))
