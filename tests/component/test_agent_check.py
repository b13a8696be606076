"""``posfleet-agent check`` against the real broker and a simulated terminal on a pty."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from posfleet.simulator import SimulatedTerminal, serve_pty
from tests.harness import PrivateBroker, free_port


def write_config(
    path: Path, *, terminal_id: str, broker_url: str, password: str, serial: str
) -> Path:
    path.write_text(
        f'terminal_id = "{terminal_id}"\n'
        f'broker_url = "{broker_url}"\n'
        f'password = "{password}"\n'
        f'serial_url = "{serial}"\n'
        f'state_dir = "{path.parent / "state"}"\n',
        encoding="utf-8",
    )
    return path


async def run_check(config: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSFLEET_AGENT_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "posfleet.agent.cli",
        "check",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_all_checks_pass_then_a_wrong_password_is_named(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    credentials = broker.provision_terminal("CHECK-T-0001")
    terminal = SimulatedTerminal("SN-CHECK-1", seed=6)
    async with serve_pty(terminal) as pty:
        good = write_config(
            tmp_path / "good.toml",
            terminal_id="CHECK-T-0001",
            broker_url=broker.url,
            password=credentials.password,
            serial=pty,
        )
        code, out = await run_check(good)
        assert code == 0, out
        assert f"ok    serial  {pty}: PF-M100 serial SN-CHECK-1, firmware 2.4.1" in out
        assert f"ok    broker  {broker.url}: logged in as 'CHECK-T-0001'" in out
        assert "all checks passed" in out

        wrong = write_config(
            tmp_path / "wrong.toml",
            terminal_id="CHECK-T-0001",
            broker_url=broker.url,
            password="not-the-password",
            serial=pty,
        )
        code, out = await run_check(wrong)
    assert code == 1
    assert "ok    serial" in out
    assert "FAIL  broker" in out
    assert "refused the login of 'CHECK-T-0001'" in out
    assert "Check username and password" in out
    assert "1 check(s) failed: broker" in out


async def test_a_dead_serial_port_and_an_unreachable_broker_say_what_to_do(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path / "dead.toml",
        terminal_id="CHECK-T-0002",
        broker_url=f"mqtt://127.0.0.1:{free_port()}",
        password="x",
        serial=str(tmp_path / "ttyUSB7"),
    )
    code, out = await run_check(config)
    assert code == 1
    assert "FAIL  serial" in out and "cannot open serial port" in out and "dialout" in out
    assert "FAIL  broker" in out and "cannot reach the broker" in out
