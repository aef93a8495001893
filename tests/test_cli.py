"""Bad input: one clear line, exit code 2, no traceback, nothing half-written."""

import pickle

import pytest
import torch
from typer.testing import CliRunner

from edge_xcnn.cli import app

runner = CliRunner()


def one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert text.startswith("error:"), text
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    for needle in needles:
        assert needle in text, text


class Boom:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": Boom()}, tmp_path / "evil.pt")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Boom()))
    (tmp_path / "notes.safetensors").write_text("not a model")
    (tmp_path / "empty").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["train", "--recipe", "imagenet22k"], ["unknown recipe", "synthetic"]),
        (["train", "--recipe", "cifar10"], ["needs --data"]),
        (["train", "--recipe", "cifar10", "--data", "missing"], ["not found", "missing"]),
        (["train", "--recipe", "folder", "--data", "empty"], ["empty"]),
        (["train", "--recipe", "mnist5k", "--arch", "resnet"], ["--arch"]),
        (["train", "--recipe", "mnist5k", "--resume", "--out", "nothing"], ["--resume", "nothing"]),
        (["eval", "--model", "evil.pt"], ["never unpickles"]),
        (["eval", "--model", "evil.pkl"], ["never unpickles"]),
        (["eval", "--model", "notes.safetensors"], ["not a safetensors file"]),
        (["eval", "--model", "absent.safetensors"], ["not found"]),
        (["eval", "--data", "empty"], ["not a dataset"]),
        (["eval", "--data", "cifar10:test"], ["lives on disk"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(files, args, needles):
    one_line_error(runner.invoke(app, args), *needles)
    assert not (files / "pwned").exists()
    assert not list(files.rglob("*.part")), "half-written file left behind"
    assert not (files / "runs").exists() or not any((files / "runs").rglob("*.safetensors"))


def test_help_lists_the_jobs():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "eval"):
        assert command in result.output
