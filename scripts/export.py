#!/usr/bin/env python
"""Export a checkpoint for serving: `python scripts/export.py --ckpt PATH --out model.onnx` (or `model.pt2`)."""

import sys

from lr_lightning.core.export import export_main

if __name__ == "__main__":
    sys.exit(export_main())
