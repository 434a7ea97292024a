#!/usr/bin/env python
"""Validate, test or predict with a checkpoint on a run's data: `python scripts/evaluate.py --help`."""

import sys

from lr_lightning.core.evaluate import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
