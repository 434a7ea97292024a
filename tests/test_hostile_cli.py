"""What a hostile tester found in the command line, each pinned: --plot with the exact solver, hostile YAML configs,
and messages that must say which row, column, file or key, in one convention."""

from __future__ import annotations

import struct
import time

import pytest

from lr_lightning.core.cli import fit_main

from .conftest import run_main


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", head
    return struct.unpack(">II", head[16:24])


def test_plot_with_the_exact_solver_draws_the_fit(tmp_path):
    # Was silently ignored: no file, no word.
    (tmp_path / "d.csv").write_text("x,y\n" + "".join(f"{i},{3 * i + 1 + (i % 3)}\n" for i in range(30)))
    done = run_main(fit_main, "--solver", "exact", "--data", "d.csv", "--plot", "fit.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Plot: fit.png" in done.stdout.splitlines()
    # The fit panel alone (6 x 4.5 inches at 100 dpi): there is no loss curve to draw beside it.
    assert _png_size(tmp_path / "fit.png") == (600, 450)


def _billion_laughs():
    lines = ["lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("text", "words"), [
    ("seed: 1\na: &a [*a]\n", "line 2: YAML aliases (*a) are not accepted"),  # was a RecursionError
    (_billion_laughs(), "line 2: YAML aliases (*l0) are not accepted"),  # was still running after 300 s
    ("data: &d {class_path: SyntheticDataModule}\nmodel: *d\n", "line 2: YAML aliases (*d) are not accepted"),
])
def test_a_config_with_yaml_aliases_is_refused_in_one_line(tmp_path, text, words):
    (tmp_path / "hostile.yaml").write_text(text)
    start = time.perf_counter()
    done = run_main(fit_main, "--config", "hostile.yaml", cwd=tmp_path)
    assert time.perf_counter() - start < 10  # measured 0.01 s; the laughs expanded for minutes
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"error: --config hostile.yaml: {words} (one can refer to itself, or expand a few lines into billions of "
        "values); write the value out"], done.stderr
    assert not (tmp_path / "lightning_logs").exists()


def test_the_parser_s_own_yaml_loader_refuses_aliases_too():
    # Where the command line's --config check does not look (a nested config file, a value): jsonargparse's loader.
    import jsonargparse
    import yaml

    from lr_lightning.core.commands import load_yaml

    assert jsonargparse.get_loader("yaml") is load_yaml
    with pytest.raises(yaml.YAMLError, match=r"line 1: YAML aliases \(\*a\) are not accepted"):
        load_yaml("&a [*a]")
    assert load_yaml("lr: 1e-3\nname: a*b\n") == {"lr": 1e-3, "name": "a*b"}  # jsonargparse's float rule kept


def test_a_config_too_large_to_be_one_is_refused_unread(tmp_path, monkeypatch):
    import lr_lightning.core.cli as cli

    monkeypatch.setattr(cli, "MAX_CONFIG_BYTES", 1000)  # (writing 16 MiB for a test is not needed)
    (tmp_path / "big.yaml").write_text("seed: 1\n" + "# padding\n" * 200)
    done = run_main(fit_main, "--config", "big.yaml", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("error: --config big.yaml: 2,008 bytes; a config is a "
                                                           "few kilobytes"), done.stderr
