"""No attack: the clean test images (the tables' "Id" column)."""
from repro.attacks import logits_at
from repro.registry import Attack


def run(model, inputs, labels, protocol, noise):
    return inputs, logits_at(model, inputs)


MEMBERS = [Attack(id="clean", label="Id", reads=(), run=run, parameters=lambda p: {},
                  cost=lambda p, assumed: 1 / 3, cost_follows=True)]  # one forward pass
