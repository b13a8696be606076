"""What the fuzzers (fuzz/) found, kept as regression tests; and their properties under hypothesis.

Each bug a harness found has a readable test of what a user would have seen, and the exact
input the fuzzer wrote (``fuzz/regressions/<harness>/``) runs through the harness's own
check again. The hypothesis tests at the end feed every harness's check with random
input, so the normal suite holds the decoders to the same contracts (without atheris).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.frame_properties import check_frame_stream
from fuzz.payload_properties import check_payload
from fuzz.rule_file_properties import check_rule_file
from fuzz.tlv_properties import check_tlv_apdu
from fuzz.zvt_properties import check_zvt
from posfleet.agent.drivers.maintenance_actions import log_request_from_tlv
from posfleet.agent.drivers.maintenance_codes import Tag
from posfleet.agent.drivers.maintenance_protocol import health_from_tlv, health_to_tlv
from posfleet.agent.serial.errors import TlvError
from posfleet.agent.serial.frames import encode_frame
from posfleet.agent.serial.tlv import Tlv, TlvRecord, encode_tlv, flag_tlv, sint_tlv
from posfleet.contract import Channel, HealthMetrics, Keys, PayloadError, decode, topic
from posfleet.diagnostics.errors import RuleFileError
from posfleet.diagnostics.rule_files import parse_rules

REGRESSIONS = Path(__file__).resolve().parents[2] / "fuzz" / "regressions"
CHECKS: dict[str, Callable[[bytes], None]] = {
    "frames": check_frame_stream,
    "tlv_apdu": check_tlv_apdu,
    "zvt": check_zvt,
    "payloads": check_payload,
    "rule_files": check_rule_file,
}
CRASHES = sorted(REGRESSIONS.glob("*/*"))


@pytest.mark.parametrize("crash", CRASHES, ids=[f"{p.parent.name}/{p.name}" for p in CRASHES])
def test_every_input_a_fuzzer_crashed_on_now_passes_its_check(crash: Path) -> None:
    CHECKS[crash.parent.name](crash.read_bytes())


# --- payloads: the centre's decode of MQTT messages ----------------------------------


@pytest.mark.parametrize("ts", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_timestamp_utc_cannot_hold_is_a_dead_letter_reason_not_a_crash(ts: str) -> None:
    # Before: OverflowError out of decode, which the bridge does not dead-letter.
    payload = f'{{"online":true,"agent_version":"1","boot_id":"b","ts":"{ts}"}}'.encode()
    with pytest.raises(PayloadError, match=r"ts: .*out of range once converted to UTC"):
        decode(topic("T1", Channel.STATE), payload)


@pytest.mark.parametrize("zone", ["America", "Etc"])
def test_a_folder_of_the_zone_database_is_an_unknown_time_zone(zone: str) -> None:
    # Before: IsADirectoryError out of decode (the tzdata package opens the folder).
    payload = (
        '{"model":"m","serial":"s","firmware_version":"1","agent_version":"1",'
        f'"timezone":"{zone}","ts":"2026-03-01T12:00:00Z"}}'
    ).encode()
    with pytest.raises(PayloadError, match=f"timezone: .*unknown IANA time zone '{zone}'"):
        decode(topic("T1", Channel.INVENTORY), payload)


# --- rule files: what a site puts in its rule folder ---------------------------------

_RULE = """\
rules:
  - id: site.slow
    title: Slow
    component: printer
    severity: error
    escalation: on_site
    cause: Worn print head.
    remedy: Replace it.
"""


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("    when: 'true'\n    for: " + "2" * 100 + "\n", r"for: .* too long for a duration"),
        ("    when: 'true'\n    window: 99999999999d\n", r"window: .* too long for a duration"),
        ("    when: 'true'\n    for: .nan\n", r"for: nan is not a duration"),
    ],
)
def test_a_duration_no_timedelta_can_hold_is_a_rule_file_error(extra: str, reason: str) -> None:
    # Before: OverflowError (and a NaN's "cannot convert float NaN to integer").
    with pytest.raises(RuleFileError, match=reason):
        parse_rules(_RULE + extra, "site.yaml")


@pytest.mark.parametrize(
    "value", ["2024-02-30", "!!bool maybe", "!!float abc", "!!python/name:os.system x", "1" * 5000]
)
def test_a_value_yaml_cannot_construct_is_a_rule_file_error_on_its_line(value: str) -> None:
    # Before: ValueError / KeyError / ConstructorError out of the loader.
    text = _RULE.replace("    cause:", f"    absence_intervals: {value}\n    cause:")
    with pytest.raises(RuleFileError, match=r"^site\.yaml:7: absence_intervals .* YAML can read"):
        parse_rules(text, "site.yaml")


def test_yaml_nested_too_deeply_is_a_rule_file_error() -> None:
    # Before: RecursionError out of PyYAML's composer.
    with pytest.raises(RuleFileError, match="nested too deeply"):
        parse_rules("rules: " + "[" * 600, "site.yaml")


# --- the maintenance command set's TLV decoders ---------------------------------------


def test_a_log_request_for_a_time_no_datetime_holds_is_a_tlv_error() -> None:
    # Before: ValueError (year out of range) out of the simulator's request decoder.
    record = TlvRecord([sint_tlv(Tag.LOG_START_S, 0), sint_tlv(Tag.LOG_END_S, 2**62)])
    with pytest.raises(TlvError, match="COLLECT LOGS time 0 or 4611686018427387904 is out of"):
        log_request_from_tlv(record)


def test_a_decline_count_past_64_bits_drops_the_transactions_section_only() -> None:
    # Before: accepted as a 72-bit count that the agent then could not re-encode or store.
    record = TlvRecord(
        [flag_tlv(Tag.TAMPER, True), Tlv(Tag.DECLINE_CODE_COUNT, b"05" + b"\xff" * 9)]
    )
    metrics, rejected = health_from_tlv(record)
    assert metrics.tamper is True
    assert metrics.transactions is None
    assert rejected == ["transactions: decline code count of 9 bytes (1 to 8 allowed)"]


def test_a_key_expiry_before_the_year_1000_survives_the_round_trip() -> None:
    # Before: strftime("%Y") wrote 0272-10-31 as "2721031", which the decoder refuses.
    metrics = HealthMetrics(keys=Keys(key_expiry=date(272, 10, 31)))
    decoded, rejected = health_from_tlv(TlvRecord(health_to_tlv(metrics)))
    assert rejected == []
    assert decoded.keys == metrics.keys


# --- the harnesses' properties under hypothesis (the normal suite's share of fuzzing) ---

_SMOKE = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_WIRE_BYTES = st.sampled_from([b"\x10", b"\x10\x02", b"\x10\x03", b"\x10\x10", b"\x06", b"\x15"])


@_SMOKE
@given(
    st.binary(min_size=2, max_size=2),
    st.lists(
        st.one_of(st.binary(max_size=24), st.binary(max_size=24).map(encode_frame), _WIRE_BYTES)
    ),
)
def test_frame_decoder_keeps_its_promises(header: bytes, parts: list[bytes]) -> None:
    check_frame_stream(header + b"".join(parts))


@_SMOKE
@given(
    st.integers(0, 255),
    st.one_of(
        st.binary(max_size=64),
        st.lists(st.tuples(st.integers(1, 254), st.binary(max_size=12))).map(
            lambda items: encode_tlv(Tlv(tag, value) for tag, value in items)
        ),
    ),
)
def test_apdu_and_tlv_decoders_keep_their_promises(choice: int, raw: bytes) -> None:
    check_tlv_apdu(bytes((choice,)) + raw)


_ZVT_MESSAGE = st.tuples(
    st.sampled_from([0x80, 0x84, 0x04, 0x06]),
    st.sampled_from([0x00, 0x0F, 0xFF, 0x1E, 0xD1, 0x83]),
    st.binary(max_size=16),
).map(lambda m: bytes((m[0], m[1], len(m[2]))) + m[2])


@_SMOKE
@given(st.integers(0, 255), st.lists(_ZVT_MESSAGE, max_size=6))
def test_zvt_parser_and_driver_keep_their_promises(choice: int, messages: list[bytes]) -> None:
    check_zvt(bytes((choice,)) + b"".join(messages))


@_SMOKE
@given(st.integers(0, 7), st.integers(0, 3), st.binary(max_size=64))
def test_payload_decode_keeps_its_promises(channel: int, mode: int, rest: bytes) -> None:
    check_payload(bytes((channel, mode)) + rest)


_RULE_KEYS = st.sampled_from(["for", "window", "absence_intervals", "when", "severity", "kb"])


@_SMOKE
@given(_RULE_KEYS, st.text(max_size=20))
def test_rule_file_loader_keeps_its_promises(key: str, value: str) -> None:
    check_rule_file((_RULE + f"    {key}: {value}\n").encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(
    ("channel", "payload", "where"),
    [
        (Channel.HEALTH, b'"metrics":{"clock_offset_s":NaN}', "metrics.clock_offset_s"),
        (
            Channel.HEALTH,
            b'"metrics":{"network":{"type":"wifi","host_reachable":true,"latency_ms":1e400}}',
            "metrics.network.latency_ms",
        ),
        (Channel.CMD_RESULT, b'"status":"ok","output":{"x":[Infinity]}', "output"),
    ],
)
def test_nan_and_infinity_are_refused_not_turned_into_null(
    channel: Channel, payload: bytes, where: str
) -> None:
    # Before: accepted, and encode() wrote them back as null: another value than was sent.
    head = b'{"seq":1,"interval_s":60,' if channel is Channel.HEALTH else b'{"id":"c1",'
    raw = head + payload + b',"ts":"2026-03-01T12:00:00Z"}'
    with pytest.raises(PayloadError, match=f"{where}: .*(finite number|not JSON)"):
        decode(topic("T1", channel), raw)
