"""``/api/v1/firmware/artifacts``: upload signed firmware images (ops), list and show them.

An upload is ``multipart/form-data`` with two parts in this order: ``manifest`` (the
``SignedManifest`` JSON from ``posfleet firmware sign``) and ``image`` (the bytes)::

    curl -H "Authorization: Bearer $TOKEN" -F manifest=@pos-os-5.3.0.signed.json \\
         -F image=@pos-os-5.3.0.bin https://central.example/api/v1/firmware/artifacts

The manifest is verified against the configured release keys before a byte of the image
is read; the image is then streamed to the blob store (never held in memory), under its
own size limit rather than the dashboard's small request limit. 201 for a new artifact,
200 with ``"created": false`` for an image that is already stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pydantic
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from posfleet.contract import SignedManifest
from posfleet.dashboard.access import principal, requires
from posfleet.dashboard.api_models import (
    ArtifactListQuery,
    ArtifactPage,
    ArtifactRefPath,
    ArtifactShown,
    ArtifactUploaded,
    NoQuery,
    UploadParts,
    UploadQuery,
)
from posfleet.dashboard.api_operations import api_operation
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.errors import NotFoundError, RequestRejectedError
from posfleet.dashboard.firmware_download import FIRMWARE_KEY, FirmwareDelivery
from posfleet.dashboard.json_bodies import json_response
from posfleet.dashboard.paging_cursor import cursors
from posfleet.dashboard.query_params import query_model, refuse_unknown
from posfleet.firmware.artifacts import ArtifactRecord, Artifacts
from posfleet.firmware.errors import ArtifactError, ArtifactNotFoundError, SignatureError
from posfleet.store.accounts import Role

MAX_MANIFEST_BYTES = 64 * 1024
UPLOAD_CHUNK = 256 * 1024
LIST_PARAMETERS = tuple(ArtifactListQuery.model_fields)
"""What the list takes: its query model's fields (the handler reads it through the model)."""
ARTIFACTS_SCOPE = "firmware-artifacts"
"""The list name the cursors of ``GET /api/v1/firmware/artifacts`` are signed for."""
_MULTIPART_OVERHEAD = 128 * 1024


class UploadRejectedError(RequestRejectedError):
    """An upload refused for a reason about the firmware itself (status and code vary)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _json(payload: Any, status: int = 200) -> web.Response:
    return json_response(payload, status)


def _delivery(request: web.Request) -> FirmwareDelivery:
    found = request.app.get(FIRMWARE_KEY)
    if found is None:
        raise UploadRejectedError(503, "unavailable", "firmware delivery is not configured")
    return found


def _artifacts(request: web.Request) -> Artifacts:
    delivery = _delivery(request)
    return Artifacts(request.app[ENGINE_KEY], delivery.store, delivery.trusted)


def _shown(record: ArtifactRecord) -> dict[str, Any]:
    return record.model_dump(mode="json")


def _malformed(exc: Exception) -> UploadRejectedError:
    return UploadRejectedError(400, "bad_upload", f"the upload is not valid multipart: {exc}")


async def _next_part(reader: MultipartReader, name: str) -> BodyPartReader:
    try:
        part = await reader.next()
    except (HttpProcessingError, ValueError) as exc:
        # A part's headers that do not parse (a name with control characters...).
        raise _malformed(exc) from None
    if not isinstance(part, BodyPartReader) or part.name != name:
        raise UploadRejectedError(
            400, "bad_upload", f"the upload's parts must be 'manifest' then 'image'; {name} missing"
        )
    return part


async def _read_manifest(part: BodyPartReader) -> SignedManifest:
    raw = bytearray()
    while chunk := await part.read_chunk(8192):
        raw += chunk
        if len(raw) > MAX_MANIFEST_BYTES:
            raise UploadRejectedError(413, "payload_too_large", "the manifest part is too large")
    try:
        return SignedManifest.model_validate_json(bytes(raw))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "manifest"
        raise UploadRejectedError(
            422,
            "invalid_manifest",
            f"the manifest is not a signed manifest: {where}: {first['msg']}",
        ) from None


async def _image_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(UPLOAD_CHUNK):
        yield chunk


def _rejection(exc: ArtifactError | SignatureError) -> UploadRejectedError:
    if isinstance(exc, SignatureError):
        return UploadRejectedError(422, f"signature_{exc.reason}", str(exc))
    status = {"conflict": 409, "ambiguous": 400, "not_found": 404}.get(exc.reason, 422)
    return UploadRejectedError(status, exc.reason, str(exc))


@api_operation(
    "Upload a signed firmware image",
    tag="firmware",
    response=ArtifactUploaded,
    status=201,
    also=(200,),
    query=UploadQuery,
    body=UploadParts,
    body_media_type="multipart/form-data",
    errors=(400, 404, 409, 413, 415, 422, 503),
)
@requires(Role.OPS)
async def upload_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/firmware/artifacts``: multipart ``manifest`` then ``image``."""
    reason = query_model(request.query, UploadQuery).reason or ""
    delivery = _delivery(request)
    limit = delivery.max_upload_bytes
    if request.content_length is not None and request.content_length > limit + _MULTIPART_OVERHEAD:
        raise UploadRejectedError(
            413, "payload_too_large", f"firmware images are limited to {limit} bytes"
        )
    if not request.content_type.startswith("multipart/"):
        raise UploadRejectedError(
            415,
            "unsupported_media_type",
            "send multipart/form-data: a manifest part, an image part",
        )
    try:
        reader = await request.multipart()
    except (HttpProcessingError, ValueError, KeyError) as exc:
        raise _malformed(exc) from None
    signed = await _read_manifest(await _next_part(reader, "manifest"))
    if signed.manifest.size > limit:
        raise UploadRejectedError(
            413, "payload_too_large", f"firmware images are limited to {limit} bytes"
        )
    artifacts = _artifacts(request)
    try:
        existing = await artifacts.check_upload(signed)
        if existing is not None:
            return _json({"artifact": _shown(existing), "created": False})
        image = await _next_part(reader, "image")
        result = await artifacts.upload(
            signed,
            _image_chunks(image),
            uploaded_by=principal(request).actor,
            reason=reason,
        )
    except (ArtifactError, SignatureError) as exc:
        raise _rejection(exc) from None
    status = 201 if result.created else 200
    return _json({"artifact": _shown(result.artifact), "created": result.created}, status)


@api_operation(
    "List firmware artifacts",
    tag="firmware",
    response=ArtifactPage,
    query=ArtifactListQuery,
    errors=(400, 503),
)
@requires(Role.VIEWER)
async def list_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/firmware/artifacts?name=&limit=&before=``: newest upload first."""
    query = query_model(request.query, ArtifactListQuery)
    signer = cursors(request.app)
    limit = query.limit or 100
    rows = await _artifacts(request).list(
        name=query.name,
        limit=limit + 1,
        before_id=signer.row_id(ARTIFACTS_SCOPE, query.before, "before"),
    )
    items = rows[:limit]
    more = len(rows) > limit
    return _json(
        {
            "items": [_shown(i) for i in items],
            "next": signer.id_cursor(ARTIFACTS_SCOPE, items[-1].id) if more else None,
        }
    )


@api_operation(
    "Show a firmware artifact",
    tag="firmware",
    response=ArtifactShown,
    query=NoQuery,
    path=ArtifactRefPath,
    errors=(400, 404, 422, 503),
)
@requires(Role.VIEWER)
async def show_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/firmware/artifacts/{ref}``: by id, ``name@version`` or SHA-256 prefix."""
    refuse_unknown(request.query, ())
    try:
        found = await _artifacts(request).find(request.match_info["ref"])
    except ArtifactNotFoundError as exc:
        raise NotFoundError(str(exc)) from None
    except ArtifactError as exc:
        raise _rejection(exc) from None
    return _json({"artifact": _shown(found)})


def add_routes(app: web.Application) -> None:
    """Register the artifact endpoints."""
    app.router.add_post("/api/v1/firmware/artifacts", upload_endpoint)
    app.router.add_get("/api/v1/firmware/artifacts", list_endpoint)
    app.router.add_get("/api/v1/firmware/artifacts/{ref}", show_endpoint)
