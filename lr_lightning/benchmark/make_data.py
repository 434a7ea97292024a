"""``scripts/make_data.py``: write a synthetic regression dataset as ``.npy`` shards or Parquet files, larger than
memory if asked, for ``fit.py --data DIR`` and the benchmark.

``y = x @ w + b + noise * N(0, 1)`` with ``x ~ N(0, 1)``; ``w`` and ``b`` are drawn from the seed and written to
``truth.json``. Written chunk by chunk: memory stays at one chunk (``.npy``) or one row group (Parquet) whatever the
number of rows.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lr_lightning.core.commands import Parser, command, entry_point

CHUNK_ROWS = 1 << 16  # rows generated at a time


def write_synthetic(out: str | Path, n_rows: int, n_features: int, shard_rows: int = 1 << 20, noise: float = 0.1,
                    seed: int = 0, dtype: Any = np.float32, format: str = "npy",
                    row_group_rows: int = 1 << 20, weights: bool = False, clusters: int = 0) -> dict[str, Any]:
    """Write the data as shards ``out/part-00000.npy``, … (or ``.parquet``) of at most ``shard_rows`` rows, each row
    the features ``x0, x1, …`` then the target ``y``, plus ``out/truth.json`` with ``w`` and ``b``. Parquet files
    hold row groups of at most ``row_group_rows`` rows. Returns the truth.

    ``weights``: a weight column (uniform in [0.5, 2]) after the features; ``clusters``: a cluster id column of
    that many ids (integers 0 … clusters - 1, drawn per row; each cluster adds its own N(0, noise) to ``y``) after
    it. In ``.npy`` shards they are columns ``x{n_features}`` (and ``x{n_features + 1}``), the target still last;
    in Parquet ``w`` and ``g``. ``truth.json`` names them (``weights_column``, ``clusters_column``)."""
    if not (isinstance(clusters, int) and 0 <= clusters <= 1 << 24):
        raise ValueError(f"clusters must be an integer from 0 to 2**24 (exact in float32), got {clusters!r}")
    if format not in ("npy", "parquet"):
        raise ValueError(f"format must be npy or parquet, got {format!r}")
    if n_rows < 1 or n_features < 1 or shard_rows < 1 or row_group_rows < 1:
        raise ValueError(f"rows, features, shard rows and row group rows must be >= 1, got {n_rows}, {n_features}, "
                         f"{shard_rows}, {row_group_rows}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.glob("*.npy")) or any(out.glob("*.parquet"))):
        raise ValueError(f"{out}: already exists and holds data; choose a new directory")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, b = rng.uniform(-2, 2, n_features), float(rng.uniform(-1, 1))
    effect = noise * rng.standard_normal(clusters)  # each cluster's shift of y
    extra = int(weights) + (clusters > 0)

    def rows(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, n_features + extra), dtype=np.float32)
        y = x[:, :n_features] @ w + b + noise * rng.standard_normal(n)
        if weights:
            x[:, n_features] = rng.uniform(0.5, 2.0, n)
        if clusters:
            g = rng.integers(0, clusters, n)
            x[:, -1], y = g, y + effect[g]
        return x, y

    for i, start in enumerate(range(0, n_rows, shard_rows)):
        n = min(shard_rows, n_rows - start)
        if format == "npy":
            _write_npy(out / f"part-{i:05d}.npy", n, n_features + extra, dtype, rows)
        else:
            _write_parquet(out / f"part-{i:05d}.parquet", n, n_features, dtype, rows, row_group_rows,
                           ["w"] * weights + ["g"] * (clusters > 0))
    truth = {"weight": w.tolist(), "bias": b, "noise": noise, "rows": n_rows, "seed": seed}
    names = [f"x{j}" for j in range(n_features, n_features + extra)] if format == "npy" else \
        ["w"] * weights + ["g"] * (clusters > 0)
    if weights:
        truth["weights_column"] = names[0]
    if clusters:
        truth["clusters_column"], truth["clusters"] = names[-1], clusters
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def _write_npy(path: Path, n: int, n_features: int, dtype: Any, rows: Any) -> None:
    shard = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, n_features + 1))
    for a in range(0, n, CHUNK_ROWS):
        x, y = rows(min(CHUNK_ROWS, n - a))
        shard[a:a + len(x), :n_features] = x
        shard[a:a + len(x), n_features] = y
    shard.flush()
    del shard


def _write_parquet(path: Path, n: int, n_features: int, dtype: Any, rows: Any, row_group_rows: int,
                   extra: list[str] | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [f"x{j}" for j in range(n_features)] + list(extra or []) + ["y"]
    n_features = len(names) - 1  # the weight and cluster columns are written as columns before y
    types = {"g": pa.int64()} if extra and "g" in extra else {}
    schema = pa.schema([(name, types.get(name, pa.from_numpy_dtype(np.dtype(dtype)))) for name in names])
    with pq.ParquetWriter(path, schema) as writer:
        for g in range(0, n, row_group_rows):
            size = min(row_group_rows, n - g)
            columns = np.empty((n_features + 1, size), dtype)  # column-major: each column one contiguous array
            for a in range(0, size, CHUNK_ROWS):
                x, y = rows(min(CHUNK_ROWS, size - a))
                columns[:n_features, a:a + len(x)] = x.T
                columns[n_features, a:a + len(x)] = y
            writer.write_table(pa.table([pa.array(c.astype(np.int64) if name == "g" else c) for c, name in
                                         zip(columns, names, strict=True)], schema=schema), row_group_size=size)
            del columns


def parser() -> Parser:
    p = Parser(prog="make_data.py", description="Write a synthetic regression dataset (y = x @ w + b + noise) as .npy "
               "shards or Parquet files, for `fit.py --data DIR` (streamed: it may be far larger than memory).")
    p.add_argument("out", type=str, help="a new directory for part-00000.npy (or .parquet), ... and truth.json")
    p.add_argument("--n_rows", type=int, default=1_000_000, help="samples in all")
    p.add_argument("--n_features", type=int, default=16, help="input columns (plus one target column)")
    p.add_argument("--format", type=Literal["npy", "parquet"], default="npy", help="file format")
    p.add_argument("--shard_rows", type=int, default=1 << 20, help="rows per file")
    p.add_argument("--row_group_rows", type=int, default=1 << 20, help="rows per Parquet row group")
    p.add_argument("--noise", type=float, default=0.1, help="standard deviation of the noise")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the data")
    p.add_argument("--dtype", type=Literal["float32", "float64"], default="float32", help="stored dtype")
    p.add_argument("--weights", type=bool, default=False, help="add a weight column (uniform in [0.5, 2])")
    p.add_argument("--clusters", type=int, default=0, help="add a cluster id column of this many clusters")
    return p



@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = Path(args.out)
    start = time.perf_counter()
    try:
        truth = write_synthetic(out, args.n_rows, args.n_features, args.shard_rows, args.noise, args.seed,
                                args.dtype, args.format, args.row_group_rows, args.weights, args.clusters)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in out.glob(f"*.{args.format}"))
    print(f"Wrote {args.n_rows} rows × {args.n_features} features{' + weights' * args.weights}"
          f"{f' + {args.clusters} cluster ids' if args.clusters else ''} + 1 target ({size / 1e9:.2f} GB, "
          f"{args.dtype}, {args.format}) to {out} in {time.perf_counter() - start:.1f} s; true weights in "
          f"{out / 'truth.json'}")
    sides = (f" --data.weights {truth['weights_column']}" if "weights_column" in truth else "") + \
        (f" --data.clusters {truth['clusters_column']} --solver exact" if "clusters_column" in truth else "")
    print(f"Train on it: {command('fit')} --data {out}{sides}")
    return 0
