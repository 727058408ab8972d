"""The runs: one training, one evaluation, one audit; and the artifacts they write."""
