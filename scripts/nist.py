#!/usr/bin/env python
"""LRE of the package on NIST's linear least-squares reference datasets: `python scripts/nist.py --help`."""

import sys

from lr_lightning.core.cli import nist_main

if __name__ == "__main__":
    sys.exit(nist_main())
