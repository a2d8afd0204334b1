"""/v1/datasets: upload a dataset (.npz with arrays x and y, or CSV with a target column), list and
describe uploads and the built-in datasets, delete an upload.

An upload is ``multipart/form-data`` with a ``file`` part (and optional ``target`` / ``task`` fields),
as ``curl -F file=@data.csv`` sends it, or the raw file as the body with ``?filename=data.csv``. The body
is streamed to a temporary file and counted on the way: past ``FITA_MAX_UPLOAD_BYTES`` the upload stops
with a 413, without ever holding the whole file in memory.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from workers.datasets import DatasetError, builtin_datasets, describe_dataset
from workers.records import JobNotFound
from workers.spec import DataSpec
from workers.uploads import StorageQuotaExceeded

from ..deps import ServicesDep, TenantDep
from ..errors import ApiError, not_found
from ..schemas import ERRORS, Dataset, DatasetList, Deleted

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=ERRORS)

_UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": ".npz (x, y) or .csv (header row)"},
        "target": {"type": "string", "description": "CSV: the target column (default: the last)"},
        "task": {"type": "string", "enum": ["classification", "regression"]}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
_FIELDS = ("target", "task")


class _Form:
    """Streams a multipart body: the ``file`` part to ``sink``, small text fields into ``fields``."""

    def __init__(self, boundary: bytes, sink):
        self.sink, self.fields, self.filename = sink, {}, None
        self._headers: dict[bytes, bytes] = {}
        self._name: bytes = b""
        self._value = b""
        self._part: str | None = None
        self.file_seen = False
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._begin, "on_header_field": self._field, "on_header_value": self._hvalue,
            "on_header_end": self._hend, "on_headers_finished": self._headers_done,
            "on_part_data": self._data, "on_part_end": self._end})

    def _begin(self):
        self._headers, self._part = {}, None

    def _field(self, data, start, end):
        self._name += data[start:end]

    def _hvalue(self, data, start, end):
        self._value += data[start:end]

    def _hend(self):
        self._headers[self._name.lower()] = self._value
        self._name, self._value = b"", b""

    def _headers_done(self):
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode(errors="replace")
        if name == "file":
            if self.file_seen:   # a second file would be appended to the first in the sink
                raise ApiError(422, "invalid_value", "file: send one file per upload", "file")
            self._part, self.file_seen = "file", True
            self.filename = options.get(b"filename", b"").decode(errors="replace") or None
        elif name in _FIELDS:
            self._part = name
            self.fields[name] = ""
        else:
            self._part = None   # other parts (OpenAI's "purpose", ...) are read and dropped

    def _data(self, data, start, end):
        if self._part == "file":
            self.sink.write(data[start:end])
        elif self._part is not None and len(self.fields[self._part]) < 256:
            self.fields[self._part] += data[start:end].decode(errors="replace")

    def _end(self):
        self._part = None


async def _receive(request: Request, dest: Path, limit: int) -> tuple[str | None, dict]:
    """Stream the body into ``dest``; return (filename, form fields)."""
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    size = 0
    with open(dest, "wb") as sink:
        form = _Form(options[b"boundary"], sink) if ctype == b"multipart/form-data" and b"boundary" in options else None
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "upload_too_large", f"the upload is over the limit of {limit} bytes "
                               "(FITA_MAX_UPLOAD_BYTES)", "file")
            if form is not None:
                form.parser.write(chunk)
            else:
                sink.write(chunk)
        if form is not None:
            form.parser.finalize()
            if not form.file_seen:   # a file part without a filename may be named by ?filename=
                raise ApiError(422, "missing_field", "file: the multipart body has no 'file' part (curl -F "
                               "file=@data.csv)", "file")
            return form.filename, form.fields
    return None, {}


@router.post("", status_code=201, response_model=Dataset, openapi_extra=_UPLOAD_BODY,
             summary="Upload a dataset: .npz (x, y) or CSV with a target column")
async def upload_dataset(request: Request, svc: ServicesDep, tenant: TenantDep, filename: str | None = None,
                         target: str | None = None,
                         task: Literal["classification", "regression"] | None = None):
    tmp_dir = svc.settings.data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        dest = Path(tmp) / "upload"
        sent_name, fields = await _receive(request, dest, svc.settings.max_upload_bytes)
        name = sent_name or filename
        if not name:
            raise ApiError(422, "missing_field", "filename: name the file (?filename=data.csv) so its format "
                           "(.npz or .csv) is known", "filename")
        task = fields.get("task") or task
        if task not in (None, "classification", "regression"):
            raise ApiError(422, "invalid_value", "task: must be classification or regression", "task")
        try:
            record = await run_in_threadpool(svc.uploads.create, tenant, dest, Path(name).name,
                                             target=fields.get("target") or target, task=task,
                                             data_settings=svc.data_settings)
        except StorageQuotaExceeded as e:
            raise ApiError(413, "storage_quota_exceeded", str(e), "file") from None
        except DatasetError as e:
            # the loader names a job spec's data.target / data.task; here they are this request's fields
            param = e.param.removeprefix("data.") if e.param else None
            raise ApiError(422, e.code, e.message.replace(f"{e.param}: ", f"{param}: ", 1), param) from None
    return Dataset(**record)


def _builtin(name: str, svc) -> Dataset | None:
    names = {d["name"]: d for d in builtin_datasets(svc.data_settings)}
    if name not in names:
        return None
    info = describe_dataset(DataSpec(dataset=name), settings=svc.data_settings)
    return Dataset(id=name, builtin=True, task=info.task, info={**info.to_dict(), "vocab": None,
                                                                "description": names[name]["description"],
                                                                "options": names[name]["options"]})


@router.get("", response_model=DatasetList, summary="Your uploaded datasets, newest first")
def list_datasets(svc: ServicesDep, tenant: TenantDep, after: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=100)] = 20):
    try:
        items, has_more = svc.uploads.list(tenant, after, limit)
    except JobNotFound:
        raise ApiError(400, "invalid_cursor", f"after: {after!r} is not one of your datasets", "after") from None
    return DatasetList(data=[Dataset(**d) for d in items], has_more=has_more,
                       first_id=items[0]["id"] if items else None, last_id=items[-1]["id"] if items else None)


@router.get("/builtin", response_model=DatasetList, summary="The built-in datasets (no upload needed)")
def list_builtin(svc: ServicesDep, tenant: TenantDep):
    items = [_builtin(d["name"], svc) for d in builtin_datasets(svc.data_settings)]
    return DatasetList(data=items, has_more=False, first_id=items[0].id if items else None,
                       last_id=items[-1].id if items else None)


@router.get("/{dataset_id}", response_model=Dataset, summary="One dataset: input shape, target kind, size")
def get_dataset(dataset_id: str, svc: ServicesDep, tenant: TenantDep):
    found = _builtin(dataset_id, svc)
    return found if found is not None else Dataset(**_upload(svc, tenant, dataset_id))


def _upload(svc, tenant: str, dataset_id: str) -> dict:
    record = svc.uploads.get(dataset_id, tenant)
    if record is None:
        raise not_found("dataset", dataset_id, "dataset_id")
    return record


@router.delete("/{dataset_id}", response_model=Deleted, summary="Delete an uploaded dataset")
def delete_dataset(dataset_id: str, svc: ServicesDep, tenant: TenantDep):
    if dataset_id in {d["name"] for d in builtin_datasets(svc.data_settings)}:   # GET finds it: not a 404
        raise ApiError(409, "builtin_dataset", f"{dataset_id} is a built-in dataset; only uploaded datasets (ds_...) "
                       "can be deleted", "dataset_id")
    _upload(svc, tenant, dataset_id)
    svc.uploads.delete(dataset_id)
    return Deleted(id=dataset_id, object="dataset")
