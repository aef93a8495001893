import json
import pickle

import numpy as np
import pytest
import torch

from edge_xcnn.checkpoint import load_model, read_meta, resolve_model, save_checkpoint
from edge_xcnn.errors import BadModelFile
from edge_xcnn.meta import ArchSpec, ModelMeta
from edge_xcnn.models import build_model


def small_meta(**changes):
    meta = ModelMeta(
        arch=ArchSpec("xcnn", "mnist_net", 3, 8, 1),
        classes=("cat", "dog"),
        input_size=(32, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        polarity=-1,
        recipe="folder",
        data="/data/pets",
    )
    return meta.replace(**changes)


def test_meta_round_trips_through_json():
    meta = small_meta(metrics={"val_acc": 0.9})
    assert ModelMeta.from_json(meta.to_json()) == meta


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"polarity": 0}, "polarity"),
        ({"color": "gray"}, "input channels"),
        ({"resize": "crop"}, "resize"),
        ({"threshold": 1.5}, "threshold"),
        ({"classes": ()}, "at least one class"),
        ({"std": (0.0, 1.0, 1.0)}, "std"),
    ],
)
def test_meta_rejects_inconsistent_values(changes, message):
    with pytest.raises(ValueError, match=message):
        small_meta(**changes)


def test_newer_or_malformed_metadata_is_a_bad_model_file():
    data = small_meta().to_dict()
    with pytest.raises(BadModelFile, match="newer"):
        ModelMeta.from_dict({**data, "format_version": 99})
    with pytest.raises(BadModelFile, match="malformed"):
        ModelMeta.from_dict({k: v for k, v in data.items() if k != "classes"})


def test_checkpoint_round_trip_keeps_weights_and_meta(tmp_path):
    meta = small_meta()
    model = build_model(meta).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, meta)
    assert read_meta(path) == meta
    loaded, _loaded_meta = load_model(path)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x), strict=True):
            torch.testing.assert_close(a, b)
    assert not list(tmp_path.glob("*.part")), "no temporary file left behind"


class Boom:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_pickled_checkpoints_are_refused_without_running_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    zipped = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2), "evil": Boom()}, zipped)
    legacy = tmp_path / "model.pkl"
    legacy.write_bytes(pickle.dumps(Boom()))
    for path in (zipped, legacy):
        with pytest.raises(BadModelFile, match="never unpickles"):
            load_model(path)
    assert not (tmp_path / "pwned").exists()


def test_foreign_and_damaged_files_are_named(tmp_path):
    from safetensors.numpy import save_file

    foreign = tmp_path / "other.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(foreign))
    with pytest.raises(BadModelFile, match="not an edge-xcnn checkpoint"):
        read_meta(foreign)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello world, not a model")
    with pytest.raises(BadModelFile, match="not a safetensors file"):
        read_meta(text)
    with pytest.raises(BadModelFile, match="not found"):
        resolve_model(tmp_path / "missing.safetensors")


def test_weights_that_do_not_match_the_metadata_are_refused(tmp_path):
    meta = small_meta()
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(meta), meta)
    # Same file, metadata claiming a wider generator.
    from safetensors.torch import load_file, save_file

    other = meta.replace(arch=ArchSpec("xcnn", "mnist_net", 3, 16, 1))
    save_file(load_file(str(path)), str(tmp_path / "lie.safetensors"), metadata={"edge_xcnn": other.to_json()})
    with pytest.raises(BadModelFile, match="do not match"):
        load_model(tmp_path / "lie.safetensors")
    assert json.loads(other.to_json())["arch"]["generator_width"] == 16


def test_a_checkpoint_whose_header_length_starts_like_a_pickle_still_loads(tmp_path):
    """A safetensors header length with low byte 0x80 reads like pickle protocol 2's magic byte."""
    meta = small_meta()
    model = build_model(meta)
    for pad in range(256):  # vary the header length through the metadata until its low byte is 0x80
        padded = meta.replace(recipe="x" * pad)
        path = save_checkpoint(tmp_path / "m.safetensors", model, padded)
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no metadata length gave a header starting with 0x80")
    assert read_meta(path) == padded
    assert load_model(path)[1] == padded
