"""The exact room's subcommand of ``lr-lightning`` (:mod:`lr_lightning.core.main` reads ``COMMANDS``): delete
``lr_lightning/exact`` and ``lr-lightning nist`` is "not an installed command", the rest unchanged."""

COMMANDS = {"nist": ("lr_lightning.exact.nist:main", "LRE on NIST's linear least-squares reference datasets "
                     "(--data_dir, or LR_LIGHTNING_NIST_DIR)")}
