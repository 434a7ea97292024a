"""Data: ``RegressionDataModule`` and the tables it reads."""
