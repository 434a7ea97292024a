"""predict.py --help names --interval_kind's choices, not a lambda's repr; a wrong kind is one line."""

from lr_lightning.core.predict import predict_main


def test_interval_kind_help_shows_its_choices(capsys):
    assert predict_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--interval_kind {confidence,prediction}" in out and "lambda" not in out and "0x" not in out


def test_a_wrong_interval_kind_is_one_line(tmp_path, capsys):
    code = predict_main(["--ckpt", str(tmp_path / "m.ckpt"), "--x", "1", "--interval", "0.9", "--interval_kind", "x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: --interval_kind: expected one of confidence, prediction, got 'x' (see --help)"]
