"""The path layer: relative local paths become absolute, URIs stay URIs, mangled URIs and URIs where only
local files work fail in one line."""
import os

import pytest

from diffariff_jax import paths


def test_relative_local_path_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    resolved = paths.resolve("runs/cae", "--workdir")
    assert str(resolved) == os.path.join(str(tmp_path), "runs", "cae")
    assert paths.local("runs/cae").is_absolute()


def test_uri_is_kept_whole():
    assert str(paths.resolve("gs://bucket/latents")) == "gs://bucket/latents"
    assert paths.is_uri("gs://bucket/x") and not paths.is_uri("/data/x")


@pytest.mark.parametrize("bad, needle", [("gs:/bucket/x", "lost a slash"), ("", "empty path")])
def test_bad_paths_fail_in_one_line(bad, needle):
    with pytest.raises(paths.PathError, match=needle) as err:
        paths.resolve(bad, "--out")
    assert "\n" not in str(err.value)


def test_uri_where_only_local_files_work():
    with pytest.raises(paths.PathError, match="--data gs://b/songs: only a local path works here"):
        paths.local("gs://b/songs", "--data")
