"""The exact benchmark's in-memory table (``scripts/benchmark.py --exact true``): every row, its ratios, and ours
agreeing with each library's answer to the same question (plain, weighted, clustered)."""

from __future__ import annotations

from lr_lightning.benchmark import exact


def test_table_has_every_row_and_ours_agrees_with_each_library(capsys, monkeypatch) -> None:
    monkeypatch.setattr(exact, "PAUSE", 0.0)  # the pause before each timed call is for the real run's timings
    table = exact.in_memory(3000, 3, repeats=2)
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("  round ")]
    # Ours and numpy's rounds first, then the others' (statsmodels' big runs must not precede a timed fit of ours).
    ran = [line.split(", ", 1)[1].rsplit(":", 1)[0] for line in progress]
    assert len(ran) == 2 * len(exact.SOLVERS)
    assert set(ran[:2 * len(exact.FLOOR_ROUNDS)]) == set(exact.FLOOR_ROUNDS)
    lines = table.splitlines()
    assert "vs ours" in lines[1] and "vs numpy" in lines[1]
    rows = {}
    for line in lines[2:-1]:  # the longest name that starts the line ("statsmodels" starts "statsmodels WLS" too)
        name = max((n for n in exact.SOLVERS if line.startswith(n + " ")), key=len)
        rows[name] = _fields(line[len(name):])
    assert set(rows) == set(exact.SOLVERS)
    assert rows["lr_lightning"][1] == "1.00x" and rows[exact.NUMPY][2] == "1.00x"  # each against itself
    # The 1,000 clusters of the default run hold 3 rows each here: CR1 is still defined (G > 1), and compared.
    for name in ("numpy XᵀX + solve (bare)", "scikit-learn", "statsmodels", "statsmodels WLS",
                 "statsmodels OLS cluster"):
        assert float(rows[name][4]) < 1e-8, name  # coefficients
    for name in ("statsmodels", "statsmodels WLS", "statsmodels OLS cluster"):
        assert float(rows[name][5]) < 1e-8, name  # standard errors (the clustered row: CR1 against CR1)
    assert lines[-1].startswith("spread over the rounds")


def _fields(rest: str) -> list[str]:
    """A row after its name: seconds, vs ours, vs numpy, peak RSS, coef diff, stderr diff, compared with."""
    fields = rest.split()
    return [*fields[:3], " ".join(fields[3:5]), *fields[5:]] if fields[4] == "GB" else fields
