"""The model: ResNet-18 with the embedding taps of the paper's Table 3."""
