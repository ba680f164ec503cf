"""A job: its output patterns, its config and exec functions, and the dispatch of
``<job> config <ref>...`` and ``<job> exec <args>...``."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import sys
import traceback
from typing import (
    Callable,
    Dict,
    Hashable,
    List,
    Mapping,
    NoReturn,
    Optional,
    Sequence,
    TextIO,
    Tuple,
    TypeVar,
    Union,
)

from ._proto import (
    Config,
    Input,
    JobConfig,
    ProtocolError,
    decode_job_config,
    encode_config,
    materialize,
)
from ._refs import PatternSpec, Patterns, Ref, ref_list, ref_problem

#: Exit code of a config or exec that failed (bad refs, an exception, a ConfigError).
EXIT_FAILED = 1
#: Exit code of a call that does not follow the protocol (bad command line or JSON).
EXIT_USAGE = 2

ConfigFn = Callable[[List[Ref]], Union[Config, Sequence[Config]]]
ExecFn = Callable[[JobConfig], None]
GroupBy = Union[None, str, Sequence[str], Callable[[Ref], Hashable]]
F = TypeVar("F", bound=Callable[..., object])


class ConfigError(Exception):
    """Raise from a config function to refuse the refs it was given, with a message for
    the user (printed without a traceback), e.g. ``ConfigError("no data for 2014-01-01")``."""


class _Fail(Exception):
    """A failure already described: exit with `code` after printing `message`."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class Job:
    """A databuild job written in Python.

    ``name`` names the job in messages (use its label in ``databuild.toml``).
    ``outputs`` are the output patterns: anchored regular expressions whose named groups
    become attributes of each :class:`Ref` (``ref.date``); a string, a list, or a mapping
    from a name to a pattern (then ``ref.name`` tells which one matched). Keep them in step
    with the job's ``produces`` in ``databuild.toml``.

    ``requires`` lists Python modules the job needs (a mapping gives the package to
    install for each module, e.g. ``{"yaml": "PyYAML"}``); both ``config`` and ``exec``
    fail with a message naming a missing one before any of the job's code runs.

    ``group_by`` decides which requested refs one call of the config function gets: by
    default each ref alone; a named group (or several) puts refs with equal values
    together; or a function from a :class:`Ref` to a key.

    Example::

        job = Job("daily", outputs=r"daily/date=(?P<date>\\d{4}-\\d{2}-\\d{2})")

        @job.config
        def configure(outputs):
            (out,) = outputs
            return Config(inputs=[f"raw/date={out.date}"], args=[out.date])

        @job.exec
        def build(config):
            ...

        if __name__ == "__main__":
            job.main()
    """

    def __init__(
        self,
        name: str,
        outputs: PatternSpec,
        *,
        requires: Union[Sequence[str], Mapping[str, str]] = (),
        group_by: GroupBy = None,
    ) -> None:
        self.name = name
        self.patterns = Patterns(outputs)
        if isinstance(requires, Mapping):
            self.requires: Dict[str, str] = dict(requires)
        else:
            self.requires = {m: m.split(".")[0] for m in requires}
        self.group_by = group_by
        self._config: Optional[ConfigFn] = None
        self._exec: Optional[ExecFn] = None

    # --- declaring ------------------------------------------------------------------

    def config(self, fn: F) -> F:
        """Decorator: the config function. It gets a list of :class:`Ref` (one group, see
        ``group_by``) and returns a :class:`Config` or a list of them. Without one, each
        ref is configured with no inputs and no args."""
        self._config = fn  # type: ignore[assignment]
        return fn

    def exec(self, fn: F) -> F:
        """Decorator: the exec function. It gets a :class:`JobConfig` and builds every
        output; returning means success, raising means failure."""
        self._exec = fn  # type: ignore[assignment]
        return fn

    def parse(self, ref: str) -> Ref:
        """`ref` parsed by the job's patterns; ``ValueError`` if it is not one of them."""
        parsed, problem = self._parse(ref)
        if parsed is None:
            raise ValueError(f"`{ref}`: {problem}")
        return parsed

    def _parse(self, ref: str) -> Tuple[Optional[Ref], str]:
        problem = ref_problem(ref)
        if problem:
            return None, f"not a valid partition ref: {problem}"
        parsed = self.patterns.parse(ref)
        if parsed is None:
            return None, f"it matches none of the job's output patterns {self.patterns.describe()}"
        return parsed, ""

    # --- running --------------------------------------------------------------------

    def main(self, argv: Optional[Sequence[str]] = None) -> NoReturn:
        """Runs the job with the process's arguments and exits with its code."""
        # Line by line, so that the job's log shows output as it happens and in order
        # with stderr (stdout to a pipe is block-buffered otherwise).
        for stream in (sys.stdout, sys.stderr):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(line_buffering=True)
        sys.exit(self.run(sys.argv[1:] if argv is None else argv))

    def run(
        self,
        argv: Sequence[str],
        environ: Optional[Mapping[str, str]] = None,
        stdin: Optional[TextIO] = None,
        stdout: Optional[TextIO] = None,
        stderr: Optional[TextIO] = None,
    ) -> int:
        """Runs ``config <ref>...`` or ``exec <args>...`` and returns the exit code: 0
        success, 1 failed (see the message on stderr), 2 not called as the protocol says."""
        env = os.environ if environ is None else environ
        out = sys.stdout if stdout is None else stdout
        err = sys.stderr if stderr is None else stderr
        inp = sys.stdin if stdin is None else stdin
        try:
            if not argv or argv[0] in ("-h", "--help", "help"):
                usage = self._usage()
                if argv:
                    print(usage, file=out)
                    return 0
                raise _Fail(f"no command given\n{usage}", EXIT_USAGE)
            command, rest = argv[0], list(argv[1:])
            if command == "config" and rest == ["--persistent"]:
                return self._run_config_persistent(inp, out, err)
            if command == "config":
                return self._run_config(rest or _refs_from_file(env), out, err)
            if command == "exec":
                return self._run_exec(rest, env, inp, err)
            raise _Fail(f"unknown command `{command}`\n{self._usage()}", EXIT_USAGE)
        except _Fail as f:
            print(f"error: job `{self.name}`: {f}", file=err)
            return f.code

    def _usage(self) -> str:
        return (
            f"usage: <job> config <partition ref>...   print the JobConfigureResponse for these refs\n"
            f"       <job> config --persistent         answer each `{{\"refs\": [...]}}` line on stdin "
            f"with one JobConfigureResponse line\n"
            f"       <job> exec [<args>...]             build the outputs of the JobConfig in "
            f"DATABUILD_JOB_CONFIG (or on stdin)\n"
            f"outputs of job `{self.name}`: {self.patterns.describe()}"
        )

    def _check_requires(self) -> None:
        missing = []
        for module, package in self.requires.items():
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append((module, package))
        if not missing:
            return
        py = sys.executable or "python3"
        packages = " ".join(p for _, p in missing)
        names = ", ".join(f"`{p}`" for _, p in missing)
        noun, it = ("package", "it") if len(missing) == 1 else ("packages", "them")
        raise _Fail(
            f"needs the Python {noun} {names}, not installed for `{py}`; "
            f"install {it} with `{py} -m pip install {packages}`"
        )

    # --- config ---------------------------------------------------------------------

    def _run_config(self, refs: List[str], out: TextIO, err: TextIO) -> int:
        if not refs:
            raise _Fail(
                "`config` needs at least one partition ref, e.g. "
                f"`config <ref>` for a ref matching {self.patterns.describe()}",
                EXIT_USAGE,
            )
        parsed: List[Ref] = []
        bad: List[str] = []
        for r in dict.fromkeys(refs):  # each requested ref once, in order
            ref, problem = self._parse(r)
            if ref is None:
                bad.append(f"cannot configure `{r}`: {problem}")
            else:
                parsed.append(ref)
        if bad:
            raise _Fail("; ".join(bad) + "; ask this job only for refs it produces")
        self._check_requires()

        configs: List[Dict[str, object]] = []
        producer: Dict[str, int] = {}
        for group in self._groups(parsed):
            for cfg in self._call_config(group, err):
                n = len(configs) + 1
                outputs = self._config_outputs(cfg, group, n)
                for o in outputs:
                    if o in producer:
                        raise _Fail(
                            f"configs #{producer[o]} and #{n} both produce `{o}`; "
                            "a ref must be an output of exactly one config"
                        )
                    producer[o] = n
                configs.append(
                    encode_config(
                        outputs, self._config_inputs(cfg, group), self._config_args(cfg, group),
                        self._config_env(cfg, group),
                    )
                )
        missing = [r.str for r in parsed if r.str not in producer]
        if missing:
            raise _Fail(
                f"config returned no config producing {ref_list(missing)}; "
                "every requested ref must be an output of exactly one config"
            )
        json.dump({"configs": configs}, out, separators=(",", ":"))
        out.write("\n")
        return 0

    def _run_config_persistent(self, inp: TextIO, out: TextIO, err: TextIO) -> int:
        """``config --persistent`` (``config_mode = "persistent"`` in databuild.toml): one
        request per line on stdin, ``{"refs": [...]}``, each answered with one
        ``JobConfigureResponse`` line on stdout, until stdin is closed. A request that
        fails ends the process with the failure's code (the error is on stderr)."""
        for n, line in enumerate(inp, start=1):
            if not line.strip():
                continue
            try:
                request = json.loads(line)
                refs = request["refs"]
                if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
                    raise TypeError("`refs` is not a list of strings")
            except (ValueError, KeyError, TypeError) as e:
                raise _Fail(
                    f"`config --persistent`: request line {n} is not "
                    f'{{"refs": ["<ref>", ...]}}: {e}',
                    EXIT_USAGE,
                ) from None
            code = self._run_config(refs, out, err)
            out.flush()
            if code != 0:
                return code
        return 0

    def _groups(self, refs: List[Ref]) -> List[List[Ref]]:
        gb = self.group_by
        if gb is None:
            return [[r] for r in refs]
        if isinstance(gb, str):
            names: Tuple[str, ...] = (gb,)
            key: Callable[[Ref], Hashable] = lambda r: tuple(r.groups.get(n) for n in names)
        elif callable(gb):
            key = gb
        else:
            names = tuple(gb)
            key = lambda r: tuple(r.groups.get(n) for n in names)
        groups: Dict[Hashable, List[Ref]] = {}
        for r in refs:
            groups.setdefault(key(r), []).append(r)
        return list(groups.values())

    def _call_config(self, group: List[Ref], err: TextIO) -> List[Config]:
        if self._config is None:
            return [Config()]
        try:
            # stdout carries the JSON answer: anything the config function prints goes
            # to stderr instead.
            with contextlib.redirect_stdout(err):
                result = self._config(list(group))
        except ConfigError as e:
            raise _Fail(f"cannot configure {ref_list(group)}: {e}") from None
        except Exception as e:  # the job's own bug: show where
            _print_user_traceback(e, err)
            raise _Fail(
                f"config for {ref_list(group)} raised {type(e).__name__}: {e}"
            ) from None
        if isinstance(result, Config):
            return [result]
        if isinstance(result, (list, tuple)) and all(isinstance(c, Config) for c in result):
            return list(result)
        raise _Fail(
            f"config for {ref_list(group)} returned {type(result).__name__}; "
            "return a databuild_sdk.Config or a list of them"
        )

    def _config_outputs(self, cfg: Config, group: List[Ref], n: int) -> List[str]:
        if cfg.outputs is None:
            return [r.str for r in group]
        if isinstance(cfg.outputs, (str, Ref)):
            raise _Fail(
                f"config for {ref_list(group)} returned `outputs` as one ref; give a list"
            )
        outputs = [str(o) for o in cfg.outputs]
        if not outputs:
            raise _Fail(f"config for {ref_list(group)} returned config #{n} with no outputs")
        for o in outputs:
            ref, problem = self._parse(o)
            if ref is None:
                raise _Fail(
                    f"config for {ref_list(group)} returned output `{o}`, but {problem}; "
                    "a job may only produce refs its patterns (and `produces` in "
                    "databuild.toml) match"
                )
        return list(dict.fromkeys(outputs))

    def _config_inputs(self, cfg: Config, group: List[Ref]) -> List[Input]:
        if isinstance(cfg.inputs, (str, Ref, Input)):
            raise _Fail(f"config for {ref_list(group)} returned `inputs` as one ref; give a list")
        inputs = []
        for i in cfg.inputs:
            if isinstance(i, Input):
                dep = i
            elif isinstance(i, (str, Ref)):
                dep = materialize(i)
            else:
                raise _Fail(
                    f"config for {ref_list(group)} returned input {i!r} "
                    f"({type(i).__name__}); give a ref string, query(ref) or materialize(ref)"
                )
            problem = ref_problem(dep.ref)
            if problem:
                raise _Fail(f"config for {ref_list(group)} returned an invalid input {dep.ref!r}: {problem}")
            inputs.append(dep)
        return inputs

    def _config_args(self, cfg: Config, group: List[Ref]) -> List[str]:
        if isinstance(cfg.args, str):
            raise _Fail(f"config for {ref_list(group)} returned `args` as one string; give a list")
        for a in cfg.args:
            if not isinstance(a, str):
                raise _Fail(
                    f"config for {ref_list(group)} returned arg {a!r} ({type(a).__name__}); "
                    "args must be strings"
                )
        return list(cfg.args)

    def _config_env(self, cfg: Config, group: List[Ref]) -> Dict[str, str]:
        for k, v in cfg.env.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise _Fail(
                    f"config for {ref_list(group)} returned env {k!r}: {v!r}; "
                    "env names and values must be strings"
                )
            if k == "" or "=" in k or "\0" in k or "\0" in v:
                raise _Fail(
                    f"config for {ref_list(group)} returned env {k!r}, "
                    "which is not a valid environment variable"
                )
        return dict(cfg.env)

    # --- exec -----------------------------------------------------------------------

    def _run_exec(
        self, argv_args: List[str], env: Mapping[str, str], stdin: TextIO, err: TextIO
    ) -> int:
        source = "DATABUILD_JOB_CONFIG"
        text = env.get("DATABUILD_JOB_CONFIG", "")
        if not text.strip():
            source = "stdin"
            text = "" if _is_tty(stdin) else stdin.read()
        if not text.strip():
            raise _Fail(
                "`exec` got no JobConfig: DATABUILD_JOB_CONFIG is not set and stdin is empty "
                "(databuild sets both); to run it by hand, pipe one in, e.g. "
                "`<job> config <ref> | <job> exec`",
                EXIT_USAGE,
            )
        try:
            outputs, inputs, args, cfg_env = decode_job_config(json.loads(text))
        except json.JSONDecodeError as e:
            raise _Fail(f"the JobConfig in {source} is not valid JSON: {e}", EXIT_USAGE) from None
        except ProtocolError as e:
            raise _Fail(f"the JobConfig in {source} is not a JobConfig: {e}", EXIT_USAGE) from None
        if not outputs:
            raise _Fail(f"the JobConfig in {source} has no outputs; there is nothing to build", EXIT_USAGE)
        parsed = []
        for o in outputs:
            ref, problem = self._parse(o)
            if ref is None:
                raise _Fail(f"`exec` was asked to build `{o}`, but {problem}")
            parsed.append(ref)
        if argv_args and argv_args != args:
            print(
                f"warning: job `{self.name}`: command-line args {argv_args} differ from the "
                f"JobConfig's args {args}; using the JobConfig's",
                file=err,
            )
        self._check_requires()
        if self._exec is None:
            raise _Fail("has no exec function; declare one with `@job.exec`", EXIT_USAGE)
        config = JobConfig(
            outputs=parsed,
            inputs=inputs,
            args=args,
            env=cfg_env,
            job_run_id=env.get("DATABUILD_JOB_RUN_ID") or None,
            graph_run_id=env.get("DATABUILD_GRAPH_RUN_ID") or None,
        )
        try:
            self._exec(config)
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                return e.code or 0
            print(e.code, file=err)
            return EXIT_FAILED
        except KeyboardInterrupt:
            return 130
        except BaseException:
            print(f"job `{self.name}` failed building {ref_list(parsed)}:", file=err)
            # The traceback's last line (the exception) is the last line on stderr, which
            # databuild shows as the reason the partitions failed.
            _print_user_traceback(sys.exc_info()[1], err)
            err.flush()
            return EXIT_FAILED
        if config.written and env.get("DATABUILD_DIGESTS"):
            try:
                digests = {ref: _digest(path) for ref, path in config.written.items()}
            except OSError as e:
                print(f"job `{self.name}`: cannot hash an output it wrote: {e}", file=err)
                return EXIT_FAILED
            with open(env["DATABUILD_DIGESTS"], "w", encoding="utf-8") as f:
                json.dump(digests, f)
        return 0


def _digest(path: str) -> str:
    """``sha256:<hex>`` of the bytes at ``path``: a file's, or a directory's files' (with
    their relative paths), in name order."""
    h = hashlib.sha256()
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                h.update(os.path.relpath(full, path).encode() + b"\0")
                with open(full, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
    else:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def _print_user_traceback(e: Optional[BaseException], err: TextIO) -> None:
    """Prints `e`'s traceback without the SDK's own frame (the caller of the job's
    function), so that it starts in the job's code. The last line printed is always
    ``<exception type>: <first line of its message>``: databuild quotes the last line
    of stderr as the reason a job failed, and a multi-line message (or a note) would
    otherwise end the traceback with something else."""
    if e is None:
        return
    tb = e.__traceback__
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(e), e, tb))
    err.write(text)
    name = type(e).__qualname__
    if type(e).__module__ not in ("builtins", "__main__"):
        name = f"{type(e).__module__}.{name}"
    message = str(e).strip()
    summary = f"{name}: {message.splitlines()[0]}" if message else name
    lines = text.rstrip().splitlines()
    if not lines or lines[-1] != summary:
        print(summary, file=err)


def _is_tty(f: TextIO) -> bool:
    try:
        return f.isatty()
    except (AttributeError, ValueError):
        return False


def _refs_from_file(env: Mapping[str, str]) -> List[str]:
    """The refs in the file named by ``DATABUILD_REFS_FILE``, one per line: databuild
    always writes them there, and leaves them off the command line when there are many."""
    path = env.get("DATABUILD_REFS_FILE")
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\r\n") for line in f if line.strip()]
    except OSError as e:
        raise _Fail(f"cannot read the refs file `{path}` (DATABUILD_REFS_FILE): {e}", EXIT_USAGE)
