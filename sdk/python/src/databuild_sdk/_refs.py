"""Partition refs and the output patterns that parse them into named groups."""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

#: Longest partition ref, in UTF-8 bytes.
MAX_REF_BYTES = 4096

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def ref_problem(ref: str) -> Optional[str]:
    """Why `ref` is not a valid partition ref, or ``None`` if it is.

    A ref is any non-empty UTF-8 string without control characters, at most 4096 bytes.
    """
    if not isinstance(ref, str):
        return f"a partition ref must be a string, not {type(ref).__name__}"
    if ref == "":
        return "a partition ref must not be empty"
    if len(ref.encode("utf-8", "surrogatepass")) > MAX_REF_BYTES:
        return f"a partition ref must be at most {MAX_REF_BYTES} bytes"
    m = _CONTROL.search(ref)
    if m:
        return f"a partition ref must not contain control characters (found {m.group()!r})"
    return None


class Ref:
    """A partition ref parsed by one of a job's output patterns.

    ``ref.str`` is the ref itself (also ``str(ref)``); the pattern's named groups are
    attributes (``ref.date``) and items (``ref["date"]``), and all of them are in
    ``ref.groups``. ``ref.pattern`` is the pattern that matched and ``ref.name`` its name
    when the job's patterns were given as a mapping (else its index, as a string).
    """

    __slots__ = ("str", "groups", "pattern", "name")

    def __init__(
        self,
        ref: str,
        groups: Optional[Mapping[str, str]] = None,
        pattern: str = "",
        name: str = "",
    ) -> None:
        self.str: str = ref
        self.groups: Dict[str, str] = dict(groups or {})
        self.pattern: str = pattern
        self.name: str = name

    def __getattr__(self, group: str) -> str:
        # Only called for names that are not slots: the pattern's named groups.
        if group in Ref.__slots__ or group.startswith("__"):
            raise AttributeError(group)
        try:
            return self.groups[group]
        except KeyError:
            raise AttributeError(self._no_group(group)) from None

    def __getitem__(self, group: str) -> str:
        try:
            return self.groups[group]
        except KeyError:
            raise KeyError(self._no_group(group)) from None

    def _no_group(self, group: str) -> str:
        have = ", ".join(f"`{g}`" for g in self.groups) or "none"
        return (
            f"ref `{self.str}` has no named group `{group}` "
            f"(its pattern `{self.pattern}` has: {have})"
        )

    def __str__(self) -> str:
        return self.str

    def __repr__(self) -> str:
        return f"Ref({self.str!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Ref):
            return self.str == other.str
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.str)


PatternSpec = Union[str, Sequence[str], Mapping[str, str]]


class Patterns:
    """A job's output patterns: anchored regular expressions with named groups."""

    def __init__(self, spec: PatternSpec) -> None:
        if isinstance(spec, str):
            items: List[Tuple[str, Any]] = [("0", spec)]
        elif isinstance(spec, Mapping):
            items = [(str(k), v) for k, v in spec.items()]
        else:
            items = [(str(i), p) for i, p in enumerate(spec)]
        if not items:
            raise ValueError("a job needs at least one output pattern")
        self._compiled = []
        for name, p in items:
            if not isinstance(p, str):
                raise TypeError(f"output pattern {name} must be a string, not {type(p).__name__}")
            try:
                self._compiled.append((name, p, re.compile(p)))
            except re.error as e:
                raise ValueError(f"output pattern `{p}` is not a valid regular expression: {e}") from None

    @property
    def sources(self) -> List[str]:
        """The patterns as written."""
        return [p for _, p, _ in self._compiled]

    def describe(self) -> str:
        """The patterns as "[`a`, `b`]" for messages."""
        return "[" + ", ".join(f"`{p}`" for p in self.sources) + "]"

    def parse(self, ref: str) -> Optional[Ref]:
        """`ref` parsed by the first pattern that matches all of it, else ``None``."""
        for name, source, rx in self._compiled:
            m = rx.fullmatch(ref)
            if m:
                groups = {k: v for k, v in m.groupdict().items() if v is not None}
                return Ref(ref, groups, source, name)
        return None


def ref_list(refs: Iterable[object]) -> str:
    """Refs as "[`a`, `b`]", eliding past 10, for messages."""
    items = [str(r) for r in refs]
    shown = ", ".join(f"`{r}`" for r in items[:10])
    if len(items) > 10:
        shown += f", ... {len(items) - 10} more"
    return f"[{shown}]"
