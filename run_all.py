#!/usr/bin/env python
"""Full reproduction of the paper: what `ray submit cluster.yaml run_all.py` (or `python run_all.py`)
runs. With no --datasets it generates the config's synthetic data sets and runs on those.

    python run_all.py --config configs/demo.yaml
    python run_all.py --config configs/paper.yaml --datasets jaffe=/data/jaffe
"""
import sys

from partfer.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
