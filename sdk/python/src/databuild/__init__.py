"""databuild from Python: the job SDK and a client of ``databuild serve``.

* Jobs: ``Job``, ``Config``, ``query`` ... (the SDK, also importable as ``databuild_sdk``;
  see its docstring for the job protocol).
* A client of the service's HTTP API: ``Client(url, token=None)``::

      from databuild import Client

      db = Client("http://127.0.0.1:50051")
      handle = db.submit(["reviews/daily/date=2025-01-07"])   # asynchronous
      for event in handle.events():                            # until the build ends
          print(event.kind, event.partition and event.partition.status)
      db.wait_for(["reviews/daily/date=2025-01-07"], timeout=60)
      print(db.why("reviews/daily/date=2025-01-07").root_cause)

The ``databuild`` command itself is installed with this package when it comes from the
wheel (``pip install databuild-*.whl``).
"""

from databuild_sdk import __all__ as _sdk_all
from databuild_sdk import (
    EXIT_FAILED,
    EXIT_USAGE,
    Config,
    ConfigError,
    DepType,
    Input,
    Job,
    JobConfig,
    ProtocolError,
    Ref,
    materialize,
    query,
)

from ._client import BuildHandle, Client
from ._types import (
    ApiError,
    BuildEvent,
    BuildFailed,
    BuildState,
    ConnectionFailed,
    DatabuildError,
    FailedPrecondition,
    Failure,
    InvalidArgument,
    NotFound,
    Outcome,
    Partition,
    PartitionEvent,
    PartitionFailed,
    RequestResult,
    Run,
    Unavailable,
    WaitTimeout,
    Why,
)

__all__ = [
    # the job SDK
    *_sdk_all,
    # the client
    "ApiError",
    "BuildEvent",
    "BuildFailed",
    "BuildHandle",
    "BuildState",
    "Client",
    "ConnectionFailed",
    "DatabuildError",
    "FailedPrecondition",
    "Failure",
    "InvalidArgument",
    "NotFound",
    "Outcome",
    "Partition",
    "PartitionEvent",
    "PartitionFailed",
    "RequestResult",
    "Run",
    "Unavailable",
    "WaitTimeout",
    "Why",
]

__version__ = "0.1.0"
