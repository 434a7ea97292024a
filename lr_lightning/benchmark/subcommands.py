"""The benchmark's subcommands of ``lr-lightning`` (:mod:`lr_lightning.core.main` reads ``COMMANDS``): delete
``lr_lightning/benchmark`` and they are "not an installed command", the rest unchanged."""

COMMANDS = {
    "make-data": ("lr_lightning.benchmark.make_data:main",
                  "write a synthetic dataset as .npy shards or Parquet files (any size)"),
    "benchmark": ("lr_lightning.benchmark.speed:main",
                  "time a hand-written loop, Lightning + DataLoader and this package side by side"),
}
