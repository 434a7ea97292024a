"""The checks and conversions of a datamodule's inputs: arrays to ``(n, columns)`` tensors, the serving dtype,
the memory a request needs. Shared by :class:`~lr_lightning.core.data.datamodule.RegressionDataModule` and its
sources.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from lr_lightning.core.basis import cell, labels, not_a_number, pandas_numbers, unmasked


def as_columns(values: Any, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``values`` as a 2-D ``(n_samples, n_columns)`` tensor of ``dtype``; a 1-D input becomes one column.

    The column matters: a ``(B, 1)`` prediction against a ``(B,)`` target broadcasts to ``(B, B)`` in the
    loss and silently trains the wrong model.

    >>> as_columns([1.0, 2.0, 3.0], "y").shape
    torch.Size([3, 1])
    """
    a = values = unmasked(values, name)  # named in the error below, whichever step fails
    try:
        if isinstance(values, torch.Tensor):
            a = values.detach()  # data, not a node of someone's autograd graph (in-place ops on it would fail)
        else:
            a = np.asarray(pandas_numbers(values))
            if not a.dtype.isnative:  # big-endian: torch takes native byte order only
                a = a.astype(a.dtype.newbyteorder("="))
        if isinstance(a, np.ndarray) and not a.flags.writeable and a.dtype != object:
            # A read-only array (a pandas frame's values under copy-on-write, a memory-mapped file) is copied: torch
            # warns that a tensor sharing it could write to memory that must not change.
            a = a.copy()
        t = torch.as_tensor(a)
    except (TypeError, ValueError) as e:  # strings, ragged lists, objects
        bad = not_a_number(a) if isinstance(a, np.ndarray) and a.dtype.kind in "OUS" else None
        if bad is not None:
            raise ValueError(f"{name}: expected an array of real numbers; "
                             f"{cell(bad[0], bad[1], a.shape[1] if a.ndim == 2 else 1, labels(values))}: {bad[2]!r} is "
                             "not a number") from None
        raise ValueError(f"{name}: expected an array of real numbers ({e})") from None
    if t.is_complex():
        raise ValueError(f"{name}: expected real numbers, got {t.dtype}")
    if t.ndim == 1:
        t = t.unsqueeze(1)
    if t.ndim != 2:
        raise ValueError(f"{name}: expected a 1-D or 2-D array (n_samples, n_columns), got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name}: no samples (shape {tuple(t.shape)})")
    t = t.to(dtype)
    # A non-finite value makes the sum non-finite: one read-only reduction decides the common case (an element-wise
    # check allocates a mask as large as the data; a per-column sum of a row-major block runs at a quarter of the
    # speed); only an overflowing sum needs the full check.
    if not (torch.isfinite(t.sum()) or torch.isfinite(t).all()):
        row, col = (~torch.isfinite(t)).nonzero()[0].tolist()
        raise ValueError(f"{name}: non-finite value {t[row, col].item()} at "
                         f"{cell(row, col, t.shape[1], labels(values))}")
    return t


SEED_MAX = 2**32 - 1  # numpy's and Lightning's seeds are unsigned 32-bit integers


def is_int(value: Any) -> bool:
    """A whole number, and not a bool (``True`` is an ``int`` to Python, but ``batch_size=True`` is a mistake)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_memory(nbytes: int, what: str) -> None:
    """Refuse, with a ValueError saying how much, what would not fit in this machine's memory: asking for it anyway
    ends in the kernel killing the process, or hours of swapping, not in an error message."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    if total and nbytes > total:
        raise ValueError(f"{what} need about {nbytes / 1e9:.3g} GB of memory; this machine has {total / 1e9:.3g} GB")


def serving_dtype(dtype: torch.dtype | None, *arrays: Any) -> torch.dtype:
    """The dtype a datamodule serves: ``dtype`` when given, else float64 if any of ``arrays`` is a float64 array or
    tensor (float64 in stays float64), else float32 (lists, integers, float32 and smaller floats).

    >>> import numpy as np
    >>> serving_dtype(None, np.zeros(3), [1.0]), serving_dtype(None, [1.0, 2.0])
    (torch.float64, torch.float32)
    >>> serving_dtype(torch.float32, np.zeros(3))
    torch.float32
    """
    if dtype is not None:
        if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise ValueError(f"dtype must be a torch floating dtype (torch.float32 or torch.float64), got {dtype!r}")
        return dtype
    wide = any(_is_float64(a) for a in arrays)
    return torch.float64 if wide else torch.float32


def _is_float64(a: Any) -> bool:
    """Whether ``a`` holds float64 numbers: a tensor, a numpy array in either byte order (``>f8`` is not equal to
    ``np.float64``, and big-endian files were served as float32), or a pandas frame (``dtypes``, one per column;
    nullable ``Float64`` columns too)."""
    dtypes = getattr(a, "dtypes", None) if getattr(a, "dtype", None) is None else [a.dtype]
    if dtypes is None:
        return False
    for dt in dtypes:
        dt = getattr(dt, "numpy_dtype", dt)  # pandas' extension dtypes name their numpy dtype
        if dt == torch.float64 or (isinstance(dt, np.dtype) and dt.kind == "f" and dt.itemsize == 8):
            return True
    return False


def torch_dtype(dtype: Any) -> torch.dtype | None:
    """``None``, a ``torch.dtype``, or its name as a YAML config gives it (``"float32"``, ``"torch.float64"``)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype.removeprefix("torch."), None), torch.dtype):
        return getattr(torch, dtype.removeprefix("torch."))
    raise ValueError(f"dtype must be float32 or float64 (or a torch floating dtype), got {dtype!r}")


def table_dtype(dtype: Any, own: np.dtype) -> torch.dtype:
    """The serving dtype for a file's rows: ``dtype`` when given, else float64 for float64 files (``own``), else
    float32."""
    return serving_dtype(torch_dtype(dtype), np.empty(0, own))


def holds(dtype: torch.dtype, *values: Any) -> bool:
    """Whether ``dtype`` holds every number of ``values`` as they are: each is floating point (an array, tensor, pandas
    object or table with a ``dtype``) no wider than ``dtype``. Lists, integers and anything of unknown dtype are not
    known to fit."""
    for v in values:
        own = getattr(v, "dtype", None)
        if own is None and hasattr(v, "dtypes"):  # a DataFrame: its columns' common dtype, if they are all floats
            kinds = list(v.dtypes)
            own = np.result_type(*kinds) if kinds and all(isinstance(d, np.dtype) and d.kind == "f"
                                                           for d in kinds) else None
        if isinstance(own, np.dtype):
            own = torch.from_numpy(np.empty(0, own)).dtype if own in (np.float16, np.float32, np.float64) else None
        if not (isinstance(own, torch.dtype) and own.is_floating_point and torch.promote_types(own, dtype) == dtype):
            return False
    return True


def check_range(t: torch.Tensor, name: str, dtype: torch.dtype, values: Any) -> None:
    """Refuse a value of ``t`` beyond what ``dtype`` holds (it would be served as an inf), naming its row and column:
    the check the conversion to ``dtype`` made, before that conversion was put off until training needs it."""
    limit = torch.finfo(dtype).max
    if t.numel() and (t.max() > limit or t.min() < -limit):
        row, col = (t.abs() > limit).nonzero()[0].tolist()
        raise ValueError(f"{name}: {t[row, col].item():g} at {cell(row, col, t.shape[1], labels(values))} is beyond "
                         f"±{limit:g}, the range of {str(dtype).removeprefix('torch.')}; pass dtype='float64'")


def to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()
