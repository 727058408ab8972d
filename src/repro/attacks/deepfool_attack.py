"""DeepFool (Moosavi-Dezfooli et al. 2016), batched, with the protocol's steps, overshoot and
clamp (``protocol.deepfool``; ledger 5)."""
from repro.attacks import deepfool
from repro.config import NUM_CLASSES
from repro.registry import Attack


def run(model, inputs, labels, protocol, noise):
    cfg = protocol.deepfool
    return deepfool(model, inputs, labels, cfg.steps, cfg.overshoot, cfg.overshoot_on)


def parameters(protocol):
    return {**vars(protocol.deepfool), "clamp": [0.0, 1.0], "space": protocol.attack_space,
            "clip": protocol.clip}


def cost(protocol, assumed):
    """A step is a forward and one input backward per class, (1 + K)/3, times the steps it
    typically takes before the prediction flips (``assumed["deepfool_steps"]``)."""
    taken = min(assumed["deepfool_steps"], protocol.deepfool.steps)
    return taken * (1 + NUM_CLASSES) / 3 + 1 / 3


MEMBERS = [Attack(id="deepfool", label="Deepfool", reads=("deepfool", "attack_space", "clip"),
                  run=run, parameters=parameters, cost=cost)]
