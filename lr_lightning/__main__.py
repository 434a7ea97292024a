"""``python -m lr_lightning COMMAND ...``: the same as the ``lr-lightning`` command."""

import sys

from lr_lightning.core.main import main

if __name__ == "__main__":
    sys.exit(main())
