#!/usr/bin/env python
"""Write a synthetic dataset as .npy shards: `python scripts/make_data.py --help`."""

import sys

from lr_lightning.core.cli import make_data_main

if __name__ == "__main__":
    sys.exit(make_data_main())
