"""Start-up time of the tutorial run (``scripts/benchmark.py --startup true``): where ``python scripts/fit.py`` spends
the time beyond ``python -c "import torch, lightning"``.

Each round runs, each in a fresh process and a fresh working directory:

- ``baseline``: ``python -c "import torch, lightning"``, the floor no run can go below;
- ``frozen``: the same, then ``gc.freeze()``, as the command line does: without it the interpreter's exit walks every
  object the imports made, a cost the baseline pays and the run no longer does, so "run minus baseline" alone
  understates what the run itself costs;
- ``run``: the tutorial run exactly as ``scripts/fit.py`` starts it (its output discarded);
- ``phases``: the same run with timers around its parts (:func:`child`), reporting each part's own seconds (a part's
  time excludes the parts timed inside it), its garbage collections, and when the interpreter started and ended.

The rounds are interleaved, so a machine that speeds up or slows down meanwhile (a shared one does) affects all
three alike; a first, uncounted round writes the bytecode caches and warms the disk cache. The table gives the min
and the median over the rounds; the difference is taken round by round, run minus baseline.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The part of the run each timer measures, in the order the run reaches them (the table's order).
PHASES = {
    "python": "python start-up (interpreter, site)",
    "torch_lightning": "import torch, lightning",
    "import": "imports: lr_lightning, TensorBoard",
    "parse": "parse: parser built, flags read",
    "setup": "data, module, reference fit",
    "trainer": "Trainer set-up",
    "run_folder": "run folder, logger, config.yaml, rest",
    "training": "training (100 epochs)",
    "figures": "figures, histograms (TensorBoard)",
    "checkpoints": "checkpoints (last.ckpt, best.ckpt)",
    "tensorboard": "TensorBoard: writer, scalars, hparams",
    "summary": "summary",
    "exit": "interpreter exit",
}
RUN = "import sys; from lr_lightning.core.cli import fit_main; sys.exit(fit_main())"  # what scripts/fit.py runs
BASELINE = "import torch, lightning"
FROZEN = "import gc, torch, lightning; gc.freeze()"


class Timers:
    """Exclusive seconds per phase: a timed call inside another timed call is taken out of the outer one's time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.stack: list[list[Any]] = []  # [phase, start, seconds of the calls timed inside it]

    def wrap(self, owner: Any, name: str, phase: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.stack.append([phase, time.perf_counter(), 0.0])
            try:
                return original(*args, **kwargs)
            finally:
                phase_, start, inner = self.stack.pop()
                total = time.perf_counter() - start
                self.seconds[phase_] = self.seconds.get(phase_, 0.0) + total - inner
                if self.stack:
                    self.stack[-1][2] += total

        setattr(owner, name, timed)


def child() -> dict[str, Any]:
    """The tutorial run, timed by parts (in the process ``--startup`` starts): what it prints is JSON."""
    started = time.time()  # the parent's clock too: its own start and end give the interpreter's start and exit
    t = time.perf_counter()
    import lightning  # noqa: F401
    import torch  # noqa: F401

    seconds = {"torch_lightning": time.perf_counter() - t}
    collections: dict[str, list[float]] = {"count": [0, 0, 0], "seconds": [0.0, 0.0, 0.0]}
    gc_start: list[float] = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            collections["count"][info["generation"]] += 1
            collections["seconds"][info["generation"]] += time.perf_counter() - gc_start[0]

    gc.callbacks.append(on_gc)
    t = time.perf_counter()
    # The modules the timers hook into are imported here, before the run would: their import time is this line's.
    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.tensorboard import SummaryWriter

    import lr_lightning.core.cli as cli
    from lr_lightning.core import callbacks, run, summary

    seconds["import"] = time.perf_counter() - t

    timers = Timers()
    timers.wrap(cli, "fit_main", "run_folder")  # what no other timer claims: logger, run folder, config.yaml, seeding
    timers.wrap(cli, "parse", "parse")
    timers.wrap(run, "instantiate", "setup")
    timers.wrap(run, "build_parts", "setup")
    timers.wrap(run, "make_trainer", "trainer")
    timers.wrap(Trainer, "fit", "training")
    timers.wrap(callbacks.TensorBoardFigures, "on_train_epoch_end", "figures")
    timers.wrap(Trainer, "save_checkpoint", "checkpoints")
    for name in ("log_metrics", "log_hyperparams", "save", "finalize"):
        timers.wrap(TensorBoardLogger, name, "tensorboard")
    timers.wrap(SummaryWriter, "__init__", "tensorboard")
    timers.wrap(summary, "print_summary", "summary")
    stdout, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115 - the run's summary is not the report
    sys.argv = ["fit.py"]  # argv None, as scripts/fit.py calls it: the command line's own behaviour (gc.freeze)
    try:
        code = cli.fit_main()
    finally:
        sys.stdout.close()
        sys.stdout = stdout
    gc.callbacks.remove(on_gc)
    return {"code": code, "seconds": seconds | timers.seconds, "gc": collections, "started": started,
            "ended": time.time()}


def _environment() -> dict[str, str]:
    """The children import this copy of the package, from whatever directory they run in."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system, all threads) of one fresh process in a fresh directory. CPU time
    moves less than wall time when other work shares the machine."""
    with tempfile.TemporaryDirectory() as cwd:
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        now = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, (now.ru_utime + now.ru_stime) - (used.ru_utime + used.ru_stime)


def _phases(env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as cwd:
        start = time.time()
        done = subprocess.run([sys.executable, "-m", "lr_lightning.benchmark.startup"], cwd=cwd, env=env,
                              capture_output=True, text=True)
        end = time.time()
    if done.returncode != 0:
        raise RuntimeError(f"the timed run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["seconds"]["python"] = out["started"] - start
    out["seconds"]["exit"] = end - out["ended"]
    return end - start, out


def format_table(baseline: list[tuple[float, float]], frozen: list[tuple[float, float]],
                 runs: list[tuple[float, float]], phases: list[dict[str, Any]], wall: list[float], head: str) -> str:
    """``baseline``, ``frozen`` and ``runs``: (wall, CPU) seconds per round; ``phases``: what each timed process
    reported, ``wall``: its wall-clock seconds."""
    def row(name: str, values: list[float], cpu: list[float] | None = None) -> str:
        text = f"{name:<46} {min(values):7.2f} {statistics.median(values):7.2f}"
        return text + (f" {min(cpu):9.2f} {statistics.median(cpu):7.2f}" if cpu else "")

    def column(pairs: list[tuple[float, float]], i: int) -> list[float]:
        return [pair[i] for pair in pairs]

    lines = [head, f"{'':<46} {'min':>7} {'median':>7} {'CPU min':>9} {'median':>7}  (seconds)",
             row(f"baseline: python -c {BASELINE!r}", column(baseline, 0), column(baseline, 1)),
             row("frozen baseline: the same, then gc.freeze()", column(frozen, 0), column(frozen, 1)),
             row("the run: python scripts/fit.py", column(runs, 0), column(runs, 1)),
             row("difference (run - baseline, per round)",
                 *([r[i] - b[i] for r, b in zip(runs, baseline, strict=True)] for i in (0, 1))),
             row("difference (run - frozen baseline)",
                 *([r[i] - b[i] for r, b in zip(runs, frozen, strict=True)] for i in (0, 1))),
             "", "the run by parts (a third process with timers, each round; wall clock):"]
    for key, name in PHASES.items():
        lines.append(row(f"  {name}", [p["seconds"].get(key, 0.0) for p in phases]))
    lines.append(row("  total (timed process, wall clock)", wall))
    beyond = [sum(v for k, v in p["seconds"].items() if k not in ("python", "torch_lightning")) for p in phases]
    lines.append(row("  beyond import torch, lightning", beyond))
    gc_seconds = [sum(p["gc"]["seconds"]) for p in phases]
    full = [p["gc"]["count"][2] for p in phases]
    lines.append(row(f"  of which garbage collection ({statistics.median(full):.0f} full)", gc_seconds))
    return "\n".join(lines)


PREDICT = "import sys; from lr_lightning.core.predict import predict_main; sys.exit(predict_main())"  # predict.py


def _exported(env: dict[str, str], folder: Path) -> tuple[str, str] | None:
    """A checkpoint of the tutorial run and its ONNX export in ``folder`` (for the predict rows), or None when the
    ``[export]`` extra is not installed."""
    subprocess.run([sys.executable, "-c", RUN], cwd=folder, env=env, capture_output=True, check=True)
    ckpt = str(folder / "lightning_logs/version_0/checkpoints/last.ckpt")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    export = "import sys; from lr_lightning.core.export import export_main; sys.exit(export_main())"
    subprocess.run([sys.executable, "-c", export, "--ckpt", ckpt, "--out", str(folder / "model.onnx")], cwd=folder,
                   env=env, capture_output=True, check=True)
    return ckpt, str(folder / "model.onnx")


def run(repeats: int, head: str) -> int:
    """``repeats`` interleaved rounds of baseline, frozen baseline, run and timed run, after one uncounted warm-up
    round; then predictions for three rows from the run's checkpoint and from its ONNX export, in interleaved rounds
    too."""
    env = _environment()
    baseline: list[tuple[float, float]] = []
    frozen: list[tuple[float, float]] = []
    runs: list[tuple[float, float]] = []
    phases: list[dict[str, Any]] = []
    wall: list[float] = []
    steps: list[tuple[str, Callable[[], None]]] = [
        ("baseline", lambda: baseline.append(_timed(["-c", BASELINE], env))),
        ("frozen", lambda: frozen.append(_timed(["-c", FROZEN], env))),
        ("run", lambda: runs.append(_timed(["-c", RUN], env))),
        ("phases", lambda: (lambda w, p: (wall.append(w), phases.append(p)))(*_phases(env))),
    ]
    for step in steps:  # warm-up: bytecode caches written, files in the page cache; then forgotten
        step[1]()
    baseline.clear(), frozen.clear(), runs.clear(), phases.clear(), wall.clear()
    for round_ in range(1, repeats + 1):
        for _, step in steps:
            step()
        print(f"  round {round_}: baseline {baseline[-1][0]:.2f} s, run {runs[-1][0]:.2f} s, "
              f"timed run {wall[-1]:.2f} s", file=sys.stderr)
    print(format_table(baseline, frozen, runs, phases, wall, head))
    with tempfile.TemporaryDirectory() as folder:
        files = _exported(env, Path(folder))
        if files is None:
            print("\npredict.py --onnx: not timed (onnxruntime is missing: pip install -e '.[export]' in the clone)")
            return 0
        ckpt, onnx = files
        rows = ["--x", "1", "2", "3"]
        timed = {"predict.py --ckpt last.ckpt --x 1 2 3": ["-c", PREDICT, "--ckpt", ckpt, *rows],
                 "predict.py --onnx model.onnx --x 1 2 3": ["-c", PREDICT, "--onnx", onnx, *rows]}
        seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in timed}
        for _ in range(repeats + 1):  # the first round is a warm-up, not counted
            for name, args in timed.items():
                seconds[name].append(_timed(args, env))
        print(f"\npredictions without training (fresh processes, {repeats} rounds after a warm-up):")
        for name, pairs in seconds.items():
            walls, cpus = [p[0] for p in pairs[1:]], [p[1] for p in pairs[1:]]
            print(f"{name:<46} {min(walls):7.2f} {statistics.median(walls):7.2f} {min(cpus):9.2f} "
                  f"{statistics.median(cpus):7.2f}")
    return 0


if __name__ == "__main__":  # `python -m lr_lightning.benchmark.startup`: the timed run, one JSON line
    print(json.dumps(child()))
