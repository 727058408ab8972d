"""repro: reproduce "Can Contrastive Learning in Embedding Space Improve Adversarial
Robustness?" — data, ResNet-18 with embedding taps, attacks, defenses, training, evaluation."""
__version__ = "0.1.0"
