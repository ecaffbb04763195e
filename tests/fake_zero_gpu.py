"""A stand-in for the `spaces` package on ZeroGPU hardware, with its process model: each function decorated by
`GPU` runs, at each call, in a worker process forked from this one at its first call and kept for the later
ones (as ZeroGPU keeps an idle worker); arguments and results cross as pickles, and nothing else a call changes
comes back. Whatever the page keeps in the worker's memory instead of its own is lost to it, or goes stale."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from typing import Any

ANSWER_SECONDS = 120


def _serve_calls(task: Any, end: Any, parent_end: Any) -> None:
    import torch

    parent_end.close()  # the parent's end, inherited by the fork: closed, so that the parent's close ends this
    torch.set_num_threads(
        1
    )  # a forked child: OpenMP's threads stay the parent's (DataLoader workers do this)
    while True:
        try:
            args, kwargs = pickle.loads(end.recv_bytes())
        except EOFError:
            return
        try:
            answer = ("ok", task(*args, **kwargs), os.getpid())
        except Exception as error:  # sent back, as ZeroGPU sends a worker's error
            answer = ("error", f"{type(error).__name__}: {error}", os.getpid())
        end.send_bytes(pickle.dumps(answer))


class FakeZeroGpu:
    """`GPU(task, duration=...)` as `spaces.GPU`; `calls` lists each call's `{"seconds": asked duration, "pid":
    the worker's process id, "arguments": the unpickled arguments}`."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self._workers: list[tuple[Any, Any]] = []

    def GPU(self, task: Any = None, *, duration: Any = None, size: Any = None) -> Any:  # noqa: N802 (spaces' name)
        if task is None:
            return lambda function: self.GPU(function, duration=duration, size=size)
        worker = []

        def run(*args: Any, **kwargs: Any) -> Any:
            seconds = duration(*args, **kwargs) if callable(duration) else duration
            if not worker:
                context = multiprocessing.get_context("fork")
                end, child_end = context.Pipe()
                process = context.Process(target=_serve_calls, args=(task, child_end, end), daemon=True)
                process.start()
                child_end.close()
                self._workers.append((process, end))
                worker.append(end)
            worker[0].send_bytes(pickle.dumps((args, kwargs)))
            if not worker[0].poll(ANSWER_SECONDS):  # a stuck worker fails the test instead of hanging the run
                raise RuntimeError(f"the ZeroGPU stand-in's worker gave no answer in {ANSWER_SECONDS} s")
            status, value, pid = pickle.loads(worker[0].recv_bytes())
            self.calls.append({"seconds": seconds, "pid": pid, "arguments": args})
            if status == "error":
                raise RuntimeError(f"ZeroGPU worker error: {value}")
            return value

        return run

    def close(self) -> None:
        for process, end in self._workers:
            end.close()
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
