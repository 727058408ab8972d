"""A toy layered defense (it takes an embedding layer and a β, as cl-* do): cross-entropy plus
β times the mean square of the layer's embedding, an activation penalty."""
import torch.nn.functional as F

from repro.registry import Defense


def loss(model, inputs, labels, run, protocol, noise):
    logits, taps = model.forward_taps(inputs, (run.layer,))
    return F.cross_entropy(logits, labels) + run.beta * taps[run.layer].pow(2).mean(), logits


MEMBERS = [Defense(id="act-penalty", label="ResNet+ActPenalty", reads=(), loss=loss,
                   layered=True, cost=lambda protocol: 1.0)]
