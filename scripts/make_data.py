#!/usr/bin/env python
"""Write a synthetic dataset as .npy shards or Parquet files: `python scripts/make_data.py --help`."""
import sys

from lr_lightning.benchmark.make_data import main

if __name__ == "__main__":
    sys.exit(main())
