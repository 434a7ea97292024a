#!/usr/bin/env python
"""Train linear regression with PyTorch Lightning: `python scripts/fit.py --help`."""

import sys

from lr_lightning.core.cli import fit_main

if __name__ == "__main__":
    sys.exit(fit_main())
