"""A toy defense as a user would add one (docs/extending.md): training on noisy copies.

Each training image gets uniform noise of ±``protocol.noise_aug.scale`` before the usual
cross-entropy: "noise augmentation", a weak defense against L∞ attacks. It declares its own
config section (``protocol.noise_aug``, with a schema and defaults) and no cost, so
``python -m repro estimate`` prices it by the stated default rule.
"""
import torch
import torch.nn.functional as F

from repro.registry import Defense


def noise(run, protocol, shape, generator):
    """U[0, 1) draws from the run's training stream, on the CPU (so a seed repeats them)."""
    return torch.rand(shape, generator=generator, device="cpu")


def loss(model, inputs, labels, run, protocol, noise):
    scale = protocol.value("noise_aug")["scale"]
    noisy = inputs + (2 * noise.to(inputs.device) - 1) * scale
    logits = model(noisy)
    return F.cross_entropy(logits, labels), logits


MEMBERS = [
    Defense(id="noise-aug", label="ResNet+Noise", reads=(), loss=loss, noise=noise,
            settings_key="noise_aug",
            schema={"type": "object", "additionalProperties": False, "required": ["scale"],
                    "properties": {"scale": {"type": "number", "minimum": 0}}},
            defaults={"scale": 0.1}),
]
