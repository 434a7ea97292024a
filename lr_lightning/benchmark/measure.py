"""What the benchmarks measure with, shared by the gradient runs (``speed.py``) and the exact solver's table
(``exact.py``): epoch times synchronised with the device, peak memory, the machine's name, the same starting model."""

from __future__ import annotations

import os
import platform
import sys
import time

import lightning as L
import torch

from lr_lightning.core.networks import LinearRegression


def initial_model(n_features: int, seed: int = 0) -> LinearRegression:
    torch.manual_seed(seed)
    return LinearRegression(n_features)


class EpochTimer(L.Callback):
    """Wall time of every training epoch, synchronised with the device so queued kernels are counted."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        sync(module.device.type)
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        sync(module.device.type)
        self.times.append(time.perf_counter() - self.start)


def peak_rss() -> int:
    """This process's peak resident memory (bytes): Linux's ``VmHWM``, which starts afresh at exec. ``getrusage``'s
    ``ru_maxrss`` (the fallback elsewhere) is carried over an exec on Linux, so a benchmark's child would report its
    parent's peak if the parent's were higher."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def machine_name(device: str) -> str:
    """The GPU's name, or the CPU model (from /proc/cpuinfo where there is one) and its core count."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores"
