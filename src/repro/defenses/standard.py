"""Regular training: cross-entropy on the clean batch (the tables' "ResNet" row)."""
import torch.nn.functional as F

from repro.registry import Defense


def loss(model, inputs, labels, run, protocol, noise):
    logits = model(inputs)
    return F.cross_entropy(logits, labels), logits


MEMBERS = [Defense(id="standard", label="ResNet", reads=(), loss=loss, cost=lambda p: 1.0)]
