"""``scripts/from_scratch.py``: the five stages of :mod:`lr_lightning.tutorial.from_scratch` side by side.

The flags are :func:`compare`'s parameters (jsonargparse reads its signature and docstring), so ``--help`` answers
before torch and Lightning load: the stages are imported only once the flags are read.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from jsonargparse import ActionYesNo
from jsonargparse.typing import PositiveFloat, PositiveInt

from lr_lightning.core.commands import Parser, entry_point, quiet


def compare(x: Sequence[float] = (1.0, 2.0, 3.0, 4.0), true_w: float = 2.0, true_b: float = 0.0,
            lr: PositiveFloat = 0.01, epochs: PositiveInt = 20, print_every: PositiveInt | None = None,
            bias: bool = False, stop_below: float | None = None, buggy_gradient: bool = False,
            predict_at: float = 5.0) -> int:
    """The tutorial's stages, from numpy by hand to Lightning, on the same data: one table of w and loss per epoch,
    and a check that all stages agree. Exit status 1 if one differs from numpy by more than 1e-5 (relative).

    Args:
        x: input values, as a list: --x [1,2,3,4]
        true_w: the data is y = true_w·x + true_b
        true_b: see true_w
        lr: learning rate
        epochs: epochs (full-batch gradient steps) per stage
        print_every: print every N-th epoch (default: about 10 rows)
        bias: fit y = w·x + b instead of y = w·x
        stop_below: stop every stage once the loss is below this (the tutorial's `if l < 0.001: break`)
        buggy_gradient: add a column for the tutorial video's np.dot(2*x, y_pred - y).mean(), which is n times
            too large
        predict_at: x to predict before and after training
    """
    from lr_lightning.tutorial.from_scratch import STAGES, first_disagreement, numpy_stage, run_stages

    y = [true_w * v + true_b for v in x]
    runs = run_stages(x, y, lr=lr, epochs=epochs, bias=bias, stop_below=stop_below)
    columns = dict(runs)
    if buggy_gradient:
        columns["numpy, buggy gradient"] = numpy_stage(x, y, lr=lr, epochs=epochs, bias=bias, stop_below=stop_below,
                                                       buggy_gradient=True)
    model = "y = w·x + b" if bias else "y = w·x"
    print(f"Fitting {model} to x = {' '.join(f'{v:g}' for v in x)}, y = {true_w:g}·x"
          + (f" {true_b:+g}" if true_b else "") + f"; lr {lr:g}, full batch, float32, from w = 0\n")
    print("epoch | " + " | ".join(f"{name:^21}" for name in columns))
    print("      | " + " | ".join(f"{'w':>9} {'loss':>11}" for _ in columns))
    n = max(len(steps) for steps in columns.values())
    every = print_every or max(1, n // 10)
    for epoch in range(1, n + 1):
        if epoch % every and epoch != n and epoch != 1:
            continue
        cells = [f"{s[epoch - 1].w:9.5f} {s[epoch - 1].loss:11.6g}" if epoch <= len(s) else f"{'(stopped)':^21}"
                 for s in columns.values()]
        print(f"{epoch:5d} | " + " | ".join(cells))

    final = runs["numpy"][-1]
    print(f"\nPrediction for x = {predict_at:g}: 0.000 before training (w = 0), "
          f"{final.w * predict_at + final.b:.3f} after (w = {final.w:.6g}" + (f", b = {final.b:.6g})" if bias else ")"))
    if buggy_gradient:
        buggy, right = columns["numpy, buggy gradient"][0].w, runs["numpy"][0].w
        print(f"Buggy gradient: np.dot(2*x, y_pred - y) already sums over the {len(x)} samples, so .mean() averages "
              f"one number; the step is {len(x)}x too large: w = {buggy:.3f} after epoch 1, not {right:.3f}.")
    problem = first_disagreement(runs, rtol=1e-5)
    if problem:
        print(f"error: the stages disagree by more than 1e-5 (relative) at {problem}", file=sys.stderr)
        return 1
    print(f"All {len(STAGES)} stages agree to 1e-5 (relative; losses to float32 rounding) at every epoch.")
    return 0


class _SwitchParser(Parser):
    """The package's parser, with bool flags as switches: ``--bias`` alone means true; ``--bias false`` and
    ``--no_bias`` also work (jsonargparse's ``ActionYesNo``, its value optional)."""

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("type") is bool and args and str(args[0]).startswith("--"):
            del kwargs["type"]
            kwargs.update(action=ActionYesNo(), nargs="?")
        return super().add_argument(*args, **kwargs)


def parser() -> Parser:
    p = _SwitchParser(prog="from_scratch.py", description=compare.__doc__.split("\n\n")[0])
    p.add_function_arguments(compare, as_group=False)
    return p


@entry_point
def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not args.x:
        p.error("--x: expected at least one value, got []")
    quiet()
    return compare(**args.as_dict())


if __name__ == "__main__":
    sys.exit(main())
