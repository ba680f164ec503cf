"""The protocol messages a job sees (``DataDep``, ``JobConfig``, ``JobConfigureResponse``)
and their proto3 JSON mapping: canonical camelCase out, both spellings in."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ._refs import Ref, ref_problem


class ProtocolError(ValueError):
    """JSON that is not the protocol message it should be."""


class DepType(enum.IntEnum):
    """How a job depends on an input (``databuild.v1.DepType``)."""

    #: Read the input if it exists; databuild neither builds it nor waits for it. This is
    #: the proto3 default: a ``DataDep`` without ``depType`` is a QUERY.
    QUERY = 0
    #: Build the input (if it is not available and fresh) before the job starts.
    MATERIALIZE = 1


@dataclass(frozen=True)
class Input:
    """One input of a task (``databuild.v1.DataDep``)."""

    ref: str
    dep_type: DepType = DepType.MATERIALIZE

    @property
    def is_query(self) -> bool:
        """True for a QUERY input (may be absent when the job runs)."""
        return self.dep_type == DepType.QUERY

    def __str__(self) -> str:
        return self.ref


def materialize(ref: Union[str, Ref]) -> Input:
    """An input that databuild builds before the job runs (the SDK's default for a plain
    string in ``Config.inputs``)."""
    return Input(str(ref), DepType.MATERIALIZE)


def query(ref: Union[str, Ref]) -> Input:
    """An input the job reads if it exists; databuild does not build it or wait for it."""
    return Input(str(ref), DepType.QUERY)


InputSpec = Union[str, Ref, Input]


@dataclass
class Config:
    """What a job's config function returns for one task.

    ``inputs`` are refs (plain strings are MATERIALIZE inputs; wrap one in :func:`query`
    for a QUERY input), ``args`` the arguments of ``exec`` and ``env`` extra environment
    variables for it. ``outputs`` defaults to the refs the config function was given; set
    it to produce more partitions in the same run (a multi-output job) or to split a group
    of refs over several configs.
    """

    inputs: Sequence[InputSpec] = ()
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    outputs: Optional[Sequence[Union[str, Ref]]] = None


@dataclass
class JobConfig:
    """What ``exec`` builds: the ``JobConfig`` databuild passed, with outputs parsed by the
    job's patterns, plus the ids of this run."""

    outputs: List[Ref]
    inputs: List[Input]
    args: List[str]
    env: Dict[str, str]
    #: ``DATABUILD_JOB_RUN_ID`` (``None`` when run by hand).
    job_run_id: Optional[str] = None
    #: ``DATABUILD_GRAPH_RUN_ID`` (``None`` when run by hand).
    graph_run_id: Optional[str] = None
    #: What ``wrote`` recorded: output ref -> the path of its data.
    written: Dict[str, str] = field(default_factory=dict)

    def wrote(self, ref: Union[str, Ref], path: Union[str, "os.PathLike[str]"]) -> None:
        """Records that output ``ref`` is the file (or directory) at ``path``. When ``exec``
        succeeds, the SDK reports the SHA-256 of its bytes as the output's digest (in the
        file ``DATABUILD_DIGESTS`` names), so that a rebuild that writes the same bytes
        leaves what was built from it fresh (early cutoff)."""
        name = ref.str if isinstance(ref, Ref) else str(ref)
        if name not in [o.str for o in self.outputs]:
            raise ValueError(f"`{name}` is not an output of this run ({[o.str for o in self.outputs]})")
        self.written[name] = os.fspath(path)

    @property
    def output(self) -> Ref:
        """The one output, for jobs that build one partition per run."""
        if len(self.outputs) != 1:
            raise ValueError(
                f"this run builds {len(self.outputs)} outputs, not one; use `config.outputs`"
            )
        return self.outputs[0]

    def materialized(self) -> List[str]:
        """Refs of the MATERIALIZE inputs (built before this run started)."""
        return [i.ref for i in self.inputs if not i.is_query]

    def queried(self) -> List[str]:
        """Refs of the QUERY inputs (they may not exist)."""
        return [i.ref for i in self.inputs if i.is_query]


# --- encoding (canonical proto3 JSON) -------------------------------------------------


def encode_config(
    outputs: Sequence[str], inputs: Sequence[Input], args: Sequence[str], env: Mapping[str, str]
) -> Dict[str, Any]:
    """A ``JobConfig`` in canonical proto3 JSON. ``depType`` is always written, QUERY too,
    so that nobody reading it has to remember the proto3 default."""
    return {
        "outputs": [{"str": o} for o in outputs],
        "inputs": [
            {"depType": i.dep_type.name, "partitionRef": {"str": i.ref}} for i in inputs
        ],
        "args": list(args),
        "env": dict(env),
    }


# --- decoding (both spellings, enum names or numbers) ---------------------------------


def _field(obj: Mapping[str, Any], camel: str, snake: str, where: str) -> Any:
    if camel in obj and snake in obj and camel != snake:
        raise ProtocolError(f"{where}: both `{camel}` and `{snake}` are set; give one")
    return obj.get(camel, obj.get(snake))


def _expect_object(v: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(v, dict):
        raise ProtocolError(f"{where}: expected an object, got {_kind(v)}")
    return v


def _expect_list(v: Any, where: str) -> List[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise ProtocolError(f"{where}: expected an array, got {_kind(v)}")
    return v


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, list):
        return "an array"
    return "an object"


def _partition_ref(v: Any, where: str) -> str:
    obj = _expect_object(v, where)
    s = obj.get("str")
    if not isinstance(s, str):
        raise ProtocolError(f"{where}.str: expected a string, got {_kind(s)}")
    problem = ref_problem(s)
    if problem:
        raise ProtocolError(f"{where}.str: {problem}")
    return s


def _dep_type(v: Any, where: str) -> DepType:
    if v is None:
        return DepType.QUERY
    if isinstance(v, bool):
        raise ProtocolError(f"{where}: expected `QUERY` or `MATERIALIZE`, got {_kind(v)}")
    if isinstance(v, int):
        try:
            return DepType(v)
        except ValueError:
            raise ProtocolError(f"{where}: unknown enum number {v}; expected 0 (QUERY) or 1 (MATERIALIZE)") from None
    if isinstance(v, str) and v in DepType.__members__:
        return DepType[v]
    raise ProtocolError(f"{where}: expected `QUERY` or `MATERIALIZE`, got {_kind(v)}")


def decode_job_config(obj: Any) -> Tuple[List[str], List[Input], List[str], Dict[str, str]]:
    """``(outputs, inputs, args, env)`` of a ``JobConfig`` in proto3 JSON.

    Accepts ``depType``/``dep_type`` and ``partitionRef``/``partition_ref``, enum names
    or numbers, and ignores unknown fields. A ``JobConfigureResponse`` with exactly one
    config is accepted too (so ``job config <ref> | job exec`` works by hand).
    """
    top = _expect_object(obj, "JobConfig")
    if "configs" in top and "outputs" not in top:
        configs = _expect_list(top["configs"], "configs")
        if len(configs) != 1:
            raise ProtocolError(
                f"got a JobConfigureResponse with {len(configs)} configs; exec needs exactly one JobConfig"
            )
        top = _expect_object(configs[0], "configs[0]")
    outputs = [
        _partition_ref(o, f"outputs[{i}]") for i, o in enumerate(_expect_list(top.get("outputs"), "outputs"))
    ]
    inputs = []
    for i, d in enumerate(_expect_list(top.get("inputs"), "inputs")):
        where = f"inputs[{i}]"
        d = _expect_object(d, where)
        dep = _dep_type(_field(d, "depType", "dep_type", where), f"{where}.depType")
        pref = _field(d, "partitionRef", "partition_ref", where)
        if pref is None:
            raise ProtocolError(f"{where}: `partitionRef` is missing")
        inputs.append(Input(_partition_ref(pref, f"{where}.partitionRef"), dep))
    args = _expect_list(top.get("args"), "args")
    for i, a in enumerate(args):
        if not isinstance(a, str):
            raise ProtocolError(f"args[{i}]: expected a string, got {_kind(a)}")
    env_obj = top.get("env")
    env: Dict[str, str] = {}
    if env_obj is not None:
        for k, v in _expect_object(env_obj, "env").items():
            if not isinstance(v, str):
                raise ProtocolError(f"env.{k}: expected a string, got {_kind(v)}")
            env[k] = v
    return outputs, inputs, list(args), env
