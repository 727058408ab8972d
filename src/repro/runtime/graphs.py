"""CUDA graphs for the fixed-shape hot loops: a training step, an FGSM/PGD evaluation chunk.

Why: on a GPU, ResNet-18 at 32x32 and batch 128 is launch-bound. Python spends longer issuing
the thousands of small kernels of a PGD-20 training step than the card spends running them.
Captured once as a CUDA graph and replayed, the same kernels ran 4.5x faster for an at-pgd
step and 3.9x for a standard step (H200), and PGD-20 alone 5.7x faster with bit-identical
adversarials (H100, 2026-11-26; docs/gpu.md).

A graph replays exactly the kernels it recorded, on the memory it recorded: inputs must be
copied into fixed ("static") buffers, outputs are overwritten by the next replay, and nothing
inside may depend on a value the host reads or draws per call. So :class:`StepGraph` graphs
only batches of the full batch size; any other batch (the last, odd one of an epoch) runs the
same function eagerly, which keeps the batch-norm statistics those of eager training. Random
draws are made on the CPU outside the step and passed in as inputs.

Every graph checks itself once (repro.runtime.selfcheck): the batch it is captured on runs
eagerly (capture runs nothing), and its first replay, on the next full batch, is compared with
the same step run eagerly from the same state. A graph that differs is dropped: the job goes
on eagerly from the eager step's result and records the failure.
"""
from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable

import torch

from repro.runtime import selfcheck

WARMUP = 3  # eager full batches before the capture (PyTorch's examples use 3)


def graphs_wanted(setting: str, device: torch.device | str) -> bool:
    """``runtime.cuda_graphs``: "auto" graphs on CUDA (fp32 and bf16 alike); "off" never."""
    return setting == "auto" and torch.device(device).type == "cuda"


class CudaCapture:
    """The PyTorch recipe ("whole network capture"): warm-up calls on a side stream, so that
    lazily created cuDNN/cuBLAS state and autograd's stream bookkeeping exist before capture,
    then one capture whose outputs the replays overwrite.

    Streams are made on the inputs' card, under that card as the current device: a stream of
    another card would capture nothing (an empty graph, whose replays silently do nothing)."""

    @staticmethod
    def warmup(fn: Callable, inputs: list[torch.Tensor]):
        with torch.cuda.device(inputs[0].device):
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                outputs = fn(*inputs)
            torch.cuda.current_stream().wait_stream(stream)
        return outputs

    @staticmethod
    def capture(fn: Callable, inputs: list[torch.Tensor]) -> Callable:
        """Record ``fn(*inputs)`` (nothing runs yet); returns a call that replays it."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.device(inputs[0].device):
            current = torch.cuda.current_stream()
            try:
                with torch.cuda.graph(graph, stream=torch.cuda.Stream()):
                    outputs = fn(*inputs)
            except RuntimeError:
                # a failed capture_end leaves the capture stream current: eager work after
                # the failure (StepGraph's fallback) belongs on the stream it ran on before
                torch.cuda.set_stream(current)
                raise

        def replay():
            graph.replay()
            return outputs
        return replay


class StepGraph:
    """``fn(*tensors)``, graphed for batches of ``batch_size`` and eager for any other.

    The first ``warmup`` full batches run eagerly (through ``backend.warmup``), the next one
    is captured and run eagerly, and every later full batch is replayed: each is copied into
    the static input buffers first. The outputs of a replay are the graph's own tensors: use
    them before the next call. ``calls`` counts the batches by path, for the run record and
    tests.

    With a ``check`` (:class:`repro.runtime.selfcheck.Check`), the first replay is checked
    against the eager step from the same state (one extra step, counted as ``self_check``);
    the replay's result is kept when they agree (state, outputs and the CPU random stream are
    then what they would have been without the check), the eager one when they do not, and
    every later batch then runs eagerly. The verdict is in ``checked``.

    A capture that fails (an operation CUDA graphs cannot hold) costs no work: capture runs
    nothing, so that batch and all later ones run eagerly, with the reason in ``failure``
    (recorded) and on stderr.

    ``fn`` must be a whole step with no host synchronisation (no ``.item()``, no CPU draws)
    and must leave nothing behind that the next step reads through Python rather than
    through memory (an optimizer made with ``capturable=True``; ``zero_grad(set_to_none=True)``
    before ``backward``, so that the captured backward writes the gradients afresh).
    """

    def __init__(self, fn: Callable, batch_size: int, enabled: bool, warmup: int = WARMUP,
                 backend=CudaCapture, check: selfcheck.Check | None = None):
        self.fn, self.batch_size, self.enabled = fn, batch_size, enabled
        self.warmup, self.backend, self.check = warmup, backend, check
        self.static: list[torch.Tensor] | None = None
        self.replay: Callable | None = None
        self.failure: str | None = None
        self.checked: dict | None = None
        self.calls = Counter()

    def __call__(self, *tensors: torch.Tensor):
        if not self.enabled or len(tensors[0]) != self.batch_size:
            self.calls["eager"] += 1
            return self.fn(*tensors)
        if self.static is None:
            self.static = [tensor.clone() for tensor in tensors]
        else:
            for buffer, tensor in zip(self.static, tensors):
                buffer.copy_(tensor)
        if self.replay is None:
            if self.calls["warmup"] < self.warmup:
                self.calls["warmup"] += 1
                return self.backend.warmup(self.fn, self.static)
            try:
                self.replay = self.backend.capture(self.fn, self.static)
            except RuntimeError as error:
                cause = error.__context__ or error  # capture_end's error hides the first one
                self.failure = f"{type(cause).__name__}: {cause}".splitlines()[0][:300]
                print(f"CUDA graph capture failed, running eagerly: {self.failure}",
                      file=sys.stderr)
                self.enabled = False
                self.calls["eager"] += 1
                return self.fn(*tensors)
            # the graph recorded this batch: its first replay must see another one to show
            # that it reads its buffers (see the module docstring)
            self.calls["captured"] += 1
            return self.fn(*tensors)
        if self.check is not None and self.checked is None:
            return self._checked_replay(tensors)
        self.calls["graph"] += 1
        return self.replay()

    def _checked_replay(self, tensors):
        """The replay, then the eager step from the state before it; keeps the one that is
        right (see the class docstring)."""
        state = self.check.state()
        before, rng = selfcheck.snapshot(state), torch.get_rng_state()
        graphed = self.replay()  # the graph's own output tensors: the eager step leaves them
        after, graphed_rng = selfcheck.snapshot(state), torch.get_rng_state()
        selfcheck.restore(state, before)
        torch.set_rng_state(rng)
        eager = self.fn(*tensors)
        self.calls["self_check"] += 1
        found = selfcheck.differences(_tuple(graphed), _tuple(eager), self.check.outputs,
                                      after, state, before)
        worst = max(found, key=found.get)
        tolerance = self.check.tolerance(tensors)
        passed = found[worst] <= tolerance
        self.checked = {"self_check": "passed" if passed else "failed",
                        "self_check_difference": found[worst],
                        "self_check_tolerance": tolerance, "self_check_worst": worst}
        if passed:
            selfcheck.restore(state, after)
            torch.set_rng_state(graphed_rng)
            self.calls["graph"] += 1
            return graphed
        print(f"CUDA graph self-check failed: {worst} of the replay differs from the eager "
              f"step's by {found[worst]:.3g} (tolerance {tolerance:.3g}); running eagerly "
              f"from the eager step on", file=sys.stderr)
        self.enabled = False
        self.calls["eager"] += 1
        return eager


def _tuple(outputs) -> tuple:
    return outputs if isinstance(outputs, tuple) else (outputs,)


def graphs_record(setting: str, graph: StepGraph) -> dict:
    """What a checkpoint or evaluation JSON records about graphs: the config's switch, whether
    it took effect on this device, how many batches ran which way (in this process), and the
    self-check's verdict with its largest relative difference, where one ran.

    Kept out of the run's identity (``records.run_record``): graphed and eager steps compute
    the same thing, so switching graphs must neither refuse a checkpoint nor retrain it.
    """
    record = {"setting": setting, "used": graph.enabled, "batches": dict(graph.calls),
              **(graph.checked or {})}
    return record if graph.failure is None else {**record, "capture_failed": graph.failure}
