#!/usr/bin/env bash
# Wheels of the reference attack libraries for a GPU machine without network (the `device`
# tool's machines have torch, scipy and requests, not these): saved into .whl/ (ignored by
# git), which benchmarks/gpu.sh installs from. Pure-Python wheels, so any Python 3 will do.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download --no-deps --only-binary=:all: -d .whl \
    torchattacks==3.5.1 foolbox==3.3.4 eagerpy==0.30.0 GitPython==3.1.45 gitdb==4.0.12 \
    smmap==5.0.2
