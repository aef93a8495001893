"""Output files: never through a symlink, an existing file only when asked, a new run folder each time."""

from __future__ import annotations

import os

import pytest

from edge_xcnn.outputs import OutputError, check_output, next_run_folder, open_output


def test_a_symlink_is_never_written_through_even_with_overwrite(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep")
    link = tmp_path / "out.jsonl"
    os.symlink(target, link)
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="symlink"):
            check_output(link, overwrite=overwrite)
        with pytest.raises(OutputError, match="symlink"):  # the open itself refuses (O_NOFOLLOW), no race
            open_output(link, overwrite=overwrite)
    dangling = tmp_path / "dangling.mp4"
    os.symlink(tmp_path / "nowhere", dangling)
    with pytest.raises(OutputError, match="symlink"):
        open_output(dangling, overwrite=True)
    assert target.read_text() == "keep" and not (tmp_path / "nowhere").exists()


def test_an_existing_file_is_replaced_only_when_asked(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("old\n")
    with pytest.raises(OutputError, match="exists"):
        open_output(path, overwrite=False)
    assert path.read_text() == "old\n"
    with open_output(path, overwrite=True) as f:
        f.write(b"new\n")
    assert path.read_text() == "new\n"
    with open_output(tmp_path / "deep" / "er" / "b.txt", overwrite=False) as f:  # folders made as needed
        f.write(b"x")


def test_folders_and_run_folders(tmp_path):
    full = tmp_path / "frames"
    full.mkdir()
    check_output(full, overwrite=False, folder=True)  # empty: fine
    (full / "000000.jpg").write_bytes(b"x")
    with pytest.raises(OutputError, match="not empty"):
        check_output(full, overwrite=False, folder=True)
    check_output(full, overwrite=True, folder=True)
    with pytest.raises(OutputError, match="is a folder"):
        check_output(full, overwrite=True)
    assert next_run_folder(tmp_path, "run") == tmp_path / "run"
    (tmp_path / "run").mkdir()
    (tmp_path / "run2").mkdir()
    assert next_run_folder(tmp_path, "run") == tmp_path / "run3"
