"""The bad input files the refusal tests share (``tests/core/test_checks.py``, ``tests/exact/test_refusals.py``), and
predict.py's one-line error. Nothing here imports an optional package: each room's tests stand without the others."""

from pathlib import Path

import numpy as np

from lr_lightning.core.predict import predict_main

FILES = {
    # Hostile configs: one that refers to itself (Python's recursion limit), one that expands to 10⁹ strings.
    "self.yaml": "max_epochs: &a [*a]\n",
    "laughs.yaml": 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)),
    "empty.csv": "",
    "header.csv": "a,b\n",
    "words.csv": "a,b\n1,2\n3,lots\n",
    "nan.csv": "a,b\n1,2\nnan,4\n",
    "inf.csv": "a,b\n1,2\n3,inf\n",
    "ragged.csv": "a,b,c\n1,2,3\n4,5\n",
    "one.csv": "y\n1\n2\n3\n",
    "good.csv": "a,b,y\n" + "".join(f"{i},{i % 3},{2 * i}\n" for i in range(20)),
    "noheader.csv": "".join(f"{i},{2 * i}\n" for i in range(20)),
    "dupname.csv": "a,a,y\n" + "".join(f"{i},{i},{2 * i}\n" for i in range(20)),
    "noname.csv": "a,,y\n" + "".join(f"{i},{i},{2 * i}\n" for i in range(20)),
    "comments.csv": "# only comments\n\n",
}


def write_bad_files(folder: Path) -> Path:
    """FILES in ``folder``, with a folder, a binary file, a 3-D array and an unknown format beside them."""
    for name, text in FILES.items():
        (folder / name).write_text(text)
    (folder / "folder.csv").mkdir()
    (folder / "binary.csv").write_bytes(b"a,b\n\xff\xfe\x00\x81,2\n")
    np.save(folder / "cube.npy", np.zeros((4, 2, 2)))
    (folder / "data.txt").write_text("1 2\n")
    return folder


def predict_error(capsys, argv) -> str:
    """predict.py's one line on stderr, after checking the exit status 2 (the command returns it, parser errors
    included)."""
    capsys.readouterr()
    assert predict_main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]
