"""Writes houses.csv, the small CSV that configs/csv_standardized.yaml trains on (run from the repository root):

    python configs/data/make_houses.py

300 rows, seeded: price = 400 + 3 * area - 10 * age + noise, with area in m² (about 40-200) and age in years (0-60):
columns on scales far apart, the case --data.standardize is for.
"""

from pathlib import Path

import numpy as np

rng = np.random.default_rng(0)
area = rng.uniform(40, 200, 300)
age = rng.uniform(0, 60, 300)
price = 400 + 3 * area - 10 * age + rng.normal(0, 20, 300)
rows = "\n".join(f"{a:.1f},{g:.1f},{p:.1f}" for a, g, p in zip(area, age, price, strict=True))
(Path(__file__).parent / "houses.csv").write_text("area,age,price\n" + rows + "\n")
