"""The `alertbridge` command in a process of its own, as an operator runs it, without paying Python's
start-up and alertbridge's imports (about a second of CPU) for every server and every CLI call.

A forkserver (multiprocessing's, one per test process) imports alertbridge once; each run is a fork
of it that takes the run's arguments, working directory, environment and standard streams, then calls
the same `main()` that `python -m alertbridge` calls. It is still a separate process, with its own
pid, signals and exit status: a test can SIGKILL a server mid-delivery exactly as before.
`ALERTBRIDGE_TEST_FORK=0` runs `python -m alertbridge` instead (to rule the forkserver out)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

FORK = os.environ.get("ALERTBRIDGE_TEST_FORK", "1") != "0"

# Imported once, in the forkserver: what `serve` and the CLI's commands import.
_PRELOAD = ["alertbridge.cli", "alertbridge.app", "alertbridge.sources.thena_setup", "tests.processes"]
_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(_PRELOAD)


def _main(args: list[str], cwd: str, env: dict[str, str], stdout: str, stderr: str) -> None:
    """In the forked child: become `alertbridge ARGS` run in `cwd` with exactly `env`."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    # A fresh stream on each descriptor: line-buffered (a test reads a server's log while it runs).
    for fd, path in ((1, stdout), (2, stderr)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
    sys.argv = ["alertbridge", *args]
    # As a fresh interpreter has them (the forkserver's parent may have changed them).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from alertbridge.cli import main

    main()


class Process:
    """A running `alertbridge` (the parts of `subprocess.Popen` the tests use)."""

    def __init__(self, args: Sequence[str], *, cwd: Path, env: Mapping[str, str], stdout: Path, stderr: Path) -> None:
        self.args = list(args)
        self.returncode: int | None = None
        self._forked: multiprocessing.process.BaseProcess | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        if FORK:
            self._forked = _context.Process(
                target=_main, args=(self.args, str(cwd), dict(env), str(stdout), str(stderr)), daemon=True
            )
            self._forked.start()
            assert self._forked.pid is not None
            self.pid = self._forked.pid
        else:
            with stdout.open("ab") as out, stderr.open("ab") as err:
                self._popen = subprocess.Popen(
                    [sys.executable, "-m", "alertbridge", *args],
                    cwd=cwd,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                )
            self.pid = self._popen.pid

    def poll(self) -> int | None:
        if self._popen is not None:
            self.returncode = self._popen.poll()
        else:
            assert self._forked is not None
            self.returncode = self._forked.exitcode
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self._popen is not None:
            self.returncode = self._popen.wait(timeout)
            return self.returncode
        assert self._forked is not None
        self._forked.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start(args: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path) -> Process:
    """`alertbridge ARGS` running in the background, its output (both streams) appended to `log`."""
    return Process(args, cwd=cwd, env=env, stdout=log, stderr=log)


def run(
    args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`alertbridge ARGS` to its end, as `subprocess.run(..., capture_output=True, text=True)` gives it
    (standard input is empty)."""
    with tempfile.TemporaryDirectory(prefix="alertbridge-run-") as scratch:
        out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
        process = Process(args, cwd=cwd or Path.cwd(), env=env, stdout=out, stderr=err)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            raise
        read = lambda path: path.read_text(errors="replace") if path.exists() else ""  # noqa: E731
        return subprocess.CompletedProcess(["alertbridge", *args], code, read(out), read(err))
