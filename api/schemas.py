"""The API's response and request models (what /docs shows). Shapes follow OpenAI's fine-tuning API
where it has one: ``object`` names the kind, lists are ``{"object": "list", "data", "has_more",
"first_id", "last_id"}``."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workers.records import EVENT_TYPES, PHASES, STATUSES


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable, e.g. unknown_type, job_not_found, limit_exceeded")
    message: str = Field(description="what was wrong and how to fix it")
    param: str | None = Field(None, description="the field at fault, as a dotted path (model.layers[2].in_features)")


class ErrorResponse(BaseModel):
    error: ErrorDetail


# every status a /v1 route may answer with an error (429: FITA_SUBMIT_RATE, FITA_QUOTA_QUEUED; 500: an
# unexpected error, logged), each in the one error shape
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 415, 422, 429, 500, 503)}


class _Page(BaseModel):
    object: Literal["list"] = "list"
    has_more: bool
    first_id: str | None
    last_id: str | None


class StatusTransition(BaseModel):
    status: str
    time: float


class Progress(BaseModel):
    model_config = ConfigDict(extra="allow")
    epoch: int | None = None
    step: int | None = None
    total_steps: int | None = None
    samples_per_s: float | None = None
    eta_s: float | None = None


class JobErrorInfo(BaseModel):
    code: str
    message: str


class Job(BaseModel):
    """A training job (the record the workers keep in Redis)."""
    id: str
    object: Literal["training.job"] = "training.job"
    name: str | None = None
    status: Literal[STATUSES]  # type: ignore[valid-type]
    phase: Literal[PHASES] | None = None  # type: ignore[valid-type]
    queue: str | None = None
    worker: str | None = Field(None, description="the RQ worker running (or that last ran) the job")
    attempt: int = 0
    restarts: int = 0
    created_at: float
    updated_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    progress: Progress = Field(default_factory=Progress)
    status_transitions: list[StatusTransition] = []
    latest_metrics: dict[str, Any] = Field(default_factory=dict, description="{train: {...}, validation: {...}}")
    latest_checkpoint: dict[str, Any] | None = None
    error: JobErrorInfo | None = None
    result: dict[str, Any] | None = Field(None, description="final metrics and weight files, once succeeded")
    dataset: dict[str, Any] | None = Field(None, description="the dataset's description and the standardisation "
                                           "statistics (input_mean, input_std) /predict applies")
    estimate: dict[str, Any] | None = Field(None, description="the dry build's parameter count, FLOPs and memory")
    spec: dict[str, Any] = Field(description="the normalised job spec")

    @classmethod
    def of(cls, record: dict) -> "Job":
        meta = record.get("meta") or {}
        return cls.model_validate({**record, "name": record["spec"].get("name"), "estimate": meta.get("estimate")})


class JobList(_Page):
    data: list[Job]


class Event(BaseModel):
    id: str = Field(description="the stream id; send it back as Last-Event-ID or ?after= to resume")
    type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    time: float
    data: dict[str, Any]


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Event]
    has_more: bool


class Metrics(BaseModel):
    object: Literal["training.metrics"] = "training.metrics"
    job_id: str
    train: dict[str, list] = Field(description="columns step, epoch, loss, lr")
    validation: dict[str, list] = Field(description="columns epoch, step, loss, accuracy (classifiers)")


class Checkpoint(BaseModel):
    object: Literal["training.checkpoint"] = "training.checkpoint"
    step: int
    epoch: int
    metrics: dict[str, Any]
    bytes: int
    sha256: str
    created_at: float


class CheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Checkpoint]
    has_more: bool = False


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[Any] = Field(min_length=1, description="raw features, batch first: [[...], ...] (or one sample); "
                              "the job's standardisation is applied by the server")


class PredictResponse(BaseModel):
    object: Literal["prediction"] = "prediction"
    job_id: str
    which: str
    outputs: list = Field(description="the model's raw outputs")
    probabilities: list | None = None
    classes: list | None = None
    predicted: list | None = Field(None, description="the most probable class per sample")
    predictions: list | None = Field(None, description="outputs mapped back to the target's scale "
                                     "(regression with data.standardize_target)")


class DryRun(BaseModel):
    object: Literal["training.validation"] = "training.validation"
    spec: dict[str, Any]
    parameters: int
    trainable_parameters: int
    flops_per_step: int
    forward_flops_per_sample: int
    memory: dict[str, Any]
    output_shape: list
    steps_per_epoch: int
    total_steps: int
    dataset: dict[str, Any]
    warnings: list[str] = []


class Dataset(BaseModel):
    id: str
    object: Literal["dataset"] = "dataset"
    builtin: bool = False
    filename: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    created_at: float | None = None
    task: str
    info: dict[str, Any] = Field(description="input_shape, target_shape, n_samples, n_classes, classes, ...")


class DatasetList(_Page):
    data: list[Dataset]
