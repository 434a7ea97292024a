#!/usr/bin/env python
"""Predict with a checkpoint written by fit.py, `python scripts/predict.py --ckpt PATH --x 5 6 7`, or with a file
written by export.py, `--onnx model.onnx` (no torch, well under a second)."""

import sys

from lr_lightning.core.predict import predict_main

if __name__ == "__main__":
    sys.exit(predict_main())
