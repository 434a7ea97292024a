"""The tutorial's subcommand of ``lr-lightning`` (:mod:`lr_lightning.core.main` reads ``COMMANDS``): delete
``lr_lightning/tutorial`` and ``lr-lightning from-scratch`` is "not an installed command", the rest unchanged."""

COMMANDS = {"from-scratch": ("lr_lightning.tutorial.cli:main",
                             "the tutorial's stages from numpy to Lightning, side by side")}
