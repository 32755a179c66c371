"""``/v1/files``: enough of OpenAI's Files API for fine-tuning against the simulator.

Endpoints (``Authorization: Bearer <api_key>`` when the simulator config sets one):

* ``POST /v1/files``: ``multipart/form-data`` with ``file`` (the upload) and ``purpose``
  (``fine-tune``, ``batch``, ``assistants``, ``vision``, ``user_data`` or ``evals``); answers an
  ``OpenAIFile`` object ``{"id": "file-...", "object": "file", "bytes", "created_at",
  "expires_at": null, "filename", "purpose", "status": "processed", "status_details": null}``.
* ``GET /v1/files/{file_id}``: that object again; 404 envelope for an unknown id.
* ``GET /v1/files/{file_id}/content``: the uploaded bytes.

Uploads are kept in memory by the :class:`FileStore` on ``app.state.files`` (one per app, no
module globals), up to :data:`MAX_UPLOAD_BYTES` each: the simulator serves demos and tests, not
gigabyte datasets.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import ClientException
from litestar.params import FromPath

from gateway.tools.simulator import responses
from gateway.tools.simulator.chat import authorized, simulator_state

__all__ = [
    "MAX_UPLOAD_BYTES",
    "PURPOSES",
    "FileStore",
    "StoredFile",
    "create_file",
    "file_content",
    "file_store",
    "retrieve_file",
]

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
"""Largest accepted upload body, bytes (OpenAI accepts up to 512 MB; the simulator is a demo)."""

PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
"""The ``purpose`` values OpenAI accepts on upload."""

_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One upload: its OpenAI metadata and its bytes."""

    id: str
    filename: str
    purpose: str
    created_at: int
    content: bytes

    def to_openai(self) -> dict[str, Any]:
        """The ``OpenAIFile`` object (OpenAI's OpenAPI spec, ``components.schemas.OpenAIFile``)."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "expires_at": None,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


class FileStore:
    """Uploaded files of one simulator app, by id. Handlers share one event loop: no lock."""

    __slots__ = ("_files",)

    def __init__(self) -> None:
        self._files: dict[str, StoredFile] = {}

    def add(self, *, filename: str, purpose: str, content: bytes) -> StoredFile:
        """Store an upload under a fresh id (``file-`` and 24 hex digits) and return it."""
        stored = StoredFile(
            id=f"file-{uuid.uuid4().hex[:24]}",
            filename=filename,
            purpose=purpose,
            created_at=responses.now(),
            content=content,
        )
        self._files[stored.id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile | None:
        """The file with this id, or ``None``."""
        return self._files.get(file_id)


def file_store(request: Request[Any, Any, Any]) -> FileStore:
    """The :class:`FileStore` that ``create_simulator_app`` put on ``app.state.files``."""
    store: FileStore = request.app.state.files
    return store


def _error(status: int, message: str, *, param: str | None = None) -> Response[bytes]:
    body = responses.error_body(status, message, param=param, default_code=False)
    return Response(body, status_code=status, media_type=_JSON)


def _not_found(file_id: str) -> Response[bytes]:
    return _error(404, f"No such File object: {file_id}", param="id")


@post("/v1/files", status_code=200, request_max_body_size=MAX_UPLOAD_BYTES)
async def create_file(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Store a multipart upload; 400 envelope without ``file`` or with an unknown ``purpose``."""
    if not authorized(simulator_state(request), request):
        return Response(responses.error_body(401), status_code=401, media_type=_JSON)
    try:
        form = await request.form()
    except ClientException as exc:
        return _error(400, f"Invalid multipart body: {exc.detail}")
    upload = form.get("file")
    purpose = form.get("purpose")
    if not isinstance(upload, UploadFile):
        return _error(400, "Missing the 'file' part (multipart/form-data).", param="file")
    if not isinstance(purpose, str) or purpose not in PURPOSES:
        allowed = ", ".join(sorted(PURPOSES))
        message = f"Invalid purpose {purpose!r}; expected one of {allowed}."
        return _error(400, message, param="purpose")
    content = await upload.read()
    stored = file_store(request).add(
        filename=upload.filename or "upload", purpose=purpose, content=content
    )
    return Response(msgspec.json.encode(stored.to_openai()), media_type=_JSON)


@get("/v1/files/{file_id:str}")
async def retrieve_file(request: Request[Any, Any, Any], file_id: FromPath[str]) -> Response[bytes]:
    """The ``OpenAIFile`` object of ``file_id``; 404 envelope when unknown."""
    if not authorized(simulator_state(request), request):
        return Response(responses.error_body(401), status_code=401, media_type=_JSON)
    stored = file_store(request).get(file_id)
    if stored is None:
        return _not_found(file_id)
    return Response(msgspec.json.encode(stored.to_openai()), media_type=_JSON)


@get("/v1/files/{file_id:str}/content")
async def file_content(request: Request[Any, Any, Any], file_id: FromPath[str]) -> Response[bytes]:
    """The uploaded bytes of ``file_id`` (``application/octet-stream``); 404 when unknown."""
    if not authorized(simulator_state(request), request):
        return Response(responses.error_body(401), status_code=401, media_type=_JSON)
    stored = file_store(request).get(file_id)
    if stored is None:
        return _not_found(file_id)
    return Response(stored.content, media_type="application/octet-stream")
