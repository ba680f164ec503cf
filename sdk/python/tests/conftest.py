"""Helpers: run a job's protocol entry points in-process and capture what they print."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence

import pytest

from databuild_sdk import Job


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Dict[str, Any]:
        assert self.code == 0, f"exit {self.code}: {self.err}"
        return json.loads(self.out)


class _Stdin(io.StringIO):
    def isatty(self) -> bool:
        return False


def call(
    job: Job,
    argv: Sequence[str],
    env: Optional[Mapping[str, str]] = None,
    stdin: str = "",
) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = job.run(list(argv), environ=dict(env or {}), stdin=_Stdin(stdin), stdout=out, stderr=err)
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def run():
    return call
