"""Every ``posfleet`` and ``posfleet-agent`` command the README and ``docs/*.md`` show, run.

The commands are read from the documentation (conventions: :mod:`tests.harness.doc_commands`)
and each becomes one test, named by the command's text, so a newly documented command is
tested without touching this file, provided :data:`RUNNERS` knows its prefix. Each runs in
a fresh workspace, as the installed console script, with ``POSFLEET_VAR_DIR`` set to a
new var dir and the working directory a new folder (so ``var/...`` paths land there too);
absolute paths such as ``/etc/posfleet/agent.toml`` are moved under the workspace, and
placeholders (``ID``) are replaced by what the setup created. Every command must exit 0
without a traceback and have the effect the documentation promises: the new user logs in
through the dashboard's login form, a new token lists terminals, broker credentials are
accepted by a real Mosquitto. Daemons (``serve``, ``simulate``, ``posfleet-agent run``)
run until what they promise is seen (``/healthz`` and a terminal's report through the
API, reports from every simulated terminal on the broker), then stop on SIGTERM.

A command whose prefix has no runner fails, naming the table to extend; a block marked
``<!-- not-run: reason -->`` is skipped with its reason.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.central.broker_auth import BrokerAuthStore, BrokerCredentials
from posfleet.contract import Channel, Inventory, State, Topic, all_terminals_filter, topic
from posfleet.simulator import SimulatedTerminal, serve_pty
from posfleet.simulator.fleet_file import (
    FleetFile,
    FleetTerminal,
    load_fleet_file,
    write_fleet_file,
)
from posfleet.store import apply_inventory, upgrade_engine
from posfleet.store.accounts import Role, create_api_token
from posfleet.store.incidents import IncidentSpec, get_incident, open_incident
from posfleet.store.migrate import alembic_config
from tests.e2e.firmware_command_runners import RUNNERS as FIRMWARE_RUNNERS
from tests.e2e.rollout_command_runners import RUNNERS as ROLLOUT_RUNNERS
from tests.harness import MqttProbe, async_wait_for, free_port
from tests.harness.command_workspace import BIN, DashboardClient, Workspace
from tests.harness.doc_commands import DocumentedCommand, commands_in, documented_commands

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
COMMANDS = documented_commands(REPO)
PASSWORD = "correct-Horse-Staple-92"
CENTRAL = "central"
# The example of docs/serial-protocol.md section 7: a stray byte, one frame, an ACK.
CAPTURE = "41 10 02 80 00 00 10 03 f5 1f 06\n"
PRINTER_DIES = """\
name = "printer dies"

[[events]]
at = "1s"
inject = "paper_out"
"""


def _option(command: DocumentedCommand, name: str, default: str = "") -> str:
    """The value of option ``name`` as documented, or ``default``."""
    words = list(command.argv)
    return words[words.index(name) + 1] if name in words else default


def _positionals(command: DocumentedCommand, skip: int) -> list[str]:
    """Arguments after the first ``skip`` words that are neither options nor their values."""
    found, words = [], iter(command.argv[skip:])
    for word in words:
        if word.startswith("--"):
            next(words, None)
        else:
            found.append(word)
    return found


def _head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def _add_terminal(engine: AsyncEngine, terminal_id: str) -> None:
    inventory = Inventory(
        model="V400m",
        serial=f"SN-{terminal_id}",
        firmware_version="5.2.1",
        agent_version="1.4.0",
        merchant_id="M1001",
        ts=datetime.now(UTC),
    )
    async with engine.begin() as conn:
        await apply_inventory(conn, terminal_id, inventory)


# -- central: database, accounts ------------------------------------------------------------


async def run_db_upgrade(command: DocumentedCommand, ws: Workspace) -> None:
    """Creates the database at the latest revision; a second run changes nothing."""
    assert "latest revision" in await ws.run(command)
    assert "latest revision" in await ws.run(command)
    async with ws.engine() as engine, engine.connect() as conn:
        found = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
        assert found.scalar_one() == _head_revision()


async def _logs_in(client: DashboardClient, username: str, password: str) -> bool:
    client.session.cookie_jar.clear()
    form = await (await client.get("/login")).text()
    match = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert match, "the login page has no CSRF token"
    data = {"csrf_token": match.group(1), "username": username, "password": password}
    answer = await client.post("/login", data=data, allow_redirects=False)
    if answer.status != 303:
        return False
    fleet = await client.get("/", allow_redirects=False)
    return fleet.status == 200


async def run_user_add(command: DocumentedCommand, ws: Workspace) -> None:
    """The new user logs in with the password given through POSFLEET_PASSWORD."""
    username = _positionals(command, 3)[0]
    role = _option(command, "--role", "viewer")
    out = await ws.run(command, env={"POSFLEET_PASSWORD": PASSWORD})
    assert f"user {username!r} added with role {role}" in out
    async with ws.dashboard() as client:
        assert not await _logs_in(client, username, PASSWORD + "-wrong")
        assert await _logs_in(client, username, PASSWORD)


async def run_token_create(command: DocumentedCommand, ws: Workspace) -> None:
    """The printed token (or the file it went to) lists terminals; ops and up read /metrics."""
    out = await ws.run(command)
    text = ws.local(command.stdout_to).read_text() if command.stdout_to else out
    token = text.strip()
    assert token and "\n" not in token, f"expected one token line, got {text!r}"
    async with ws.engine() as engine:
        await _add_terminal(engine, "DOC-T-0001")
    headers = {"Authorization": f"Bearer {token}"}
    async with ws.dashboard() as client:
        listed = await client.get("/api/v1/terminals", headers=headers)
        assert listed.status == 200, await listed.text()
        assert [t["terminal_id"] for t in (await listed.json())["items"]] == ["DOC-T-0001"]
        if Role(_option(command, "--role", "viewer")).permits(Role.OPS):
            metrics = await client.get("/metrics", headers=headers)
            assert metrics.status == 200
            assert "posfleet_" in await metrics.text()


# -- central: broker credentials ------------------------------------------------------------


def _printed_credentials(out: str) -> BrokerCredentials:
    username, password = out.split()[:2]
    return BrokerCredentials(username, password)


async def run_broker_add_service(command: DocumentedCommand, ws: Workspace) -> None:
    """Mosquitto, pointed at the auth dir, accepts the printed login and its ``pos/v1/#``."""
    credentials = _printed_credentials(await ws.run(command))
    assert credentials.username == _positionals(command, 3)[0]
    auth = BrokerAuthStore(ws.local(_option(command, "--auth-dir", "var/broker")))
    broker = ws.start_broker(auth)
    probe = ws.probe(broker, credentials).connect()
    assert not probe.subscribe("pos/v1/#").is_failure


async def run_broker_add_terminal(command: DocumentedCommand, ws: Workspace) -> None:
    """The printed login connects and may publish under its own id only."""
    credentials = _printed_credentials(await ws.run(command))
    terminal_id = _positionals(command, 3)[0]
    assert credentials.username == terminal_id
    auth = BrokerAuthStore(ws.local(_option(command, "--auth-dir", "var/broker")))
    broker = ws.start_broker(auth)
    probe = ws.probe(broker, credentials).connect()
    state = State(online=True, agent_version="1.0.0", boot_id="b", ts=datetime.now(UTC))
    assert not probe.publish(topic(terminal_id, Channel.STATE), state.model_dump_json()).is_failure
    assert probe.publish(topic("SOMEONE-ELSE", Channel.STATE), "{}").is_failure


async def run_broker_provision_fleet(command: DocumentedCommand, ws: Workspace) -> None:
    """The fleet file lists COUNT terminals whose passwords the auth dir accepts."""
    assert "terminals provisioned" in await ws.run(command)
    fleet = load_fleet_file(ws.local(_option(command, "--out")))
    assert len(fleet.terminals) == int(_option(command, "--count"))
    assert fleet.broker_url == _option(command, "--broker-url", "mqtt://127.0.0.1:1883")
    auth = BrokerAuthStore(ws.local(_option(command, "--auth-dir", "var/broker")))
    first = fleet.terminals[0]
    assert auth.check_password(first.terminal_id, first.password)


# -- central: daemons -----------------------------------------------------------------------


async def run_serve(command: DocumentedCommand, ws: Workspace) -> None:
    """Up on its port (``/healthz``), ingesting: a terminal's report shows in the API."""
    auth = BrokerAuthStore(ws.root / "broker-auth")
    central = auth.add_service_user(CENTRAL)
    terminal = auth.add_terminal("DOC-SERVE-1")
    broker = ws.start_broker(auth)
    port = free_port()
    stop = await ws.start(
        command,
        env={
            "POSFLEET_BROKER_URL": broker.central_url,
            "POSFLEET_BROKER_USERNAME": central.username,
            "POSFLEET_BROKER_PASSWORD": central.password,
            "POSFLEET_HTTP_PORT": str(port),
        },
    )
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:

        async def healthy() -> bool:
            try:
                async with http.get(f"{base}/healthz") as response:
                    return response.status == 200
            except aiohttp.ClientConnectionError:
                return False

        await async_wait_for(healthy, timeout=60, interval=0.2, description="/healthz")
        probe = ws.probe(broker, terminal).connect()
        now = datetime.now(UTC)
        state = State(online=True, agent_version="1.0.0", boot_id="doc", ts=now)
        inventory = Inventory(
            model="V400m", serial="SN-DOC", firmware_version="5.2.1", agent_version="1.0.0", ts=now
        )
        probe.publish(topic("DOC-SERVE-1", Channel.STATE), state.model_dump_json(), retain=True)
        probe.publish(
            topic("DOC-SERVE-1", Channel.INVENTORY), inventory.model_dump_json(), retain=True
        )
        async with ws.engine() as engine, engine.begin() as conn:
            token = await create_api_token(conn, "doc-test", Role.VIEWER)

        async def listed() -> list[str]:
            async with http.get(
                f"{base}/api/v1/terminals", headers={"Authorization": f"Bearer {token}"}
            ) as response:
                assert response.status == 200
                return [t["terminal_id"] for t in (await response.json())["items"]]

        await async_wait_for(listed, timeout=30, interval=0.2, description="the API lists it")
        assert await listed() == ["DOC-SERVE-1"]
    await stop()


async def run_simulate(command: DocumentedCommand, ws: Workspace) -> None:
    """Every terminal of the fleet file reports on the broker; the scenario's fault shows."""
    auth = BrokerAuthStore(ws.root / "broker-auth")
    central = auth.add_service_user(CENTRAL)
    fleet_path = ws.local(_option(command, "--fleet"))
    ids = [f"DOC-SIM-{i}" for i in (1, 2)]
    credentials = auth.add_terminals(ids)
    broker = ws.start_broker(auth)
    terminals = [
        FleetTerminal(terminal_id=c.username, password=c.password, merchant_id="M1001", seed=i)
        for i, c in enumerate(credentials, start=1)
    ]
    write_fleet_file(fleet_path, FleetFile(broker_url=broker.url, terminals=terminals))
    scenario = _option(command, "--scenario")
    if scenario:
        ws.local(scenario).write_text(PRINTER_DIES)
    probe = ws.probe(broker, central).connect()
    probe.subscribe(all_terminals_filter())
    stop = await ws.start(command)

    def reported() -> bool:
        seen = {
            (Topic.parse(m.topic).terminal_id, m.topic.rsplit("/", 1)[1]) for m in probe.received()
        }
        wanted = {(t, channel) for t in ids for channel in ("state", "inventory", "health")}
        if scenario:
            wanted |= {(t, "event") for t in ids}
        return wanted <= seen

    await async_wait_for(
        reported, timeout=60, interval=0.2, description="reports of every terminal"
    )
    if scenario:
        events = [json.loads(m.payload) for m in probe.received() if m.topic.endswith("/event")]
        assert any(e["component"] == "printer" for e in events), events
    await stop()


# -- agent ----------------------------------------------------------------------------------


def _documented_agent_config() -> dict[str, object]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```toml\n(# /etc/posfleet/agent\.toml\n.*?)```", readme, re.DOTALL)
    assert match, "README.md has no ```toml block for /etc/posfleet/agent.toml"
    return tomllib.loads(match.group(1))


def _toml(values: dict[str, object]) -> str:
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())


@asynccontextmanager
async def _agent_site(command: DocumentedCommand, ws: Workspace) -> AsyncIterator[MqttProbe]:
    """The README's agent.toml at its documented path, pointed at a private broker and a
    simulated terminal on a pty; yields a probe subscribed to that terminal's topics."""
    config = _documented_agent_config()
    terminal_id = str(config["terminal_id"])
    auth = BrokerAuthStore(ws.root / "broker-auth")
    central = auth.add_service_user(CENTRAL)
    credentials = auth.add_terminal(terminal_id)
    broker = ws.start_broker(auth)
    probe = ws.probe(broker, central).connect()
    probe.subscribe(f"pos/v1/{terminal_id}/#")
    async with serve_pty(SimulatedTerminal("SN-DOC-AGENT", seed=3)) as pty:
        # The private broker speaks plain MQTT on loopback: no CA file to point at.
        config.pop("tls_ca_file", None)
        for key, value in config.items():
            if isinstance(value, str) and value.startswith("/"):
                config[key] = str(ws.local(value))
        config.update(broker_url=broker.url, password=credentials.password, serial_url=pty)
        path = ws.local(_option(command, "--config", "/etc/posfleet/agent.toml"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_toml(config), encoding="utf-8")
        yield probe


async def run_agent_check(command: DocumentedCommand, ws: Workspace) -> None:
    """With the documented config, every check passes."""
    async with _agent_site(command, ws):
        assert "all checks passed" in await ws.run(command)


async def run_agent_run(command: DocumentedCommand, ws: Workspace) -> None:
    """The daemon reports the terminal's state, inventory and health, and stops cleanly."""
    async with _agent_site(command, ws) as probe:
        stop = await ws.start(command)

        def channels() -> set[str]:
            return {m.topic.rsplit("/", 1)[1] for m in probe.received()}

        await async_wait_for(
            lambda: {"state", "inventory", "health"} <= channels(),
            timeout=60,
            interval=0.2,
            description="state, inventory and health from the agent",
        )
        await stop()


async def run_trace_decode(command: DocumentedCommand, ws: Workspace) -> None:
    """One JSON object per frame, ACK and error, as docs/serial-protocol.md shows."""
    ws.local(_positionals(command, 3)[0]).write_text(CAPTURE)
    records = [json.loads(line) for line in (await ws.run(command)).splitlines()]
    assert [r["type"] for r in records] == ["error", "frame", "ack"]
    assert records[1]["crc_ok"] is True


# -- diagnostics ----------------------------------------------------------------------------


async def run_rules_check(command: DocumentedCommand, ws: Workspace) -> None:
    """A rule file (the built-in printer pack, copied) is reported ok."""
    name = _positionals(command, 3)[0]
    shutil.copy(REPO / "posfleet" / "diagnostics" / "rules" / "printer.yaml", ws.local(name))
    assert f"{name}: ok," in await ws.run(command)


PAPER_OUT = IncidentSpec(
    rule_id="printer.paper_out",
    title="Printer out of paper",
    component="printer",
    severity="warning",
    escalation="remote_fix",
    cause="The paper roll is empty.",
    remedy=["Open the printer cover and put in a new roll."],
    terminal_id="DOC-T-0001",
)


async def _with_incident(ws: Workspace) -> int:
    ws.var_dir.mkdir(parents=True, exist_ok=True)
    async with ws.engine() as engine:
        await upgrade_engine(engine)
        async with engine.begin() as conn:
            incident_id, _ = await open_incident(conn, PAPER_OUT, now=datetime.now(UTC))
    ws.substitutions["ID"] = str(incident_id)
    return incident_id


async def _incident_state(ws: Workspace, incident_id: int) -> str:
    async with ws.engine() as engine, engine.connect() as conn:
        record = await get_incident(conn, incident_id)
    assert record is not None
    return record.state.value


async def run_incidents_list(command: DocumentedCommand, ws: Workspace) -> None:
    """Lists the open incident with its id and title."""
    incident_id = await _with_incident(ws)
    out = await ws.run(command)
    assert f"#{incident_id}" in out and PAPER_OUT.title in out


async def run_incidents_show(command: DocumentedCommand, ws: Workspace) -> None:
    """Shows the incident's cause and the remedy to read to the merchant."""
    await _with_incident(ws)
    out = await ws.run(command)
    assert PAPER_OUT.cause in out and PAPER_OUT.remedy[0] in out


async def run_incidents_ack(command: DocumentedCommand, ws: Workspace) -> None:
    """The incident is acknowledged."""
    incident_id = await _with_incident(ws)
    await ws.run(command)
    assert await _incident_state(ws, incident_id) == "acknowledged"


async def run_incidents_resolve(command: DocumentedCommand, ws: Workspace) -> None:
    """The incident is resolved."""
    incident_id = await _with_incident(ws)
    await ws.run(command)
    assert await _incident_state(ws, incident_id) == "resolved"


async def run_incidents_stats(command: DocumentedCommand, ws: Workspace) -> None:
    """Counts the incident by rule."""
    await _with_incident(ws)
    assert PAPER_OUT.rule_id in await ws.run(command)


Runner = Callable[[DocumentedCommand, Workspace], Awaitable[None]]

RUNNERS: dict[str, Runner] = {
    "posfleet db upgrade": run_db_upgrade,
    "posfleet user add": run_user_add,
    "posfleet token create": run_token_create,
    "posfleet broker add-service": run_broker_add_service,
    "posfleet broker add-terminal": run_broker_add_terminal,
    "posfleet broker provision-fleet": run_broker_provision_fleet,
    "posfleet serve": run_serve,
    "posfleet simulate": run_simulate,
    "posfleet rules check": run_rules_check,
    "posfleet incidents list": run_incidents_list,
    "posfleet incidents show": run_incidents_show,
    "posfleet incidents ack": run_incidents_ack,
    "posfleet incidents resolve": run_incidents_resolve,
    "posfleet incidents stats": run_incidents_stats,
    "posfleet-agent check": run_agent_check,
    "posfleet-agent run": run_agent_run,
    "posfleet-agent trace decode": run_trace_decode,
    **FIRMWARE_RUNNERS,
    **ROLLOUT_RUNNERS,
}
"""How to run and check each documented command, by the longest matching prefix of its words.

A newly documented command (``posfleet contract export ...``) needs an entry here: an async
function that sets up what the command needs in the :class:`Workspace`, runs it
(``ws.run`` or, for a daemon, ``ws.start``) and checks the effect the docs promise.
"""


def runner_for(command: DocumentedCommand) -> Runner | None:
    """The runner of the longest prefix that matches ``command``'s words, if any."""
    words = " ".join(command.argv)
    matching = [p for p in RUNNERS if words == p or words.startswith(p + " ")]
    return RUNNERS[max(matching, key=len)] if matching else None


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """A fresh workspace; whatever the test leaves running is stopped."""
    ws = Workspace(tmp_path)
    try:
        yield ws
    finally:
        ws.close()


@pytest.mark.parametrize("command", COMMANDS, ids=[c.text for c in COMMANDS])
async def test_documented_command(command: DocumentedCommand, workspace: Workspace) -> None:
    if command.not_run_reason is not None:
        assert command.not_run_reason, f"{command.source}: a not-run block must say why"
        pytest.skip(f"{command.source}: not run: {command.not_run_reason}")
    runner = runner_for(command)
    if runner is None:
        pytest.fail(
            f"{command.source} documents {command.text!r}, which no test runs: add its "
            f"prefix to RUNNERS in {Path(__file__).name}, or mark the block "
            "<!-- not-run: reason --> if it only illustrates",
            pytrace=False,
        )
    await runner(command, workspace)


def test_a_command_nobody_runs_yet_has_no_runner_and_the_longest_prefix_wins() -> None:
    (export,) = commands_in("```sh\nposfleet contract export schemas\n```\n", "X.md")
    assert runner_for(export) is None
    (show,) = commands_in("```sh\nposfleet incidents show 7\n```\n", "X.md")
    assert runner_for(show) is run_incidents_show


def test_the_readme_commands_are_all_found() -> None:
    found = {" ".join(c.argv[:3]) for c in COMMANDS}
    assert {
        "posfleet db upgrade",
        "posfleet user add",
        "posfleet token create",
        "posfleet serve",
        "posfleet-agent check --config",
        "posfleet-agent run --config",
        "posfleet simulate --fleet",
        "posfleet incidents ack",
    } <= found


def test_the_command_reader_follows_the_documented_conventions() -> None:
    markdown = """\
```sh
$ posfleet incidents list | show ID   # a comment
POSFLEET_VAR_DIR=/srv/x posfleet simulate --fleet f.json [--scenario s.toml]
posfleet token create bot --role ops > /etc/bot.token
posfleet serve \\
    --verbose
make demo
```

<!-- not-run: needs the customer's PKI -->
```sh
posfleet-agent run --config /etc/site.toml
```

```toml
posfleet = "not a command"
```
"""
    found = [(c.source, c.text, c.not_run_reason) for c in commands_in(markdown, "X.md")]
    assert found == [
        ("X.md:2", "posfleet incidents list", None),
        ("X.md:2", "posfleet incidents show ID", None),
        (
            "X.md:3",
            "POSFLEET_VAR_DIR=/srv/x posfleet simulate --fleet f.json --scenario s.toml",
            None,
        ),
        ("X.md:4", "posfleet token create bot --role ops > /etc/bot.token", None),
        ("X.md:5", "posfleet serve --verbose", None),
        ("X.md:12", "posfleet-agent run --config /etc/site.toml", "needs the customer's PKI"),
    ]


@pytest.mark.parametrize("var_dir_exists", [False, True])
async def test_incident_commands_before_db_upgrade_say_what_to_do(
    workspace: Workspace, var_dir_exists: bool
) -> None:
    if var_dir_exists:
        workspace.var_dir.mkdir()
    process = await asyncio.create_subprocess_exec(
        str(BIN / "posfleet"),
        "incidents",
        "list",
        cwd=workspace.work,
        env=workspace.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert "Traceback" not in err.decode()
    assert "create or migrate it with 'posfleet db upgrade'" in err.decode()
