"""Run one function in a fresh worker process and get its result back, or a failure that says how it died.

Why a process per cell: a cell that runs after others would otherwise inherit whatever they left allocated
(and, on CPU, their allocator's state, which changes speed), and a cell that segfaults or is killed by the
OOM killer must become one failed row, not a dead grid. Workers come from a ``forkserver`` that has
imported torch and adaptsam once, so a cell starts in milliseconds rather than after a 2-second import, and
no torch thread pool is ever forked. Each worker watches the process that started it and exits when that
process is gone (a bench killed with ``kill -9`` leaves no orphan computing on).

Each worker also tells glibc to keep freed memory (:func:`keep_freed_memory`): by default every tensor above
a moving threshold is mmapped and unmapped, so a large graph pays page faults for its activations on every
pass, and how many depends on what ran earlier in the process. Measured on 2 cores (LiteMedSAM, batch 4,
frozen graphs timed in interleaved rounds, three processes each): upsample R64 3.5–3.7 s → 2.0 s per pass,
native R128 730–745 → 530–550 ms, native R64 unchanged at ~160 ms; a decoder-only upsample cell trained 30%
faster. Native R128's speed relative to upsample R64 had come out 4.75 and 5.83 in two benches of one
preset; it is the allocator's noise, not the graphs'.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PRELOAD = ["adaptsam.bench._preload"]
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and never hand freed heap back to the kernel, in this process
    (a worker's whole life is one cell, so holding on to its peak costs nothing). False where glibc's
    ``mallopt`` is not there (musl, macOS): the default allocator is then used."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mapped = libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) or libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # older
        return bool(mapped) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))  # glibc caps it at 32 MB
    except (OSError, AttributeError):
        return False


class WorkerDied(RuntimeError):
    """The worker process ended without a result (a signal, ``os._exit``, the OOM killer)."""

    def __init__(self, exitcode: int | None):
        self.exitcode = exitcode
        if exitcode is not None and exitcode < 0:
            try:
                how = f"killed by signal {signal.Signals(-exitcode).name}"
            except ValueError:
                how = f"killed by signal {-exitcode}"
        else:
            how = f"exited with code {exitcode} before returning a result"
        super().__init__(f"The worker process {how}.")


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None
    error_text: str = ""


def _context() -> multiprocessing.context.BaseContext:
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(PRELOAD)
    return context


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(3)
        except PermissionError:
            pass


def _child(conn: Any, parent: int, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides what an interrupt means
    keep_freed_memory()
    try:
        outcome = _Outcome(value=fn(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the driver
        import traceback

        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-8))
        try:
            import pickle

            pickle.dumps(exc)
            outcome = _Outcome(error=exc, error_text=text)
        except Exception:  # noqa: BLE001 - an exception that can't travel travels as text
            outcome = _Outcome(error=RuntimeError(f"{type(exc).__name__}: {exc}"), error_text=text)
    conn.send(outcome)
    conn.close()


class Worker:
    """``Worker(fn, *args).result()``: run ``fn`` in a fresh process; ``stop()`` ends it at once."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any):
        context = _context()
        self._receive, send = context.Pipe(duplex=False)
        self.process = context.Process(target=_child, args=(send, os.getpid(), fn, args, kwargs), daemon=False)
        self.process.start()
        send.close()

    @property
    def handles(self) -> tuple[Any, ...]:
        """What :func:`multiprocessing.connection.wait` can wait on: ready once a result can be read or the
        process has ended (a result larger than the pipe's buffer is sent before the process ends)."""
        return self._receive, self.process.sentinel

    def result(self) -> Any:
        """The function's return value; its exception re-raised (with the worker's traceback as a note); or
        :class:`WorkerDied`."""
        outcome = None
        while outcome is None:
            if self._receive.poll(0.2):
                try:
                    outcome = self._receive.recv()
                except EOFError:
                    break
            elif not self.process.is_alive():
                if self._receive.poll(0):
                    continue
                break
        self.process.join()
        if outcome is None:
            raise WorkerDied(self.process.exitcode)
        if outcome.error is not None:
            outcome.error.worker_traceback = outcome.error_text
            raise outcome.error
        return outcome.value

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()


def run_isolated(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` in a worker process and return its result; Ctrl-C/SIGTERM stop the worker."""
    worker = Worker(fn, *args, **kwargs)
    try:
        return worker.result()
    except BaseException:
        worker.stop()
        raise
