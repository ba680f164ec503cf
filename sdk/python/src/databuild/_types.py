"""The typed answers and errors of :class:`databuild.Client`: dataclasses built from the
HTTP API's JSON (``crates/databuild-service/openapi.json`` describes every shape)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

AVAILABLE = "PARTITION_AVAILABLE"
FAILED = "PARTITION_FAILED"


@dataclass(frozen=True)
class Partition:
    """A partition's latest state (``WirePartition``)."""

    ref: str
    status: str  # e.g. PARTITION_AVAILABLE
    run_id: str
    job_run_id: str
    seq: int
    updated_micros: int

    @classmethod
    def from_json(cls, j: Dict[str, Any]) -> "Partition":
        return cls(
            ref=j["partitionRef"],
            status=j["status"],
            run_id=j.get("jobGraphRunId", ""),
            job_run_id=j.get("jobRunId", ""),
            seq=int(j.get("seq", 0)),
            updated_micros=int(j.get("updatedMicros", 0)),
        )


@dataclass(frozen=True)
class Run:
    """A graph run's summary (``WireRun``)."""

    run_id: str
    label: str
    status: str  # e.g. GRAPH_SUCCESS
    started_micros: int
    updated_micros: int
    host: Optional[str] = None
    pid: Optional[int] = None

    @classmethod
    def from_json(cls, j: Dict[str, Any]) -> "Run":
        return cls(
            run_id=j["jobGraphRunId"],
            label=j.get("label", ""),
            status=j["status"],
            started_micros=int(j.get("startedMicros", 0)),
            updated_micros=int(j.get("updatedMicros", 0)),
            host=j.get("host"),
            pid=j.get("pid"),
        )


@dataclass(frozen=True)
class Failure:
    """A partition a build failed, and the reason in words."""

    ref: str
    reason: str


@dataclass(frozen=True)
class Outcome:
    """What a graph run did (``WireOutcome``)."""

    run_id: str
    success: bool
    built: List[str]
    delegated: List[str]
    up_to_date: List[str]
    failed: List[Failure]
    job_runs: int
    cancelled: bool

    @classmethod
    def from_json(cls, j: Dict[str, Any]) -> "Outcome":
        return cls(
            run_id=j["jobGraphRunId"],
            success=bool(j.get("success")),
            built=list(j.get("built", [])),
            delegated=list(j.get("delegated", [])),
            up_to_date=list(j.get("upToDate", [])),
            failed=[Failure(f["partitionRef"], f["reason"]) for f in j.get("failed", [])],
            job_runs=int(j.get("jobRuns", 0)),
            cancelled=bool(j.get("cancelled")),
        )


@dataclass(frozen=True)
class BuildState:
    """A build's state (``WireBuild``): ``running``, ``succeeded``, ``failed`` or
    ``error``; ``outcome`` once it ended (builds this service ran)."""

    run_id: str
    state: str
    outcome: Optional[Outcome] = None
    error_code: Optional[str] = None
    error_message: Optional[str] = None

    @property
    def ended(self) -> bool:
        return self.state != "running"

    @classmethod
    def from_json(cls, j: Dict[str, Any]) -> "BuildState":
        err = j.get("error") or {}
        return cls(
            run_id=j["jobGraphRunId"],
            state=j["state"],
            outcome=Outcome.from_json(j["outcome"]) if j.get("outcome") else None,
            error_code=err.get("code"),
            error_message=err.get("message"),
        )


@dataclass(frozen=True)
class Why:
    """Why a partition is in its state: ``why`` is the whole chain (links joined by
    `` <- ``), ``root_cause`` its last link."""

    ref: str
    why: str
    root_cause: str


@dataclass(frozen=True)
class PartitionEvent:
    """A partition event (``databuild.v1.PartitionEvent``); ``raw`` is its whole JSON."""

    id: str
    ref: str
    status: str
    run_id: str
    job_run_id: str
    failure_reason: str
    failure_cause: str
    timestamp: str
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, j: Dict[str, Any]) -> "PartitionEvent":
        return cls(
            id=j.get("partitionEventId", ""),
            ref=(j.get("partitionRef") or {}).get("str", ""),
            status=j.get("status", "PARTITION_UNKNOWN"),
            run_id=j.get("jobGraphRunId", ""),
            job_run_id=j.get("jobRunId", ""),
            failure_reason=j.get("failureReason", ""),
            failure_cause=j.get("failureCause", ""),
            timestamp=j.get("timestamp", ""),
            raw=j,
        )


@dataclass(frozen=True)
class BuildEvent:
    """One event of a build's stream: ``kind`` is ``partitionEvent`` (``partition`` is
    set), ``jobGraphRunEvent`` (``run_event`` is its JSON) or ``end`` (``state`` is
    set); ``seq`` is its position in the event log (0 for ``end``)."""

    kind: str
    seq: int
    partition: Optional[PartitionEvent] = None
    run_event: Optional[Dict[str, Any]] = None
    state: Optional[BuildState] = None


@dataclass(frozen=True)
class RequestResult:
    """The answer to :meth:`Client.request`: ``kind`` is ``available`` (``manifest``
    is set), ``delegated`` (another run builds it: ``run_id``) or ``building`` (a build
    was started: ``run_id``)."""

    ref: str
    kind: str
    run_id: str = ""
    manifest: Optional[Dict[str, Any]] = None


class DatabuildError(Exception):
    """Every error the client raises."""


class ConnectionFailed(DatabuildError):
    """The service could not be reached (refused, unknown host, reset)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"cannot reach the databuild service at {url}: {reason}; "
            "is `databuild serve` running there?"
        )
        self.url = url
        self.reason = reason


class ApiError(DatabuildError):
    """The service answered with an error: ``code`` is the stable code of its error
    table (``invalid_argument``, ``not_found``, ``failed_precondition``, ``aborted``,
    ``build_failed``, ``cancelled``, ``resource_exhausted``, ``unavailable``,
    ``unimplemented``, ``internal``), ``status`` the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class InvalidArgument(ApiError):
    """``invalid_argument``: a malformed request (a bad ref, limit or body)."""


class NotFound(ApiError):
    """``not_found``: no such partition or graph run."""


class FailedPrecondition(ApiError):
    """``failed_precondition``: the graph cannot do it (no job produces a ref, a job's
    config refused it, a missing external partition, a cycle)."""


class Unavailable(ApiError):
    """``unavailable`` or ``cancelled``: the service is busy or shutting down; retry."""


_BY_CODE = {
    "invalid_argument": InvalidArgument,
    "not_found": NotFound,
    "failed_precondition": FailedPrecondition,
    "unavailable": Unavailable,
    "cancelled": Unavailable,
}


def api_error(code: str, message: str, status: int = 0) -> ApiError:
    """The typed error for ``code``."""
    return _BY_CODE.get(code, ApiError)(code, message, status)


class WaitTimeout(DatabuildError, TimeoutError):
    """A wait ran past its timeout; ``pending`` maps each ref not yet available to its
    last known status (``PARTITION_UNKNOWN`` if it has none)."""

    def __init__(self, what: str, timeout: float, pending: Dict[str, str]) -> None:
        listed = ", ".join(f"`{r}` ({s})" for r, s in sorted(pending.items()))
        super().__init__(f"timed out after {timeout:g} s waiting for {what}" + (f": {listed}" if listed else ""))
        self.timeout = timeout
        self.pending = pending


class PartitionFailed(DatabuildError):
    """A partition waited for (or built) failed; ``why`` explains it down to
    ``why.root_cause``."""

    def __init__(self, why: Why) -> None:
        super().__init__(f"partition `{why.ref}` failed; root cause: {why.root_cause}")
        self.ref = why.ref
        self.why = why


class BuildFailed(DatabuildError):
    """A build ended without every requested partition: ``outcome`` says what it did;
    ``whys`` explains each failed partition down to its root cause."""

    def __init__(self, outcome: Outcome, whys: List[Why]) -> None:
        first = whys[0].root_cause if whys else "see its failed partitions"
        refs = ", ".join(f"`{f.ref}`" for f in outcome.failed) or "none listed"
        super().__init__(
            f"build `{outcome.run_id}` failed ({len(outcome.failed)} partition(s): {refs}); "
            f"root cause: {first}"
        )
        self.outcome = outcome
        self.whys = whys
