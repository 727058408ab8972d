"""Where and how jobs run: device, CUDA graphs, GPU slots, random streams, atomic io, the lock."""
