"""The datamodule family in one import: the base and every source, each defined in a module of its own
(:mod:`~lr_lightning.core.data.datamodule`, ``tutorial``, ``synthetic``, ``csv_file``, ``npy``, ``parquet``,
``paths``).

Importing ``RegressionDataModule`` from :mod:`lr_lightning.core.data` imports this module, so its subclasses are
loaded with it: the command line finds a class by its short name (``--data CSVDataModule``) among the loaded
subclasses. Saved configs that name this module (``lr_lightning.core.data.datamodules.CSVDataModule``) still load.
"""

from lr_lightning.core.data.csv_file import CSVDataModule
from lr_lightning.core.data.datamodule import RegressionDataModule
from lr_lightning.core.data.inputs import as_columns, check_memory
from lr_lightning.core.data.npy import NpyDataModule
from lr_lightning.core.data.parquet import ParquetDataModule
from lr_lightning.core.data.paths import datamodule_for_path
from lr_lightning.core.data.synthetic import SyntheticDataModule
from lr_lightning.core.data.tutorial import TutorialDataModule

__all__ = ["CSVDataModule", "NpyDataModule", "ParquetDataModule", "RegressionDataModule", "SyntheticDataModule",
           "TutorialDataModule", "as_columns", "check_memory", "datamodule_for_path"]
