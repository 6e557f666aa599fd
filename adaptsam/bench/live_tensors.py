"""Peak bytes of live tensors during a phase, counted op by op: a CPU memory figure that repeats exactly.

Why not the resident set: on CPU the process's RSS peak mixes in glibc's arenas and what earlier work left
in them; one inference graph measured 73–113 MB across the seeds of one bench, even in a fresh process per
cell. CPU has no ``max_memory_allocated``, and the profiler's memory events give totals per op, not the
live peak. So this counts what a caching GPU allocator would: a :class:`TorchDispatchMode` sees every op's
outputs; a storage that no input of the op already owned is a new allocation, counted until its last
tensor dies (a ``weakref.finalize`` on the storage). Views, in-place ops and ``out=`` ops allocate nothing
new; tensors that existed before the phase (the model's weights) are never counted. The figure is the
working memory of the phase — activations, saved tensors, gradients, optimiser state — without allocator
overhead, the scratch space of oneDNN kernels or sparse tensors, and the same graph gives the same bytes on every run.

Counting costs ~50 µs per op in Python (a training step of an encoder-LoRA is ~5000 ops), so training is
counted over its first ``optimiser_steps`` steps only: by the end of the second step the optimiser state,
the gradients and a step's activations all exist, and later steps repeat the same shapes.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def _dense(value: Any) -> bool:
    """A strided tensor with a storage; sparse tensors (a PEFT tuner's SHiRA weights) have none to count."""
    return isinstance(value, torch.Tensor) and value.layout == torch.strided and not value.is_meta


class LiveTensorPeak(TorchDispatchMode):
    """``with LiveTensorPeak("cpu", optimiser_steps=2) as live: ...`` then ``live.peak_bytes``.

    ``optimiser_steps``: stop counting after that many ``optimizer.step()`` calls of any torch optimiser
    (``None``: count the whole block). Only tensors on ``device``'s type are counted.
    """

    def __init__(self, device: torch.device | str = "cpu", *, optimiser_steps: int | None = None):
        super().__init__()
        self.device_type = torch.device(device).type
        self.optimiser_steps = optimiser_steps
        self.steps_seen = 0
        self.current_bytes = self.peak_bytes = 0
        self._sizes: dict[int, int] = {}
        self._hook: Any = None
        self._counting = False

    def __enter__(self) -> LiveTensorPeak:
        if self.optimiser_steps is not None:
            self._hook = register_optimizer_step_post_hook(self._after_step)
        self._counting = True
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._remove_hook()
        if self._counting:
            self._counting = False
            super().__exit__(*exc)

    def _remove_hook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _after_step(self, *_: Any) -> None:
        self.steps_seen += 1
        if self.optimiser_steps is not None and self.steps_seen >= self.optimiser_steps and self._counting:
            # the optimiser's step runs outside any op, so this mode is the innermost one: popping it is safe
            self._counting = False
            self._remove_hook()
            super().__exit__(None, None, None)

    def _release(self, key: int) -> None:
        self.current_bytes -= self._sizes.pop(key, 0)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        owned_by_inputs: set[int] | None = None
        for tensor in tree_leaves(out):
            if not _dense(tensor) or tensor.device.type != self.device_type:
                continue
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key == 0 or key in self._sizes:
                continue
            if owned_by_inputs is None:
                owned_by_inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs))
                                   if _dense(t)}
            if key in owned_by_inputs:  # a view, an in-place or an out= op: nothing new
                continue
            size = storage.nbytes()
            self._sizes[key] = size
            self.current_bytes += size
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)
            weakref.finalize(storage, self._release, key)
        return out
