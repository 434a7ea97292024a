"""``fit.py --solver exact``: the exact least-squares fit, plugged into the command line's extension point
(:mod:`lr_lightning.core.solvers`), which imports this module because it is here. Delete ``lr_lightning/exact`` and
``--solver`` lists ``gradient`` alone.

Imported before ``--help`` answers: nothing heavy here, the solver's modules load when a hook runs.

>>> from lr_lightning.core.solvers import solver
>>> solver("exact").name
'exact'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lr_lightning.core.commands import UsageError, show
from lr_lightning.core.solvers import Solver, register

# Training's own flags: a closed-form fit in a few passes has no optimizer, schedule or resuming.
TRAINING_FLAGS = ("--optimizer", "--lr_scheduler", "--stop_below", "--resume", "--compile", "--checkpoint_every",
                  "--steps_per_call")


class ExactSolver(Solver):
    """The exact least-squares fit of the linear model (:class:`~lr_lightning.exact.LeastSquaresModule`), with its
    regression table written to ``statistics.json``."""

    name = "exact"
    help = ("exact: the exact least-squares fit of the linear model (a few passes over the data) with its regression "
            "table, written to statistics.json")

    def add_arguments(self, parser: Any) -> None:
        from jsonargparse import ActionYesNo

        parser.add_argument("--robust", action=ActionYesNo, default=False, help="--solver exact: also HC0-HC3 "
                            "(heteroscedasticity-consistent) standard errors, one more pass")
        parser.add_argument("--cluster", action=ActionYesNo, default=None, help="--solver exact: cluster-robust "
                            "(CR1) standard errors by --data.clusters (one column, or [A,B] for two-way); on "
                            "whenever --data.clusters is given")
        parser.add_argument("--cr3", action=ActionYesNo, default=False, help="--solver exact: also CR3 (cluster "
                            "jackknife) standard errors by one --data.clusters column (statistics.json's "
                            "stderr_cluster.CR3)")

    def check_flags(self, cfg: Any, argv: list[str]) -> None:
        if cfg.solver != self.name:
            if cfg.get("robust"):
                raise UsageError("--robust: robust standard errors come with --solver exact")
            if cfg.get("cluster") or _clusters(cfg) is not None:
                raise UsageError("--data.clusters: clustered standard errors come with --solver exact")
            if cfg.get("cr3"):
                raise UsageError("--cr3: CR3 standard errors come with --solver exact")
            return
        if cfg.get("cr3") and (_clusters(cfg) is None or cfg.get("cluster") is False):
            raise UsageError("--cr3: CR3 standard errors are clustered ones; they need --data.clusters NAME (and "
                             "not --no_cluster)")
        if cfg.get("cluster") and _clusters(cfg) is None:
            raise UsageError("--cluster: clustered standard errors need the cluster column: --data.clusters NAME "
                             "(or [A,B] for two-way)")
        flags = [a.split("=", 1)[0] for a in argv if a.startswith("--")]
        given = [f for f in flags if f.split(".")[0] in TRAINING_FLAGS]
        if given:
            raise UsageError(f"{given[0]}: not with --solver exact (a closed-form fit in a few passes: no optimizer, "
                             "schedule or resuming)")
        if not cfg.model.class_path.endswith(".LinearRegression"):
            raise UsageError(f"--model {cfg.model.class_path.rpartition('.')[2]}: --solver exact fits a linear model "
                             "(LinearRegression)")

    def prepare(self, cfg: Any) -> None:
        if cfg.data.init_args.get("dtype") is None:
            cfg.data.init_args.dtype = "float64"  # the solver computes in float64: a CSV's digits in float32 are lost

    def build_module(self, cfg: Any, dm: Any) -> Any:
        from lr_lightning.exact.least_squares_module import LeastSquaresModule

        cluster = bool(getattr(dm, "cluster_names", [])) if cfg.get("cluster") is None else bool(cfg.cluster)
        return LeastSquaresModule(bias=dm.bias, robust=cfg.robust, cluster=cluster, cr3=bool(cfg.get("cr3")))

    def check_data(self, module: Any, dm: Any) -> None:
        module.check_data(dm)

    def check_trainer(self, module: Any, trainer: Any, dm: Any) -> None:
        module.check_trainer(trainer, dm)

    def report(self, run: Any, seconds: float, metrics: dict[str, float]) -> None:
        """The regression table per target, statistics.json in the run's folder, and the summary's other lines."""
        from lr_lightning.exact import statistics

        tables = [statistics.format_table(s, target) for target, s in run.module.statistics.items()]
        path = Path(run.trainer.logger.log_dir) / "statistics.json"
        path.write_text(statistics.to_json(run.module.statistics) + "\n")
        print_exact_summary(run, seconds, metrics, tables, path)

    def plot_title(self, module: Any) -> str | None:
        passes = module.solver.passes
        return f"LinearRegression by exact least squares, {passes} pass{'es' if passes > 1 else ''}"

    def resume_problem(self, checkpoint: Any) -> str:
        # (--solver exact itself refuses --resume: a solve is a few passes, not training)
        if isinstance(checkpoint, Mapping) and "least_squares" in checkpoint:
            return ("solved exactly (--solver exact), with no optimizer state to continue training from; predict "
                    "with it (predict.py, evaluate.py) or start a new run without --resume")
        return ""

    def checkpoint_problem(self, checkpoint: Any) -> str:
        return unsolved_exact_fit(checkpoint)

    def aliased_columns(self, checkpoint: Any) -> list[str]:
        solved = checkpoint.get("least_squares") if isinstance(checkpoint, Mapping) else None
        return aliased_columns(solved)

    def reference(self, dm: Any) -> dict[str, Any] | None:
        from lr_lightning.exact.reference import optimum

        return optimum(dm)


def _clusters(cfg: Any) -> Any:
    """``--data.clusters`` as given (None without it)."""
    data = cfg.get("data")
    args = data.get("init_args") if data is not None and hasattr(data, "get") else None
    return args.get("clusters") if args is not None and hasattr(args, "get") else None


def unsolved_exact_fit(checkpoint: Any) -> str:
    """Why ``checkpoint`` holds no model ('' if it does): an exact least-squares run (``--solver exact``) stopped
    before its solve wrote ``least_squares.solved`` false, and its weights are the zeros it started from, which would
    predict as if fitted.

    >>> unsolved_exact_fit({"least_squares": {"solved": True}})
    ''
    """
    exact = checkpoint.get("least_squares") if isinstance(checkpoint, Mapping) else None
    if isinstance(exact, Mapping) and exact.get("solved") is not True:
        return ("an unfinished exact least-squares fit (least_squares.solved is false: the run stopped before the "
                "solve); it holds no fitted model, so fit again")
    return ""


def aliased_columns(solved: Any) -> list[str]:
    """The columns an exact fit (a checkpoint's ``least_squares`` entry) left aliased: their coefficients are null in
    its statistics and 0 in its network.

    >>> aliased_columns({"statistics": {"y": {"names": ["x0", "x1"], "coef": [1.0, None]}}})
    ['x1']
    """
    if not isinstance(solved, dict) or not isinstance(solved.get("statistics"), dict):
        return []
    return sorted({str(name) for s in solved["statistics"].values() if isinstance(s, dict)
                   for name, c in zip(s.get("names") or [], s.get("coef") or [], strict=False) if c is None})


def print_exact_summary(run: Any, seconds: float, metrics: dict[str, float], tables: list[str],
                        statistics: Path) -> None:
    """``--solver exact``: what was fitted on what, in how many passes, the regression table per target, the
    held-out metrics, and where the statistics, checkpoint and logs are."""
    dm, module, trainer = run.dm, run.module, run.trainer
    path = getattr(dm, "path", None)
    source = Path(path).name if path is not None else type(dm).__name__.removesuffix("DataModule").lower()
    passes = module.solver.passes
    print(f"\nFitted LinearRegression by exact least squares on {source} data ({dm.n_train} train, {dm.n_val} val, "
          f"{dm.n_test} test samples): {passes} pass{'es' if passes > 1 else ''} on "
          f"{trainer.strategy.root_device.type} in {seconds:.1f} s"
          + (f", {trainer.world_size} processes" if trainer.world_size > 1 else ""))
    for table in tables:
        print("\n" + table)
    shown = ["val/loss", "val/mae", "val/r2", "test/loss", "test/mae", "test/r2"]
    if any(k in metrics for k in shown):
        print("\n  " + ", ".join(f"{k} {metrics[k]:.6g}" for k in shown if k in metrics))
    print(f"Statistics: {show(statistics)}")
    from lr_lightning.core.callbacks import SaveLast

    saver = next(c for c in trainer.callbacks if isinstance(c, SaveLast))
    if saver.path.is_file():
        print(f"Checkpoint: {show(saver.path)} (predict.py and evaluate.py read it)")
    if trainer.logger is not None and trainer.logger.log_dir is not None:
        print(f"Logs: {trainer.logger.log_dir} (config.yaml repeats the run)")


register(ExactSolver())
