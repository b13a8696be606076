"""A simulated terminal's configuration parameters: what a backup exports and a restore sets.

Secret parameters (Wi-Fi key, TLS client key, admin PIN) never leave the terminal: a backup
names them as withheld, a request for one is refused, a restore cannot set them.
"""

from __future__ import annotations

from dataclasses import dataclass

from posfleet.agent.drivers.base import ConfigBackup, ConfigRestoreResult
from posfleet.agent.drivers.maintenance_codes import ResultCode
from posfleet.simulator.errors import TerminalRefusal

MAX_VALUE_CHARS = 256


@dataclass
class Parameter:
    """One parameter and how it may be used."""

    value: str
    secret: bool = False
    writable: bool = True


def default_parameters(serial: str, merchant_id: str) -> dict[str, Parameter]:
    """The parameter set of a freshly installed terminal."""
    return {
        "terminal.serial": Parameter(serial, writable=False),
        "merchant.id": Parameter(merchant_id),
        "merchant.name": Parameter("Simulated Shop"),
        "receipt.header": Parameter("Thank you for shopping"),
        "receipt.footer": Parameter("Keep this receipt"),
        "display.language": Parameter("en"),
        "display.brightness": Parameter("80"),
        "payment.currency": Parameter("EUR"),
        "payment.tip_enabled": Parameter("false"),
        "host.address": Parameter("acquirer.example.net:443"),
        "host.timeout_s": Parameter("30"),
        "settlement.time": Parameter("23:30"),
        "wifi.ssid": Parameter("shop-wifi"),
        "wifi.psk": Parameter("correct horse battery", secret=True),
        "host.tls_client_key": Parameter("-----BEGIN PRIVATE KEY-----...", secret=True),
        "admin.pin": Parameter("4711", secret=True),
    }


class ParameterStore:
    """The parameters, with the rules a terminal enforces on them."""

    def __init__(self, params: dict[str, Parameter]) -> None:
        self.params = params

    def backup(self, keys: list[str] | None = None) -> ConfigBackup:
        """Export ``keys`` (default: all); refused if any requested key is secret."""
        if keys:
            secret = [k for k in keys if k in self.params and self.params[k].secret]
            if secret:
                raise TerminalRefusal(ResultCode.SECRET_PARAMETER, f"{secret[0]} is secret")
        wanted = keys or list(self.params)
        exported = {
            k: self.params[k].value
            for k in wanted
            if k in self.params and not self.params[k].secret
        }
        withheld = [k for k in wanted if k in self.params and self.params[k].secret]
        return ConfigBackup(exported, withheld)

    def restore(self, values: dict[str, str]) -> ConfigRestoreResult:
        """Apply what may be applied; say why the rest was not."""
        applied: list[str] = []
        rejected: dict[str, str] = {}
        for key, value in values.items():
            param = self.params.get(key)
            if param is None:
                rejected[key] = "unknown parameter"
            elif param.secret:
                rejected[key] = "secret: set by key injection, never by a restore"
            elif not param.writable:
                rejected[key] = "read-only"
            elif len(value) > MAX_VALUE_CHARS:
                rejected[key] = f"longer than {MAX_VALUE_CHARS} characters"
            else:
                param.value = value
                applied.append(key)
        return ConfigRestoreResult(applied, rejected)
