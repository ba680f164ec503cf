"""A client of ``databuild serve``'s HTTP JSON API, standard library only.

Every call is one HTTP request (``urllib``); the event streams are Server-Sent Events
read as they arrive. Errors are typed: :class:`ConnectionFailed` when the service cannot
be reached, an :class:`ApiError` subclass carrying the service's error code, and
:class:`WaitTimeout`, :class:`PartitionFailed`, :class:`BuildFailed` for waits.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

from ._sse import read_sse
from ._types import (
    AVAILABLE,
    FAILED,
    BuildEvent,
    BuildFailed,
    BuildState,
    ConnectionFailed,
    Outcome,
    Partition,
    PartitionEvent,
    PartitionFailed,
    RequestResult,
    Run,
    WaitTimeout,
    Why,
    api_error,
)

Refs = Union[str, Sequence[str]]


def _refs(refs: Refs) -> List[str]:
    return [refs] if isinstance(refs, str) else list(refs)


class Client:
    """A running ``databuild serve`` at ``url`` (e.g. ``http://127.0.0.1:50051``).

    ``token`` is sent as ``Authorization: Bearer <token>`` with every request.
    ``timeout`` bounds each request's connection and each read (not a whole stream).
    """

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        *,
        timeout: float = 30.0,
        client_id: Optional[str] = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"the service URL must be http://HOST:PORT or https://HOST:PORT (got {url!r})")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.client_id = client_id

    # --- transport ---------------------------------------------------------------

    def _open(self, method: str, path: str, body: Optional[Any] = None, timeout: Optional[float] = None,
              accept: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", accept)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token is not None:
            req.add_header("Authorization", f"Bearer {self.token}")
        if self.client_id:
            req.add_header("X-Databuild-Client", self.client_id)
        try:
            return urllib.request.urlopen(req, timeout=self.timeout if timeout is None else timeout)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                j = json.loads(raw)
                code, message = j["code"], j["message"]
            except (ValueError, KeyError, TypeError):
                code, message = "http_" + str(e.code), raw.decode("utf-8", "replace").strip() or str(e.reason)
            raise api_error(code, message, e.code) from None
        except urllib.error.URLError as e:
            raise ConnectionFailed(self.url, str(e.reason)) from None
        except (ConnectionError, socket.timeout) as e:
            raise ConnectionFailed(self.url, str(e) or type(e).__name__) from None

    def _json(self, method: str, path: str, body: Optional[Any] = None) -> Any:
        with self._open(method, path, body) as resp:
            try:
                return json.loads(resp.read())
            except (ConnectionError, socket.timeout) as e:
                raise ConnectionFailed(self.url, str(e) or type(e).__name__) from None

    @staticmethod
    def _query(**params: Any) -> str:
        pairs = []
        for k, v in params.items():
            if v is None or v is False:
                continue
            for one in v if isinstance(v, (list, tuple)) else [v]:
                pairs.append((k, "true" if one is True else str(one)))
        return "?" + urllib.parse.urlencode(pairs) if pairs else ""

    # --- builds ------------------------------------------------------------------

    def submit(self, refs: Refs, *, force: bool = False) -> "BuildHandle":
        """Starts a build of ``refs`` and everything upstream, answering at once with
        its handle (``POST /api/v1/builds``)."""
        body = {"outputs": [{"str": r} for r in _refs(refs)]}
        j = self._json("POST", "/api/v1/builds" + self._query(force=force), body)
        return BuildHandle(self, j["jobGraphRunId"])

    def build(self, refs: Refs, *, force: bool = False, timeout: Optional[float] = None) -> Outcome:
        """Builds ``refs`` and waits for the build's end. Raises :class:`BuildFailed`
        (naming each failed partition's root cause) if something failed, and
        :class:`WaitTimeout` after ``timeout`` seconds (the build goes on)."""
        return self.submit(refs, force=force).wait(timeout)

    def request(
        self,
        ref: str,
        *,
        allow_delegation: bool = True,
        timeout_seconds: int = 0,
        client_id: Optional[str] = None,
    ) -> RequestResult:
        """Asks for one partition: ``available``, ``delegated`` to the build in flight,
        or ``building`` (a build was started). With ``timeout_seconds`` the service
        waits up to that long for it first."""
        body: Dict[str, Any] = {
            "partitionRef": {"str": ref},
            "options": {"allowDelegation": allow_delegation, "timeoutSeconds": timeout_seconds},
        }
        if client_id or self.client_id:
            body["clientId"] = client_id or self.client_id
        j = self._json("POST", "/api/v1/partitions/request", body).get("result") or {}
        if "available" in j:
            return RequestResult(ref, "available", manifest=j["available"].get("manifest"))
        for kind in ("delegated", "building"):
            if kind in j:
                return RequestResult(ref, kind, run_id=j[kind].get("jobGraphRunId", ""))
        raise api_error("internal", f"the service's answer to a request for `{ref}` has no result: {j}")

    # --- partitions and runs -----------------------------------------------------

    def status(self, ref: str) -> Optional[Partition]:
        """The partition's latest state, or None if the event log has none."""
        found = self.partitions_of([ref])
        return found.get(ref)

    def partitions_of(self, refs: Iterable[str]) -> Dict[str, Partition]:
        """The latest state of each of ``refs`` the event log knows, by ref."""
        wanted = list(refs)
        j = self._json("GET", "/api/v1/partitions" + self._query(ref=wanted))
        return {p.ref: p for p in map(Partition.from_json, j.get("partitions", []))}

    def partitions(
        self,
        *,
        status: Optional[Union[str, Sequence[str]]] = None,
        prefix: Optional[str] = None,
        pattern: Optional[str] = None,
        limit: int = 100,
        offset: int = 0,
    ) -> List[Partition]:
        """Partitions and their latest status: ``status`` such as ``available`` or
        ``failed`` (one or several), refs starting with ``prefix``, or matching
        ``pattern`` whole (``*`` stands for any text)."""
        q = self._query(status=status, prefix=prefix, pattern=pattern, limit=limit, offset=offset)
        return [Partition.from_json(p) for p in self._json("GET", "/api/v1/partitions" + q).get("partitions", [])]

    def why(self, ref: str) -> Why:
        """Why the partition is missing, stale or failed, down to the root cause."""
        j = self._json("GET", "/api/v1/partitions/why" + self._query(ref=ref))
        return Why(ref=j["partitionRef"], why=j["why"], root_cause=j["rootCause"])

    def runs(self, *, limit: int = 20, offset: int = 0, status: Optional[Union[str, Sequence[str]]] = None,
             label: Optional[str] = None) -> List[Run]:
        """Graph runs, newest first (``status`` such as ``GRAPH_FAILED``)."""
        q = self._query(limit=limit, offset=offset, status=status, label=label)
        return [Run.from_json(r) for r in self._json("GET", "/api/v1/runs" + q).get("runs", [])]

    def wait_for(self, refs: Refs, timeout: float, *, poll: float = 0.1) -> Dict[str, Partition]:
        """Waits until every one of ``refs`` is AVAILABLE and returns their states.
        Raises :class:`PartitionFailed` (with ``why`` down to the root cause) as soon as
        one is FAILED, and :class:`WaitTimeout` (naming the refs still pending) after
        ``timeout`` seconds. It does not start builds: see :meth:`build`, :meth:`request`."""
        wanted = _refs(refs)
        deadline = time.monotonic() + timeout
        delay = poll
        while True:
            found = self.partitions_of(wanted)
            for r in wanted:
                p = found.get(r)
                if p is not None and p.status == FAILED:
                    raise PartitionFailed(self.why(r))
            if all(r in found and found[r].status == AVAILABLE for r in wanted):
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                pending = {r: found[r].status if r in found else "PARTITION_UNKNOWN"
                           for r in wanted if r not in found or found[r].status != AVAILABLE}
                raise WaitTimeout("partitions", timeout, pending)
            time.sleep(min(delay, left))
            delay = min(delay * 2, 1.0)

    # --- event streams -----------------------------------------------------------

    def events(
        self,
        *,
        refs: Optional[Refs] = None,
        status: Optional[Union[str, Sequence[str]]] = None,
        since: Optional[str] = None,
    ) -> Iterator[PartitionEvent]:
        """Partition events as they are appended (Server-Sent Events), forever or until
        the service closes the stream; ``since`` (RFC 3339) first replays the events
        since that time. Close the iterator (or break out of the loop) to stop."""
        q = self._query(ref=None if refs is None else _refs(refs), status=status, since=since)
        resp = self._open("GET", "/api/v1/events/stream" + q, timeout=None, accept="text/event-stream")
        with resp:
            for m in read_sse(resp):
                if m.event == "error":
                    j = json.loads(m.data)
                    raise api_error(j.get("code", "internal"), j.get("message", m.data))
                if m.event == "partitionEvent":
                    yield PartitionEvent.from_json(json.loads(m.data))

    def build_events(self, run_id: str, *, after: int = 0) -> Iterator[BuildEvent]:
        """A build's events from the start (or after log position ``after``), then live,
        ending with an ``end`` event carrying its state."""
        q = self._query(after=after or None)
        path = f"/api/v1/builds/{urllib.parse.quote(run_id, safe='')}/events" + q
        resp = self._open("GET", path, timeout=None, accept="text/event-stream")
        with resp:
            for m in read_sse(resp):
                j = json.loads(m.data)
                if m.event == "error":
                    raise api_error(j.get("code", "internal"), j.get("message", m.data))
                if m.event == "end":
                    yield BuildEvent("end", 0, state=BuildState.from_json(j))
                    return
                seq = int(m.id or j.get("seq", 0))
                if m.event == "partitionEvent":
                    yield BuildEvent(m.event, seq, partition=PartitionEvent.from_json(j["partitionEvent"]))
                elif m.event == "jobGraphRunEvent":
                    yield BuildEvent(m.event, seq, run_event=j["jobGraphRunEvent"])

    def build_state(self, run_id: str) -> BuildState:
        """A build's state (``GET /api/v1/builds/{run_id}``)."""
        return BuildState.from_json(self._json("GET", f"/api/v1/builds/{urllib.parse.quote(run_id, safe='')}"))

    def __repr__(self) -> str:
        return f"Client({self.url!r})"


class BuildHandle:
    """A build started by :meth:`Client.submit`."""

    def __init__(self, client: Client, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def state(self) -> BuildState:
        """The build's state now."""
        return self.client.build_state(self.run_id)

    def events(self) -> Iterator[BuildEvent]:
        """The build's events as they happen, ending with ``end``."""
        return self.client.build_events(self.run_id)

    def wait(self, timeout: Optional[float] = None, *, poll: float = 0.1) -> Outcome:
        """Waits for the build's end and returns its outcome. Raises
        :class:`BuildFailed` if a partition failed (with each one's root cause),
        :class:`ApiError` if databuild could not proceed, and :class:`WaitTimeout` after
        ``timeout`` seconds (the build goes on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll
        while True:
            s = self.state()
            if s.ended:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"build `{self.run_id}`", timeout or 0.0, {})
            left = delay if deadline is None else min(delay, max(deadline - time.monotonic(), 0.0))
            time.sleep(left)
            delay = min(delay * 2, 1.0)
        if s.state == "error":
            raise api_error(s.error_code or "internal", s.error_message or f"build `{self.run_id}` could not proceed")
        outcome = s.outcome
        if outcome is None:
            # A build this service did not run: its outcome is not kept, only its status.
            outcome = Outcome(self.run_id, s.state == "succeeded", [], [], [], [], 0, False)
        if not outcome.success:
            raise BuildFailed(outcome, [self.client.why(f.ref) for f in outcome.failed])
        return outcome

    def __repr__(self) -> str:
        return f"BuildHandle({self.run_id!r})"
