"""--plot with the exact solver draws the fit."""

from __future__ import annotations

import struct

from lr_lightning.core.cli import fit_main
from tests.conftest import run_main


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", head
    return struct.unpack(">II", head[16:24])


def test_plot_with_the_exact_solver_draws_the_fit(tmp_path):
    # Was silently ignored: no file, no word.
    (tmp_path / "d.csv").write_text("x,y\n" + "".join(f"{i},{3 * i + 1 + (i % 3)}\n" for i in range(30)))
    done = run_main(fit_main, "--solver", "exact", "--data", "d.csv", "--plot", "fit.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Plot: fit.png" in done.stdout.splitlines()
    # The fit panel alone (6 x 4.5 inches at 100 dpi): there is no loss curve to draw beside it.
    assert _png_size(tmp_path / "fit.png") == (600, 450)
