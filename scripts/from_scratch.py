#!/usr/bin/env python
"""The tutorial's stages from numpy to Lightning, side by side: `python scripts/from_scratch.py --help`."""

import sys

from lr_lightning.tutorial.cli import main

if __name__ == "__main__":
    sys.exit(main())
