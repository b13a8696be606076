"""Broker credentials: Mosquitto-compatible hashes, the generated ACL, the store's files."""

from __future__ import annotations

import base64
import re
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from posfleet.central.broker_auth import (
    BrokerAuthStore,
    hash_password,
    render_acl,
    verify_password,
)
from posfleet.central.errors import BrokerAuthError
from posfleet.contract import UPLINK_CHANNELS, Channel, TopicError
from tests.harness import require_binary

PBKDF2_LINE = re.compile(r"^\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$")


def mosquitto_passwd_hash(tmp_path: Path, password: str, *algorithm: str) -> str:
    """The hash Mosquitto's own tool writes for ``password``."""
    tool = require_binary("mosquitto_passwd", "mosquitto")
    passwd = tmp_path / "reference-passwd"
    subprocess.run(
        [tool, *algorithm, "-c", "-b", str(passwd), "someone", password],
        check=True,
        capture_output=True,
    )
    return passwd.read_text().strip().partition(":")[2]


def test_hash_has_mosquittos_pbkdf2_layout() -> None:
    assert PBKDF2_LINE.match(hash_password("s3cret"))


def test_same_password_gets_a_different_salt_each_time() -> None:
    assert hash_password("s3cret") != hash_password("s3cret")


def test_mosquitto_passwd_hash_verifies_with_our_verifier(tmp_path: Path) -> None:
    reference = mosquitto_passwd_hash(tmp_path, "correct horse")
    assert PBKDF2_LINE.match(reference)
    assert verify_password("correct horse", reference)
    assert not verify_password("correct hors", reference)


def test_our_hash_is_byte_identical_to_mosquitto_passwd_for_the_same_salt(
    tmp_path: Path,
) -> None:
    reference = mosquitto_passwd_hash(tmp_path, "battery staple")
    _, _, iterations, salt_b64, _ = reference.split("$")
    salt = base64.b64decode(salt_b64)
    assert hash_password("battery staple", iterations=int(iterations), salt=salt) == reference


def test_legacy_sha512_hashes_still_verify(tmp_path: Path) -> None:
    reference = mosquitto_passwd_hash(tmp_path, "old-style", "-H", "sha512")
    assert reference.startswith("$6$")
    assert verify_password("old-style", reference)
    assert not verify_password("new-style", reference)


@pytest.mark.parametrize("bad", ["", "plain", "$7$abc$xx$yy", "$7$101$!!$??", "$5$a$b"])
def test_malformed_hash_is_a_clear_error(bad: str) -> None:
    with pytest.raises(BrokerAuthError, match="hash"):
        verify_password("x", bad)


def test_acl_confines_terminals_to_their_own_subtree() -> None:
    acl = render_acl(["central"]).splitlines()
    for channel in UPLINK_CHANNELS:
        assert f"pattern write pos/v1/%u/{channel.value}" in acl
    assert "pattern read pos/v1/%u/cmd" in acl
    assert "pattern read pos/v1/%u/fw/offer" in acl
    # Only the centre writes commands and offers; terminals read nothing else.
    assert not any(line.startswith("pattern") and "readwrite" in line for line in acl)
    assert f"pattern write pos/v1/%u/{Channel.CMD.value}" not in acl
    assert acl[acl.index("user central") + 1] == "topic readwrite pos/v1/#"


def test_new_terminal_gets_a_password_only_its_hash_is_stored(tmp_path: Path) -> None:
    store = BrokerAuthStore(tmp_path / "auth")
    creds = store.add_terminal("T-0001")
    assert creds.username == "T-0001"
    assert len(creds.password) >= 32
    passwd = store.passwd_path.read_text()
    assert creds.password not in passwd
    assert passwd.startswith("T-0001:$7$")
    assert store.check_password("T-0001", creds.password)
    assert creds.password not in repr(creds)


def test_files_are_private_to_the_owner(tmp_path: Path) -> None:
    store = BrokerAuthStore(tmp_path / "auth")
    store.add_terminal("T-0001")
    for path in (store.passwd_path, store.acl_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(store.directory.glob("*.tmp"))


def test_reprovisioning_rotates_the_password(tmp_path: Path) -> None:
    store = BrokerAuthStore(tmp_path / "auth")
    old = store.add_terminal("T-0001")
    new = store.add_terminal("T-0001")
    assert old.password != new.password
    assert not store.check_password("T-0001", old.password)
    assert store.check_password("T-0001", new.password)
    assert store.terminals() == ["T-0001"]


def test_removed_terminal_can_no_longer_authenticate(tmp_path: Path) -> None:
    store = BrokerAuthStore(tmp_path / "auth")
    creds = store.add_terminal("T-0001")
    keep = store.add_terminal("T-0002")
    assert store.remove_terminal("T-0001")
    assert not store.remove_terminal("T-0001")
    assert not store.check_password("T-0001", creds.password)
    assert store.check_password("T-0002", keep.password)


@pytest.mark.parametrize("bad_id", ["", "a/b", "+", "#", "%u", "x" * 65, "a b"])
def test_invalid_terminal_id_is_rejected_and_nothing_is_written(
    tmp_path: Path, bad_id: str
) -> None:
    store = BrokerAuthStore(tmp_path / "auth")
    store.add_terminal("T-0001")
    before = store.passwd_path.read_text()
    with pytest.raises(TopicError):
        store.add_terminals(["T-0002", bad_id])
    assert store.passwd_path.read_text() == before


def test_service_users_and_terminals_cannot_share_a_name(tmp_path: Path) -> None:
    store = BrokerAuthStore(tmp_path / "auth")
    store.add_service_user("central")
    store.add_terminal("T-0001")
    with pytest.raises(BrokerAuthError, match="service user"):
        store.add_terminal("central")
    with pytest.raises(BrokerAuthError, match="is a terminal"):
        store.add_service_user("T-0001")
    assert store.service_users() == ["central"]
    assert store.terminals() == ["T-0001"]


def test_service_user_survives_reopening_and_is_in_the_acl(tmp_path: Path) -> None:
    creds = BrokerAuthStore(tmp_path / "auth").add_service_user("central")
    reopened = BrokerAuthStore(tmp_path / "auth")
    assert reopened.service_users() == ["central"]
    assert reopened.check_password("central", creds.password)
    assert "user central" in reopened.acl_path.read_text()
    assert reopened.remove_service_user("central")
    assert "user central" not in reopened.acl_path.read_text()


def test_unreadable_passwd_line_is_refused_not_overwritten(tmp_path: Path) -> None:
    store = BrokerAuthStore(tmp_path / "auth")
    store.passwd_path.write_text("T-0001:$7$101$a$b\nthis line has no colon\n")
    with pytest.raises(BrokerAuthError, match=r"passwd:2"):
        store.add_terminal("T-0002")
    assert "this line has no colon" in store.passwd_path.read_text()


def test_ten_thousand_terminals_provision_in_seconds(tmp_path: Path) -> None:
    store = BrokerAuthStore(tmp_path / "auth")
    ids = [f"T-{n:05d}" for n in range(10_000)]
    started = time.monotonic()
    issued = store.add_terminals(ids)
    elapsed = time.monotonic() - started
    assert elapsed < 15, f"provisioning 10,000 terminals took {elapsed:.1f} s"
    assert [c.username for c in issued] == ids
    assert len(store.terminals()) == 10_000
    assert store.check_password("T-09999", issued[-1].password)


def test_concurrent_provisioning_loses_no_terminal(tmp_path: Path) -> None:
    directory = tmp_path / "auth"
    BrokerAuthStore(directory)

    def provision(prefix: str) -> None:
        store = BrokerAuthStore(directory)
        for n in range(40):
            store.add_terminal(f"{prefix}-{n}")

    workers = [threading.Thread(target=provision, args=(p,)) for p in ("A", "B", "C")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert len(BrokerAuthStore(directory).terminals()) == 120
