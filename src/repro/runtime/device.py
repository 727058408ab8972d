"""Where a job runs and the model it runs there: the set-up that training, evaluation and the
audit share (a module of its own, so that evaluating does not import training)."""
from __future__ import annotations

import torch

from repro.config import Settings
from repro.models.resnet import build_model


def select_device(name: str | None = "auto") -> torch.device:
    """``runtime.device``: "auto" is CUDA when torch sees a GPU, else the CPU.

    On CUDA, cuDNN autotuning and TF32 matmuls are turned on (process-wide): every hot loop
    but DeepFool's and AutoAttack's keeps one shape, so autotuning pays once per job."""
    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("runtime.device asks for CUDA but torch sees no GPU; use "
                               "'auto' or 'cpu'")
        if device.index is not None:  # streams and CUDA graphs are made on the current card
            torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor (a batch's random draw) on ``device``, without waiting for the GPU.

    A copy from ordinary CPU memory blocks the host until the GPU has finished everything
    queued before it, so the next step could not be queued while this one runs; from pinned
    memory it is asynchronous (the pinned block is kept until the copy is done)."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def prepare_model(settings: Settings, dataset: str, device: torch.device, seed: int = 0):
    """The classifier of ``dataset`` on ``device``; channels-last on a GPU (faster convs)."""
    model = build_model(settings, dataset, seed).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model
