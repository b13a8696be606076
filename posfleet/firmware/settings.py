"""Firmware delivery settings: the ``[firmware]`` table of the central settings.

Environment: ``POSFLEET_FIRMWARE__<NAME>``, e.g.
``POSFLEET_FIRMWARE__TRUSTED_KEYS='{"release-2026": "/etc/posfleet/release-2026.pub"}'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from posfleet.firmware.errors import SignatureError
from posfleet.firmware.signing import TrustedKeys

_KEY_ID = Annotated[str, Field(min_length=1, max_length=64)]


class FirmwareSettings(BaseModel):
    """Release keys the centre trusts, the download tokens, and bandwidth caps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trusted_keys: dict[_KEY_ID, Path] = Field(
        default_factory=dict,
        description="release public keys by key id: {key_id = 'path/to/release.pub'}; "
        "list two while a key is rotated",
    )
    revoked_key_ids: tuple[_KEY_ID, ...] = Field(
        default=(), description="key ids refused even if a public key is still listed"
    )
    download_token_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key of download tokens, hex (64+ digits); default: generated once "
        "into var_dir/firmware-token-secret. Share it between central instances",
    )
    download_token_ttl_s: Annotated[int, Field(ge=60, le=30 * 86400)] = Field(
        default=86400,
        description="how long an offer's download token is valid; one day covers a "
        "terminal that waits for tonight's maintenance window",
    )
    download_rate_limit_bps: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="bytes per second one download may use; unlimited if unset"
    )
    download_total_rate_limit_bps: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="bytes per second all downloads together may use"
    )
    public_base_url: str | None = Field(
        default=None,
        description="how terminals reach this service, e.g. https://fleet.example.com; "
        "default: http://<http_host>:<http_port>",
    )
    max_upload_bytes: Annotated[int, Field(gt=0)] = Field(
        default=2 * 1024**3, description="largest firmware image the upload API accepts"
    )

    @field_validator("public_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"public_base_url must start with http:// or https://, not {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _secret_is_long_hex(self) -> FirmwareSettings:
        if self.download_token_secret is not None:
            raw = self.download_token_secret.get_secret_value()
            try:
                decoded = bytes.fromhex(raw)
            except ValueError:
                raise ValueError("download_token_secret must be hex digits") from None
            if len(decoded) < 32:
                raise ValueError("download_token_secret must be at least 64 hex digits")
        return self

    def trusted(self) -> TrustedKeys:
        """The configured release keys, read from their files now.

        Raises :class:`SignatureError` naming the file that is missing or not a key.
        """
        for key_id, path in self.trusted_keys.items():
            if not path.is_file():
                raise SignatureError(
                    f"release key {key_id!r}: {path} does not exist "
                    "(set firmware.trusted_keys to the .pub files from posfleet firmware keygen)"
                )
        return TrustedKeys.from_pem_files(self.trusted_keys, self.revoked_key_ids)
