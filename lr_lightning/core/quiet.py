"""Output a user can act on: Lightning's start-up chatter off, Python warnings as one line each.

Lightning prints banners and tips at INFO level (``GPU available: ...``, a litlogger advert, ``Trainer(
limit_val_batches=0) was configured ...``), Lightning 2.6 triggers a torch 2.13 deprecation warning (``LeafSpec``)
that no user of ours can act on, and it warns about things that are intended here: an empty validation loader
meaning "no validation", fewer steps per epoch than the logging interval on small data, ``sync_dist`` advice for
metrics torchmetrics has already synced, and the exact solver's lack of an optimizer. :func:`quiet_lightning` turns
exactly those off; ``RegressionModule.__init__`` calls it, as the command lines do, so the Python API is as quiet
as the command line. Real warnings stay: each is filtered by its own message. To see the banners again::

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.INFO)
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any, TextIO


def quiet_lightning() -> None:
    """Keep Lightning's output to what a user can act on (see the module's docstring)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    # Under DDP every process announces itself ("Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2"), each line
    # from another process, interleaved with the run's own output.
    logging.getLogger("lightning.fabric.utilities.distributed").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)", FutureWarning)
    # A datamodule without a validation split returns `[]` from val_dataloader: Lightning's own way of saying "no
    # validation loop" (nothing runs, no sanity check), about which it still warns that the list is empty.
    warnings.filterwarnings("ignore", r"Total length of `list` across ranks is zero", UserWarning)
    # On small data an epoch has fewer steps than log_every_n_steps (50): Lightning then logs once an epoch, as it
    # should, and warns about it on every run; the tutorial's four points would warn every time.
    warnings.filterwarnings("ignore", r"The number of training batches \(\d+\) is smaller than the logging interval",
                            UserWarning)
    # Our val/ and test/ metrics are torchmetrics objects, already summed across devices when computed: Lightning
    # cannot know that, and under DDP recommends sync_dist for each (a user's own keys still get the advice).
    warnings.filterwarnings("ignore", r"It is recommended to use `self.log\('(val|test)/", UserWarning)
    # The exact solver (LeastSquaresModule) has no optimizer by design: its passes are sums and its solve closed-form.
    warnings.filterwarnings("ignore", r"`LightningModule.configure_optimizers` returned `None`", UserWarning)


def one_line_warnings() -> None:
    """Show Python warnings as ``warning: <message>``, one line each, as the command lines print errors.

    Python's default adds the file, line number and source line of the code that warned: noise for someone running
    a script, who needs the message (which names the column, file or flag), not our source.
    """

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: TextIO | None = None,
             line: str | None = None, **_: Any) -> None:
        text = " ".join(str(message).split())  # one line, whatever the message's own line breaks
        print(f"warning: {text}", file=file if file is not None else sys.stderr)

    warnings.showwarning = show
