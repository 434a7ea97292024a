"""Scaling out: exact sharding across DDP ranks, a real 2-process DDP run, and memory-mapped data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lr_lightning import LinearRegression, NpyDataModule, RegressionDataModule, RegressionModule, SyntheticDataModule
from lr_lightning.benchmark.make_data import main as make_data_main
from lr_lightning.benchmark.make_data import write_synthetic
from lr_lightning.core.cli import fit_main
from lr_lightning.core.data.loaders import BlockBatches, BlockOrder, TensorBatches, rank_slices
from lr_lightning.core.data.tables import NpyTable

from ..conftest import make_trainer, run_main, run_script, sgd


# ------------------------------------------------------------------------------------------- sharding
@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize(("n", "batch"), [(100, 8), (101, 8), (7, 2), (3, 4), (48, 8)])
def test_every_position_is_served_exactly_once_across_ranks(world, n, batch):
    per_rank = [rank_slices(n, batch, world, r) for r in range(world)]
    assert len({len(s) for s in per_rank}) == 1  # the same number of steps on every rank, or DDP hangs
    served = [i for slices in per_rank for a, b in slices for i in range(a, b)]
    assert sorted(served) == list(range(n))  # no sample twice (no padding), none left out
    for step in zip(*per_rank, strict=True):  # each step's slices differ by at most one row
        sizes = [b - a for a, b in step]
        assert max(sizes) - min(sizes) <= 1 and max(sizes) <= batch


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_together_serve_the_single_process_batches_of_the_global_size(world):
    x = torch.arange(103.0).unsqueeze(1)
    single = TensorBatches(x, -x, batch_size=4 * world, shuffle=True, seed=3)
    ranks = [TensorBatches(x, -x, batch_size=4, shuffle=True, seed=3, rank=r, world_size=world)
             for r in range(world)]
    for epoch in range(2):
        for loader in [single, *ranks]:
            loader.sampler.set_epoch(epoch)
        steps = list(zip(*[list(r) for r in ranks], strict=True))
        assert len(steps) == len(single) == len(ranks[0])
        for (xs, ys), pieces in zip(single, steps, strict=True):
            assert torch.equal(torch.cat([p[0] for p in pieces]), xs)  # same samples, same global order
            assert torch.equal(torch.cat([p[1] for p in pieces]), ys)
        served = torch.cat([p[0] for step in steps for p in step]).flatten()
        assert sorted(served.tolist()) == x.flatten().tolist()


def test_validation_batches_count_each_sample_once_on_uneven_ranks():
    dm = SyntheticDataModule(n_samples=57, val_fraction=0.4, batch_size=4)  # 23 val rows, 3 ranks
    dm.setup()
    val = dm.splits["val"][0]
    pieces = [TensorBatches(*dm.splits["val"], 4, rank=r, world_size=3) for r in range(3)]
    served = torch.cat([x for loader in pieces for x, _ in loader])
    assert len(served) == len(val) == 23
    assert sorted(served.flatten().tolist()) == sorted(val.flatten().tolist())


def test_an_empty_slice_trains_with_zero_loss_and_zero_gradient():
    module = RegressionModule(LinearRegression(2))
    loss, preds, _ = module.model_step((torch.zeros(0, 2), torch.zeros(0, 1)))
    loss.backward()
    assert loss.item() == 0.0 and preds.shape == (0, 1)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in module.parameters())


# ------------------------------------------------------------------------------------------ real DDP
def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _fit(tmp_path, name, *flags, in_process=False):
    # 645 samples: 129 val (uneven across 2 ranks) and 516 train, 16 global batches of 32 and one of 4 (2 + 2).
    common = ["--data", "synthetic", "--data.n_samples", "645", "--data.n_features", "3", "--optimizer.lr", "0.05",
              "--accelerator", "cpu", "--progress_bar", "false", "--log_dir", str(tmp_path / name)]
    if in_process:  # one process: no new Python needed
        result = run_main(fit_main, *common, *flags, cwd=tmp_path)
    else:  # Lightning's DDP launcher starts the other process by running this script again
        result = run_script("fit.py", *common, *flags, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow  # 20 s: two DDP processes (gloo) twice, each a new Python; one process in this one
@pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32", reason="needs torch.distributed")
def test_two_ddp_processes_train_like_one_process_with_twice_the_batch_and_resume(tmp_path):
    single = _fit(tmp_path, "single", "--data.batch_size", "32", "--max_epochs", "4", in_process=True)
    ddp = ["--data.batch_size", "16", "--devices", "2", "--strategy", "ddp"]
    first = _fit(tmp_path, "ddp", *ddp, "--max_epochs", "2")
    resumed = _fit(tmp_path, "ddp", *ddp, "--max_epochs", "4", "--resume", "last")
    assert "batch size 16 per device, 32 per step" in first.stdout
    # steps_per_call auto: blocks of 4 steps (a quarter of a 17-step epoch) on both sides, so this equality and the
    # resume hold for K > 1 under DDP.
    assert "4 optimizer steps per call" in first.stdout and "4 optimizer steps per call" in single.stdout
    assert first.stdout.count("Trained LinearRegression") == 1  # one summary, from rank 0
    # Rank 0 alone writes logs and checkpoints: one run folder, continued by the resumed run.
    assert [p.name for p in (tmp_path / "ddp").iterdir()] == ["version_0"]
    expected = _state(tmp_path / "single/version_0/checkpoints/last.ckpt")
    got = _state(tmp_path / "ddp/version_0/checkpoints/last.ckpt")
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-5)  # measured: 6e-8 apart
    # Validation counts each of the 129 samples once (padding would repeat some and change the MSE).
    # Measured: equal to the printed digits.
    assert _metric(resumed.stdout, "val/loss") == pytest.approx(_metric(single.stdout, "val/loss"), rel=1e-4)


def _metric(stdout: str, key: str) -> float:
    line = next(line for line in stdout.splitlines() if f"{key} " in line)
    return float(line.split(f"{key} ")[1].split(",")[0])


# ------------------------------------------------------------------------------------ memory-mapped data
def _npy(tmp_path, n=1000, k=3, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k))
    data = np.column_stack([x, x @ np.arange(1.0, k + 1) + 0.5 + 0.01 * rng.standard_normal(n)]).astype(dtype)
    np.save(tmp_path / "d.npy", data)
    return tmp_path / "d.npy", data


@pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")  # train only
def test_memory_mapped_training_equals_in_memory_training_on_the_same_batches(tmp_path):
    path, data = _npy(tmp_path)
    dm = NpyDataModule(path, batch_size=32, val_fraction=0.2, block_rows=100, seed=1)
    dm.setup()
    mapped = dm.train_dataloader()
    x, y = torch.from_numpy(data[:, :3]), torch.from_numpy(data[:, 3:])
    in_memory = TensorBatches(x, y, 32, sampler=BlockOrder(dm.ranges["train"], shuffle=True, seed=1))
    for xb, yb in zip(mapped, in_memory, strict=True):
        assert torch.equal(xb[0], yb[0]) and torch.equal(xb[1], yb[1])

    def train(loader):
        torch.manual_seed(0)
        module = RegressionModule(LinearRegression(3), optimizer=sgd(0.05))
        make_trainer(max_epochs=3, log_every_n_steps=5, limit_val_batches=0).fit(module, train_dataloaders=loader)
        return module.model.linear

    a, b = train(dm.train_dataloader()), train(in_memory)
    # Not bitwise: the same batch at another memory alignment may take another SIMD path in the matmul. Measured:
    # 1.2e-7 apart; the weights 1.3e-3 from the truth.
    torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.bias, b.bias, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.weight.detach().numpy(), [[1, 2, 3]], atol=0.05)


def test_block_split_and_order_cover_every_row_once_and_shuffle_blocks_per_epoch(tmp_path):
    path, _ = _npy(tmp_path, n=1003)
    dm = NpyDataModule(path, val_fraction=0.1, test_fraction=0.1, block_rows=64)
    dm.setup()
    rows = [i for split in dm.ranges.values() for a, b in split for i in range(a, b)]
    assert sorted(rows) == list(range(1003))
    assert {k: sum(b - a for a, b in v) for k, v in dm.ranges.items()} == {"test": 100, "val": 100, "train": 803}
    sampler = BlockOrder(dm.ranges["train"], seed=0)
    first = sampler.order()
    sampler.set_epoch(1)
    second = sampler.order()
    assert sorted(first.tolist()) == sorted(second.tolist()) and not torch.equal(first, second)
    # Within a block's run of positions, rows stay inside that block: reads stay local.
    for end, (a, b) in sampler.visited:
        chunk = second[end - (b - a):end]
        assert chunk.min() >= a and chunk.max() < b


@pytest.mark.parametrize("world", [2, 3])
def test_memory_mapped_ranks_read_each_training_row_once(tmp_path, world):
    path, data = _npy(tmp_path, n=517)
    dm = NpyDataModule(path, val_fraction=0.0, block_rows=50, batch_size=8)
    dm.setup()
    loaders = [BlockBatches(dm.table, dm.ranges["train"], 8, shuffle=True, rank=r, world_size=world)
               for r in range(world)]
    served = torch.cat([x for loader in loaders for x, _ in loader])
    assert len({len(loader) for loader in loaders}) == 1
    assert sorted(served[:, 0].tolist()) == sorted(data[:, 0].tolist())


def test_shard_layouts_read_as_one_table(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((250, 2)).astype(np.float32), rng.standard_normal((250, 2)).astype(np.float32)
    (tmp_path / "xy").mkdir()
    (tmp_path / "parts").mkdir()
    for i, (a, b) in enumerate([(0, 100), (100, 250)]):
        np.save(tmp_path / f"xy/x-{i}.npy", x[a:b])
        np.save(tmp_path / f"xy/y-{i}.npy", y[a:b])
        np.save(tmp_path / f"parts/part-{i}.npy", np.column_stack([x[a:b], y[a:b, 0]]))
    pairs, parts = NpyTable(tmp_path / "xy"), NpyTable(tmp_path / "parts")
    rows = np.array([249, 0, 99, 100, 150])  # across both files, in this order
    assert pairs.n_rows == parts.n_rows == 250 and pairs.target_names == ["y0", "y1"]
    np.testing.assert_array_equal(pairs.read(rows)[0], x[rows])
    np.testing.assert_array_equal(pairs.read(rows)[1], y[rows])  # two targets: multi-output
    np.testing.assert_array_equal(parts.read(rows)[1], y[rows, :1])
    dm = NpyDataModule(tmp_path / "xy", val_fraction=0.2)
    assert (dm.n_inputs, dm.n_outputs, dm.n_train) == (2, 2, 200)


def test_streamed_standardization_matches_the_in_memory_statistics(tmp_path):
    path, data = _npy(tmp_path, n=5000)
    data[:, 1] = data[:, 1] * 1000 + 1e4  # large mean: the naive sum-of-squares formula would lose digits
    np.save(path, data)
    mapped = NpyDataModule(path, standardize=True, block_rows=300, val_fraction=0.2)
    mapped.setup()
    rows = np.concatenate([np.arange(a, b) for a, b in mapped.ranges["train"]])
    in_memory = RegressionDataModule(data[rows, :3], data[rows, 3], val_fraction=0.0, standardize=True)
    in_memory.setup()
    for key in ("feature_mean", "feature_scale", "y_mean", "y_scale"):
        # Measured: 1.4e-15 apart (relative).
        np.testing.assert_allclose(mapped.feature_map.spec[key], in_memory.feature_map.spec[key], rtol=1e-12)
    xb, _ = next(iter(mapped.train_dataloader()))
    assert xb.abs().max() < 6  # served standardized
    assert mapped.stable_lr() == pytest.approx(in_memory.stable_lr(), rel=1e-9)  # the streamed pass, same answer


def test_a_non_finite_value_is_named_by_file_row_and_column(tmp_path):
    path, data = _npy(tmp_path, n=300)
    data[217, 2] = np.nan
    np.save(path, data)
    with pytest.raises(ValueError, match=r"d\.npy: row 218 \(1-based\), column 'x2' \(column 3 of the file\): "
                                         r"non-finite value nan"):
        NpyDataModule(path, block_rows=64).setup()


def test_pages_of_finished_blocks_are_given_back(tmp_path):
    rss_file = _rss_file_kb()
    if rss_file is None:
        pytest.skip("needs Linux's /proc/self/status")
    n, k = 400_000, 39  # 64 MB of float32
    np.save(tmp_path / "big.npy", np.ones((n, k + 1), dtype=np.float32))
    table = NpyTable(tmp_path / "big.npy")
    before = _rss_file_kb()
    loader = BlockBatches(table, table.blocks(1 << 14), batch_size=4096, shuffle=True)
    assert sum(len(x) for x, _ in loader) == n
    # Without the release, every page of the file (64 MB) would stay resident in this process. Measured: 6,156 kB.
    assert _rss_file_kb() - before < 16_000


def _rss_file_kb():
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("RssFile:")), None)


def test_resume_mid_epoch_skips_exactly_the_batches_already_trained(tmp_path):
    path, _ = _npy(tmp_path, n=500)
    dm = NpyDataModule(path, batch_size=16, val_fraction=0.0, block_rows=64)
    dm.setup()
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(2)
    full = list(loader)
    it = iter(loader)
    for _ in range(5):
        next(it)
    state = loader.state_dict()
    resumed = dm.train_dataloader()
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert state == {"epoch": 2, "consumed": 5} and len(rest) == len(full) - 5
    assert all(torch.equal(a[0], b[0]) for a, b in zip(rest, full[5:], strict=True))


@pytest.mark.slow  # 7 s: make_data.py and fit.py, each a new Python
def test_make_data_then_fit_on_the_shards_recovers_the_true_weights(tmp_path):
    made = run_script("make_data.py", "shards", "--n_rows", "20000", "--n_features", "3", "--shard_rows", "7000",
                      cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [
        "part-00000.npy", "part-00001.npy", "part-00002.npy", "truth.json"]
    truth = json.loads((tmp_path / "shards/truth.json").read_text())
    fit = run_script("fit.py", "--data", "shards", "--max_epochs", "3", "--data.batch_size", "64", "--optimizer.lr",
                     "0.05", "--progress_bar", "false", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    ckpt = torch.load(next(tmp_path.glob("lightning_logs/*/checkpoints/last.ckpt")), weights_only=True)
    weight = ckpt["state_dict"]["model.linear.weight"][0].numpy()
    np.testing.assert_allclose(weight, truth["weight"], atol=0.01)  # measured: 1.6e-3 off
    again = run_main(make_data_main, "shards", cwd=tmp_path)  # in this process: its refusal is what is tested
    assert again.returncode == 2 and "already exists and holds data" in again.stderr


def test_write_synthetic_streams_shards_of_the_requested_size(tmp_path):
    truth = write_synthetic(tmp_path / "d", 10, 2, shard_rows=4, noise=0.0)
    table = NpyTable(tmp_path / "d")
    x, y = table.read(np.arange(10))
    assert [len(part[0].array) for part in table.parts] == [4, 4, 2]
    np.testing.assert_allclose(y[:, 0], x.astype(np.float64) @ truth["weight"] + truth["bias"], rtol=1e-5)
