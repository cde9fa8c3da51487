#!/usr/bin/env bash
# Downloads into .whl/ the wheels that benchmarks/gpu.sh needs and a GPU machine's image may lack (this project's
# command-line and file dependencies: jsonargparse, and ObsPy, which `pinn` imports for its seismogram files;
# DeepXDE and PINA for the peer timings), for Python 3.12 on x86-64 Linux, about 22 MB. Run it where pip reaches the
# package registry; then carry .whl to the GPU machine with the checkout (docs/speed.md, "On a GPU"). Packages the
# image already has (torch, Lightning, numpy, scipy, matplotlib, scikit-learn, torch_geometric, ...) are left out:
# their versions there are the ones measured.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d .whl \
  "jsonargparse[signatures]==4.53.0" docstring-parser==0.18.0 typeshed-client==2.15.0 \
  deepxde==1.15.0 scikit-optimize==0.10.2 pyaml==26.7.0 \
  pina-mathlab==0.3.2.post2610 \
  obspy==1.5.1 sqlalchemy==2.1.9 decorator==5.3.2
ls -la .whl
