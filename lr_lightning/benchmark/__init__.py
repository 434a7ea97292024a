"""Measured speed: the hand-written loop against Lightning, in memory and from files (``speed.py``)."""
