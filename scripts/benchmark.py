#!/usr/bin/env python
"""Time a hand-written loop, Lightning + DataLoader, and this package side by side: `--help` for flags."""

import sys

from lr_lightning.benchmark.speed import main

if __name__ == "__main__":
    sys.exit(main())
