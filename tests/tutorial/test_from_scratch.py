import numpy as np
import pytest

from lr_lightning.tutorial import from_scratch
from lr_lightning.tutorial.cli import main as from_scratch_main
from lr_lightning.tutorial.from_scratch import (
    Step,
    autograd_stage,
    first_disagreement,
    lightning_stage,
    module_stage,
    numpy_stage,
    optimizer_stage,
    run_all,
    run_stages,
)

from ..conftest import run_main, run_script

TUTORIAL = {"x": [1.0, 2.0, 3.0, 4.0], "y": [2.0, 4.0, 6.0, 8.0]}
STAGE_NAMES = ["numpy", "autograd", "optimizer", "module", "lightning"]


def _assert_all_agree(runs, rtol):
    reference = runs["numpy"]
    for name in STAGE_NAMES[1:]:
        assert len(runs[name]) == len(reference), name
        for epoch, (got, want) in enumerate(zip(runs[name], reference, strict=True), start=1):
            assert got.w == pytest.approx(want.w, rel=rtol), (name, epoch)
            assert got.loss == pytest.approx(want.loss, rel=rtol), (name, epoch)
    assert first_disagreement(runs, rtol) is None


def test_run_all_shape_and_the_tutorials_numbers():
    result = run_all(TUTORIAL["x"], TUTORIAL["y"], lr=0.01, epochs=20)
    assert list(result) == STAGE_NAMES
    for name, rows in result.items():
        assert len(rows) == 20 and all(isinstance(w, float) and isinstance(loss, float) for w, loss in rows)
        assert [round(w, 3) for w, _ in rows[:5]] == [0.300, 0.555, 0.772, 0.956, 1.113], name
        # The exact losses, 30·0.85^(2k) (w = 2·(1 − 0.85^k), mean(x²) = 7.5). The tutorial's 3 decimals put 11.314
        # for 11.31449, 4.9e-4 inside an abs=5e-4. Measured: float32 stays within 9.1e-8 (relative) of these.
        exact = [30.0, 21.675, 15.6601875, 11.31448546875]
        assert [loss for _, loss in rows[:4]] == pytest.approx(exact, rel=1e-6), name


def test_all_five_stages_agree_epoch_by_epoch_on_the_tutorial():
    _assert_all_agree(run_stages(TUTORIAL["x"], TUTORIAL["y"], lr=0.01, epochs=20), rtol=1e-6)


def test_all_five_stages_agree_with_a_bias_on_noisy_data():
    rng = np.random.default_rng(0)
    x = np.linspace(-2, 3, 25)
    y = 3 * x - 1 + 0.3 * rng.normal(size=25)
    runs = run_stages(x, y, lr=0.05, epochs=150, bias=True)
    # torch's and numpy's float32 kernels round the 25 residuals' sums differently. Measured: the losses differ by up
    # to 5.5e-7 (relative), the weights by up to 1.7e-7; 1e-6 left too little room.
    _assert_all_agree(runs, rtol=2e-6)
    for name in STAGE_NAMES:
        assert runs[name][-1].b == pytest.approx(runs["numpy"][-1].b, rel=1e-5)  # measured: equal
    # and they all found the least-squares line (measured: within 3e-6)
    w, b = np.polyfit(x, y, 1)
    last = runs["lightning"][-1]
    assert last.w == pytest.approx(w, abs=1e-3) and last.b == pytest.approx(b, abs=1e-3)


def test_each_stage_is_usable_on_its_own():
    for stage in (numpy_stage, autograd_stage, optimizer_stage, module_stage, lightning_stage):
        steps = stage(TUTORIAL["x"], TUTORIAL["y"], lr=0.01, epochs=1)
        assert steps == [Step(pytest.approx(0.3), pytest.approx(30.0), 0.0)], stage.__name__  # measured: 6e-8 off


def test_the_buggy_gradient_is_n_times_too_large():
    right = numpy_stage(TUTORIAL["x"], TUTORIAL["y"], lr=0.01, epochs=1)
    wrong = numpy_stage(TUTORIAL["x"], TUTORIAL["y"], lr=0.01, epochs=1, buggy_gradient=True)
    assert round(right[0].w, 3) == 0.300 and round(wrong[0].w, 3) == 1.200
    assert wrong[0].w == pytest.approx(4 * right[0].w)


def test_stop_below_stops_every_stage_after_the_same_epoch():
    runs = run_stages(TUTORIAL["x"], TUTORIAL["y"], lr=0.01, epochs=200, stop_below=0.001)
    lengths = {name: len(steps) for name, steps in runs.items()}
    assert len(set(lengths.values())) == 1 and 1 < lengths["numpy"] < 200
    steps = runs["numpy"]
    assert steps[-1].loss < 0.001 <= steps[-2].loss


def test_first_disagreement_names_the_epoch():
    runs = run_stages(TUTORIAL["x"], TUTORIAL["y"], lr=0.01, epochs=5)
    runs["module"][2] = runs["module"][2]._replace(w=runs["module"][2].w * 1.001)
    assert first_disagreement(runs).startswith("epoch 3: module w = ")


@pytest.mark.slow  # 5 s: a new Python imports torch and Lightning
def test_script_prints_the_table_and_agrees(tmp_path):
    result = run_script("from_scratch.py", "--buggy_gradient", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "numpy" in out and "lightning" in out and "numpy, buggy gradient" in out
    first_row = next(line for line in out.splitlines() if line.strip().startswith("1 |"))
    assert first_row.count("0.30000") == 5 and "1.20000" in first_row
    assert "Prediction for x = 5: 0.000 before training (w = 0), 9.612 after" in out  # the tutorial's 20 epochs
    assert "All 5 stages agree" in out and result.stderr == ""


def test_script_exits_1_naming_the_first_disagreeing_epoch(monkeypatch, capsys):
    def off_by_a_little(x, y, **kwargs):
        steps = numpy_stage(x, y, **kwargs)
        steps[3] = steps[3]._replace(loss=steps[3].loss * 1.001)
        return steps

    monkeypatch.setitem(from_scratch.STAGES, "autograd", off_by_a_little)
    assert from_scratch_main(["--epochs", "6"]) == 1
    assert "disagree by more than 1e-5 (relative) at epoch 4: autograd loss" in capsys.readouterr().err


def test_switches_take_a_value_or_none(tmp_path):
    for flags in (["--bias"], ["--bias", "true"], ["--bias=yes"]):
        result = run_main(from_scratch_main, *flags, "--epochs", "2", "--x", "[1,2]", cwd=tmp_path)
        assert result.returncode == 0 and result.stdout.startswith("Fitting y = w·x + b to x = 1 2,"), flags
    result = run_main(from_scratch_main, "--bias", "--no_bias", "--epochs", "2", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("Fitting y = w·x to x = 1 2 3 4,")


@pytest.mark.parametrize(("flags", "line"), [
    (["--lr", "0"], "error: --lr: expected a number > 0, got '0' (see --help)"),
    (["--epochs", "x"], "error: --epochs: expected a whole number > 0, got 'x' (see --help)"),
    (["--print_every", "0"], "error: --print_every: expected a whole number > 0 or null, got '0' (see --help)"),
    (["--stop_below", "low"], "error: --stop_below: expected float or null, got 'low' (see --help)"),
    (["--bias", "maybe"], "error: --bias: expected true or false, got 'maybe' (see --help)"),
    (["--x", "1", "2"], "error: --x: expected a list [a, b, ...], got '1' (see --help)"),
    (["--x", "[]"], "error: --x: expected at least one value, got [] (see --help)"),
    (["--buggy-gradient"], "error: unrecognized arguments: --buggy-gradient (see --help)"),
])
def test_bad_flags_are_one_line_exit_2(tmp_path, flags, line):
    result = run_main(from_scratch_main, *flags, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [line]  # one line, no usage, no traceback


@pytest.mark.parametrize("args", [["--lr", "0.05"], ["--bias", "--epochs", "200", "--lr", "0.05"]],
                         ids=["lr", "bias"])
def test_stages_agree_when_the_loss_reaches_float32_rounding(args, tmp_path):
    # At lr 0.05 the loss falls to ~1e-13 (pure rounding) and, with a bias, is computed by cancellation: the stages
    # agree to the last bits of float32 there, which a relative test on the loss alone called a disagreement.
    result = run_main(from_scratch_main, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "All 5 stages agree" in result.stdout


def test_correct_stages_reach_w_2_at_lr_005():
    runs = run_stages(TUTORIAL["x"], TUTORIAL["y"], lr=0.05, epochs=20)
    for name in STAGE_NAMES:
        w = [s.w for s in runs[name]]
        assert abs(w[9] - 2.0) < 5e-6, name  # 2.00000 as printed, at epoch 10
        assert w[12:] == [2.0] * 8, name  # exactly 2 in float32 from epoch 13 on


def test_a_real_loss_disagreement_is_still_caught():
    runs = {"numpy": [Step(1.0, 30.0), Step(1.5, 0.00056142777)],
            "autograd": [Step(1.0, 30.0), Step(1.5, 0.00056242777)]}  # 2e-3 relative: far above rounding
    assert first_disagreement(runs).startswith("epoch 2: autograd loss")
