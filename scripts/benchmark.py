#!/usr/bin/env python
"""Time a hand-written loop, Lightning + DataLoader, and this package side by side: `--help` for flags."""

import sys

from lr_lightning.core.cli import benchmark_main

if __name__ == "__main__":
    sys.exit(benchmark_main())
