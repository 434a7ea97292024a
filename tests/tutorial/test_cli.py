"""scripts/from_scratch.py on the command line: --help without torch, and a bad flag in one line."""

import subprocess
import sys

from tests.conftest import ROOT, run_script


def test_from_scratch_help_answers_without_importing_torch():
    module, flag = "lr_lightning.tutorial.cli", "--buggy_gradient"
    code = (f"import sys\nfrom {module} import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0\nprint(sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert flag in result.stdout and result.stdout.strip().splitlines()[-1] == "[]"


def test_from_scratch_answers_a_bad_flag_with_one_line(tmp_path):
    result = run_script("from_scratch.py", *['--lr', '-1'], cwd=tmp_path)
    line = "error: --lr: expected a number > 0, got '-1' (see --help)"
    assert (result.returncode, result.stdout, result.stderr.splitlines()) == (2, "", [line])
