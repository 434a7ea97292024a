"""Side-by-side timing of one training problem on three paths, in one process.

(a) ``loop``: a hand-written loop slicing a per-epoch permutation of in-memory tensors, the fastest
    honest baseline;
(b) ``dataloader``: Lightning over ``DataLoader(TensorDataset(x, y))``, which fetches and collates one
    sample at a time (what lightning-bolts' SklearnDataModule does);
(c) ``package``: ``RegressionModule`` + ``RegressionDataModule`` with their defaults and logging on (among them
    ``steps_per_call="auto"``: several optimizer steps per call into Lightning); ``package-k1`` the same with
    ``steps_per_call=1``, one call per step, as Lightning's automatic optimization runs;
(d) ``barebones`` (optional): Lightning's floor, a minimal LightningModule (loss and SGD, nothing else) on the
    same sliced batches under ``Trainer(barebones=True)``, which turns off logging, checkpoints and callbacks.

``scripts/benchmark.py --files SMALL BIG`` compares instead ``.npy`` data loaded into memory with the same data
memory-mapped (:func:`run_files`), then a dataset larger than that, memory-mapped: samples/s and peak RSS, one
fresh process per run (peak RSS is a per-process high-water mark), the table printed by the parent.

All three train the same ``LinearRegression`` from the same initial weights with plain SGD on the same data,
with the same threads and the same number of optimizer steps. Seconds per epoch are the median over the
epochs after the first (warm-up), so start-up costs are not counted.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from jsonargparse.typing import PositiveFloat, PositiveInt
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from lr_lightning.benchmark.measure import EpochTimer, initial_model, machine_name, peak_rss, sync
from lr_lightning.core.commands import Parser, entry_point, quiet
from lr_lightning.core.data import RegressionDataModule, datamodule_for_path
from lr_lightning.core.regression_module import RegressionModule
from lr_lightning.core.steps_per_call import StepsPerCallModule


@dataclass
class Result:
    path: str
    epoch_seconds: list[float]
    final_loss: float
    warmup: int = 1  # leading epochs left out of the timing
    steps_per_call: int = 1  # optimizer steps per call into Lightning (the package's paths)

    @property
    def timed(self) -> list[float]:
        return self.epoch_seconds[self.warmup:] or self.epoch_seconds

    @property
    def seconds(self) -> float:
        """Median seconds per epoch, warm-up left out."""
        return statistics.median(self.timed)


def merge(runs: list[Result]) -> Result:
    """Several runs of one path as one: the timed epochs of all of them, the last final loss."""
    return Result(runs[0].path, [t for r in runs for t in r.timed], runs[-1].final_loss, warmup=0,
                  steps_per_call=runs[-1].steps_per_call)


def make_data(n_samples: int, n_features: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_samples, n_features, generator=g)
    w = torch.randn(n_features, 1, generator=g)
    return x, x @ w + 0.1 * torch.randn(n_samples, 1, generator=g)


def full_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        p = next(model.parameters())
        return torch.nn.functional.mse_loss(model(x.to(p.device)), y.to(p.device)).item()


def run_loop(x: torch.Tensor, y: torch.Tensor, *, batch_size: int, epochs: int, lr: float, device: str,
             seed: int = 0) -> Result:
    """(a) The hand-written loop: data on the device once, batches sliced out of a per-epoch permutation."""
    model = initial_model(x.shape[1], seed).to(device)
    x, y = x.to(device), y.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = torch.nn.MSELoss()
    times = []
    for _ in range(epochs):
        sync(device)
        start = time.perf_counter()
        perm = torch.randperm(len(x), device=device)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        sync(device)
        times.append(time.perf_counter() - start)
    return Result("loop", times, full_loss(model, x, y))


def _trainer(epochs: int, accelerator: str, log_dir: str, timer: EpochTimer, **kwargs: Any) -> L.Trainer:
    return L.Trainer(accelerator=accelerator, devices=1, max_epochs=epochs, logger=TensorBoardLogger(log_dir, name=""),
                     callbacks=[timer], enable_checkpointing=False, num_sanity_val_steps=0,
                     **{"enable_progress_bar": False, "enable_model_summary": False, **kwargs})


def _no_validation(n_train: int, batch_size: int) -> dict[str, Any]:
    """Trainer settings for training on every row: no validation loop (Lightning's own switch for it), and a step
    logged every 50 steps or once an epoch when an epoch has fewer (more would warn and log none)."""
    return {"limit_val_batches": 0, "log_every_n_steps": max(1, min(50, math.ceil(n_train / batch_size)))}


def run_dataloader(x: torch.Tensor, y: torch.Tensor, *, batch_size: int, epochs: int, lr: float, accelerator: str,
                   seed: int = 0) -> Result:
    """(b) Lightning over DataLoader(TensorDataset): one __getitem__ per sample, then a collate per batch."""
    module = RegressionModule(initial_model(x.shape[1], seed), partial(torch.optim.SGD, lr=lr))
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, num_workers=0)
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = _trainer(epochs, accelerator, log_dir, timer, **_no_validation(len(x), batch_size))
        trainer.fit(module, loader, val_dataloaders=[])  # no validation, said explicitly
    return Result("dataloader", timer.times, full_loss(module, x, y))


def run_package(x: torch.Tensor, y: torch.Tensor, *, batch_size: int, epochs: int, lr: float, accelerator: str,
                seed: int = 0, steps_per_call: int | str = "auto") -> Result:
    """(c) This package: StepsPerCallModule + RegressionDataModule (fit.py's defaults for the linear
    model), TensorBoard logging on (``steps_per_call=1``: the ``package-k1`` row)."""
    module = StepsPerCallModule(initial_model(x.shape[1], seed), partial(torch.optim.SGD, lr=lr),  # SGD, at --lr
                                steps_per_call=steps_per_call)
    # The whole set trains (no validation split), so all three paths take the same number of steps.
    dm = RegressionDataModule(x, y, batch_size=batch_size, val_fraction=0.0, seed=seed)
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = _trainer(epochs, accelerator, log_dir, timer, **_no_validation(len(x), batch_size))
        trainer.fit(module, datamodule=dm)
    return Result("package" if steps_per_call == "auto" else f"package-k{steps_per_call}", timer.times,
                  full_loss(module, x, y), steps_per_call=module.trained_steps_per_call)


class _Minimal(L.LightningModule):
    """The least a LightningModule can be: forward, loss, optimizer."""

    def __init__(self, model: torch.nn.Module, lr: float) -> None:
        super().__init__()
        self.model, self.lr = model, lr

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return torch.nn.functional.mse_loss(self.model(batch[0]), batch[1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def run_barebones(x: torch.Tensor, y: torch.Tensor, *, batch_size: int, epochs: int, lr: float, accelerator: str,
                  seed: int = 0) -> Result:
    """(d) Lightning's own per-step cost: no logging, metrics, checkpoints or callbacks (barebones=True)."""
    module = _Minimal(initial_model(x.shape[1], seed), lr)
    dm = RegressionDataModule(x, y, batch_size=batch_size, val_fraction=0.0, seed=seed)
    dm.setup("fit")
    loader = dm.train_dataloader()  # the loader alone: this module has no validation_step for dm's val loader
    # barebones allows no callbacks, so the epochs are timed by hand around single-epoch fits.
    times = []
    trainer = L.Trainer(accelerator=accelerator, devices=1, max_epochs=0, barebones=True)
    for epoch in range(epochs):
        trainer.fit_loop.max_epochs = epoch + 1
        sync(trainer.strategy.root_device.type)
        start = time.perf_counter()
        trainer.fit(module, loader)
        sync(trainer.strategy.root_device.type)
        times.append(time.perf_counter() - start)
    return Result("barebones", times, full_loss(module.model, x, y))


def run_files(path: str, *, in_memory: bool, batch_size: int, epochs: int, lr: float, accelerator: str,
              seed: int = 0) -> tuple[Result, int]:
    """(e) ``.npy`` data through the package, memory-mapped or loaded (``in_memory``), as ``fit.py --data`` runs
    it; the peak resident memory of the process (bytes) goes with the result, so run one per process."""
    dm = datamodule_for_path(path)(path, in_memory=in_memory, batch_size=batch_size, val_fraction=0.0, seed=seed)
    dtype = "float64" if dm.dtype == torch.float64 else None  # float64 files train a float64 network
    module = StepsPerCallModule(initial_model(dm.n_features, seed), partial(torch.optim.SGD, lr=lr),
                                weights_dtype=dtype)
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = _trainer(epochs, accelerator, log_dir, timer, **_no_validation(dm.n_train, batch_size))
        trainer.fit(module, datamodule=dm)
    peak = peak_rss()
    loss = float(module.trainer.callback_metrics["train/loss"])
    return Result("in-memory" if in_memory else "memory-mapped", timer.times, loss), peak


def format_files_table(rows: list[tuple[str, int, float, Result, int]]) -> str:
    """One row per run: data, its size, samples/s (ratio to the first row), peak RSS."""
    base = rows[0][1] / rows[0][3].seconds
    lines = [f"{'path':<14} {'rows':>11} {'GB':>6} {'s/epoch':>9} {'samples/s':>11} {'vs first':>8} {'peak RSS':>9}"]
    for name, n, gb, r, peak in rows:
        rate = n / r.seconds
        lines.append(f"{name:<14} {n:>11,} {gb:6.2f} {r.seconds:9.2f} {rate:11,.0f} {rate / base:7.2f}x "
                     f"{peak / 1e9:7.2f} GB")
    return "\n".join(lines)


def format_table(results: list[Result], n_samples: int) -> str:
    base = results[0].seconds
    lines = [f"{'path':<12} {'s/epoch':>9} {'samples/s':>12} {'vs loop':>8} {'final loss':>11}"]
    for r in results:
        lines.append(f"{r.path:<12} {r.seconds:9.3f} {n_samples / r.seconds:12,.0f} {r.seconds / base:7.2f}x "
                     f"{r.final_loss:11.5f}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- scripts/benchmark.py
PathName = Literal["loop", "dataloader", "package", "package-k1", "barebones"]
Mode = Literal["in-memory", "memory-mapped"]


def benchmark(n_samples: PositiveInt = 1_000_000, n_features: PositiveInt = 16, batch_size: PositiveInt = 1024,
              epochs: PositiveInt = 3, repeats: PositiveInt = 3, lr: PositiveFloat = 0.01,
              accelerator: Literal["cpu", "gpu"] = "cpu", threads: PositiveInt | None = None,
              paths: Sequence[PathName] = ("loop", "dataloader", "package", "package-k1", "barebones"),
              files: tuple[Path, Path] | None = None, exact: bool = False, exact_rows: PositiveInt = 2_000_000,
              exact_features: PositiveInt = 40, exact_files: Path | None = None, startup: bool = False) -> int:
    """Seconds per epoch of (a) a hand-written slicing loop, (b) Lightning over DataLoader(TensorDataset), (c) this
    package, on the same data, in one process.

    Args:
        n_samples: rows of generated data
        n_features: columns of generated data
        batch_size: samples per step
        epochs: per path; the first is a warm-up, the median of the rest counts
        repeats: rounds through all paths, interleaved so that a machine that speeds up or slows down meanwhile
            affects every path alike
        lr: SGD learning rate
        accelerator: cpu or gpu
        threads: torch threads (default: torch's choice)
        paths: which to time, as a list: --paths [loop,package]; package-k1: the package with steps_per_call=1
            (one call into Lightning per step); barebones: Lightning's floor, a minimal module under
            Trainer(barebones=True)
        files: instead: .npy data (scripts/make_data.py) in memory vs memory-mapped on SMALL, then memory-mapped
            on BIG, as a list: --files [SMALL,BIG]; samples/s and peak RSS
        exact: instead: the exact solver (LeastSquaresModule) vs scikit-learn vs statsmodels in memory, on
            exact_rows x exact_features float64 data, over --repeats interleaved rounds
        exact_rows: rows of the --exact comparison
        exact_features: columns of the --exact comparison
        exact_files: with --exact, also the exact solver alone over these .npy shards, memory-mapped (e.g.
            `make_data.py DIR --n_rows 25000000 --n_features 40`), beside one SGD epoch at batch 1024
        startup: instead: the start-up time of the tutorial run (`scripts/fit.py`) beside `python -c "import torch,
            lightning"`, and the run by parts, over --repeats interleaved rounds of fresh processes
    """
    device = "cuda" if accelerator == "gpu" else "cpu"
    if threads:
        torch.set_num_threads(threads)
    if startup:
        from lr_lightning.benchmark import startup as startup_benchmark

        return startup_benchmark.run(repeats, f"{machine_name('cpu')}, torch {torch.__version__}, "
                                              f"lightning {L.__version__}, {repeats} rounds")
    if exact or exact_files:
        from lr_lightning.benchmark import exact as exact_benchmark

        return exact_benchmark.run(exact_rows, exact_features, repeats, exact_files)
    if files:
        return _benchmark_files(files, batch_size=batch_size, epochs=epochs, lr=lr, accelerator=accelerator,
                                threads=threads)
    x, y = make_data(n_samples, n_features)
    common = {"batch_size": batch_size, "lr": lr, "epochs": epochs}
    runners = {
        "loop": lambda: run_loop(x, y, device=device, **common),
        "dataloader": lambda: run_dataloader(x, y, accelerator=accelerator, **common),
        "package": lambda: run_package(x, y, accelerator=accelerator, **common),
        "package-k1": lambda: run_package(x, y, accelerator=accelerator, steps_per_call=1, **common),
        "barebones": lambda: run_barebones(x, y, accelerator=accelerator, **common),
    }
    print(f"{n_samples:,} samples x {n_features} features, batch {batch_size}, {torch.get_num_threads()} threads, "
          f"{machine_name(device)}, torch {torch.__version__}, lightning {L.__version__}")
    runs: dict[str, list[Result]] = {path: [] for path in paths}
    for round_ in range(1, repeats + 1):
        for path in paths:
            runs[path].append(runners[path]())
            print(f"  round {round_}, {path}: {runs[path][-1].seconds:.3f} s/epoch", file=sys.stderr)
    results = {path: merge(r) for path, r in runs.items()}
    print(format_table(list(results.values()), n_samples))
    if "package" in results:
        print(f"package: the defaults, steps_per_call auto = {results['package'].steps_per_call} optimizer steps per "
              "call into Lightning")
    return 0


def _benchmark_files(files: tuple[Path, Path], *, batch_size: int, epochs: int, lr: float, accelerator: str,
                     threads: int | None) -> int:
    """``--files SMALL BIG``: each run in a fresh process (peak RSS is a per-process high-water mark)."""
    from lr_lightning.core.data.tables import NpyTable

    small, big = (Path(p) for p in files)
    try:
        sizes = {p: (NpyTable(p).n_rows, sum(f.stat().st_size for f in ([p] if p.is_file() else p.glob("*.npy"))))
                 for p in (small, big)}
    except (ValueError, FileNotFoundError) as e:
        print(f"error: --files: {e}", file=sys.stderr)
        return 2
    device = "cuda" if accelerator == "gpu" else "cpu"
    print(f"batch {batch_size}, {epochs} epochs per run (the first a warm-up), no validation split, "
          f"{torch.get_num_threads()} threads, {machine_name(device)}, torch {torch.__version__}, "
          f"lightning {L.__version__}")
    rows = []
    for path, mode in ((small, "in-memory"), (small, "memory-mapped"), (big, "memory-mapped")):
        flags = ["--one_run", json.dumps([str(path), mode]), "--batch_size", str(batch_size), "--epochs", str(epochs),
                 "--lr", repr(lr), "--accelerator", accelerator]
        flags += ["--threads", str(threads)] if threads else []  # the children's threads are the table's
        done = subprocess.run([sys.executable, "-m", "lr_lightning.benchmark.speed", *flags], capture_output=True,
                              text=True)
        if done.returncode != 0:
            print(f"error: the {mode} run on {path} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            return 1
        out = json.loads(done.stdout.strip().splitlines()[-1])
        result = Result(mode, out["times"], out["loss"])
        print(f"  {mode} on {path}: {result.seconds:.2f} s/epoch, peak RSS {out['peak'] / 1e9:.2f} GB", file=sys.stderr)
        rows.append((mode, sizes[path][0], sizes[path][1] / 1e9, result, out["peak"]))
    print(format_files_table(rows))
    return 0


@entry_point
def main(argv: list[str] | None = None) -> int:
    """``scripts/benchmark.py``: the flags are :func:`benchmark`'s parameters (and a hidden ``--one_run PATH MODE``,
    how ``--files`` starts each of its runs in a fresh process)."""
    import argparse

    parser = Parser(prog="benchmark.py", description=benchmark.__doc__.split("\n\n")[0])
    parser.add_function_arguments(benchmark, as_group=False)
    parser.add_argument("--one_run", type=tuple[Path, Mode] | None, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv).as_dict()
    one_run = args.pop("one_run")
    if args["accelerator"] == "gpu" and not torch.cuda.is_available():
        parser.error("--accelerator gpu: no CUDA GPU is visible to torch on this machine")
    if not args["paths"]:
        parser.error("--paths: expected at least one path, got []")
    quiet()
    if one_run:
        path, mode = one_run
        if args["threads"]:
            torch.set_num_threads(args["threads"])
        result, peak = run_files(str(path), in_memory=mode == "in-memory", batch_size=args["batch_size"],
                                 epochs=args["epochs"], lr=args["lr"], accelerator=args["accelerator"])
        print(json.dumps({"times": result.epoch_seconds, "loss": result.final_loss, "peak": peak}))
        return 0
    return benchmark(**args)


if __name__ == "__main__":  # `python -m lr_lightning.benchmark.speed`: how --files starts its runs
    sys.exit(main())
