"""The classic PyTorch tutorial in five stages, from numpy by hand to Lightning (``from_scratch.py``)."""
