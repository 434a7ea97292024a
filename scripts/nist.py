#!/usr/bin/env python
"""LRE of the package on NIST's linear least-squares reference datasets: `python scripts/nist.py --help`."""

import sys

from lr_lightning.exact.nist import main

if __name__ == "__main__":
    sys.exit(main())
