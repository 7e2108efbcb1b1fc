import json
from pathlib import Path

import pytest

from steps.common.residency import ResidencyPolicy
from steps.common.storage import (
    MANIFEST_NAME,
    ArtifactNotFound,
    ArtifactStore,
    CorruptArtifact,
    StorageSettings,
)


def _store(root: Path) -> ArtifactStore:
    return ArtifactStore(StorageSettings(artifact_root=root.as_uri()), ResidencyPolicy())


def _fill(directory: Path) -> None:
    (directory / "sub").mkdir(parents=True)
    (directory / "a.txt").write_text("alpha")
    (directory / "sub" / "b.bin").write_bytes(b"\x00\x01" * 1000)


def test_publish_then_materialize_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _fill(src)
    store = _store(tmp_path)
    uri = (tmp_path / "out" / "art").as_uri()
    manifest = store.publish_dir(src, uri)
    local = store.materialize(uri, tmp_path / "cache")
    assert (local / "a.txt").read_text() == "alpha"
    assert set(manifest.files) == {"a.txt", "sub/b.bin"}
    assert store.read_manifest(uri).digest == manifest.digest


def test_unpublished_directory_is_not_readable(tmp_path: Path) -> None:
    half = tmp_path / "half"
    _fill(half)  # files present, no manifest: what a crashed step leaves
    with pytest.raises(ArtifactNotFound, match="no published artifact"):
        _store(tmp_path).materialize(half.as_uri(), tmp_path / "cache")


def test_tampered_file_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _fill(src)
    store = _store(tmp_path)
    uri = (tmp_path / "art").as_uri()
    store.publish_dir(src, uri)
    (tmp_path / "art" / "a.txt").write_text("tampered")
    with pytest.raises(CorruptArtifact, match="a.txt does not match"):
        store.materialize(uri, tmp_path / "cache")


def test_republish_replaces_atomically(tmp_path: Path) -> None:
    store = _store(tmp_path)
    uri = (tmp_path / "art").as_uri()
    for content in ("one", "two"):
        src = tmp_path / f"src-{content}"
        src.mkdir()
        (src / "v.txt").write_text(content)
        store.publish_dir(src, uri)
    assert (tmp_path / "art" / "v.txt").read_text() == "two"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".art.")]  # no staging left behind
    assert json.loads((tmp_path / "art" / MANIFEST_NAME).read_text())["files"].keys() == {"v.txt"}


def test_a_killed_publishs_staging_is_removed_by_the_next_publish_to_that_place(tmp_path: Path) -> None:
    store = _store(tmp_path)
    uri = (tmp_path / "art").as_uri()
    # What a publish SIGKILLed mid-copy or mid-swap leaves: a staging copy and a moved-aside old version.
    for leftover in (".art.tmp-deadbeef", ".art.old-deadbeef"):
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / "v.txt").write_text("half")
    (tmp_path / ".other.tmp-cafe").mkdir()  # another artifact's staging: not ours to remove
    src = tmp_path / "src"
    src.mkdir()
    (src / "v.txt").write_text("whole")
    store.publish_dir(src, uri)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".other.tmp-cafe"]
    assert (tmp_path / "art" / "v.txt").read_text() == "whole"


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/outside.txt", "a/../../outside.txt", "a\\..\\..\\x",
                                  "", "."])
def test_a_manifest_naming_a_file_outside_its_folder_is_refused(tmp_path: Path, name: str) -> None:
    store = _store(tmp_path)
    uri = (tmp_path / "art").as_uri()
    src = tmp_path / "src"
    src.mkdir()
    (src / "v.txt").write_text("v")
    store.publish_dir(src, uri)
    manifest = json.loads((tmp_path / "art" / MANIFEST_NAME).read_text())
    manifest["files"][name] = manifest["files"]["v.txt"]
    (tmp_path / "art" / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(CorruptArtifact, match="outside the artifact's folder"):
        store.materialize(uri, tmp_path / "cache")


def test_tree_digest_changes_with_content(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "d.md").write_text("x")
    store = _store(tmp_path)
    before = store.tree_digest(corpus.as_uri())
    (corpus / "d.md").write_text("y")
    assert store.tree_digest(corpus.as_uri()) != before


def test_paths_with_spaces_and_non_ascii_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "Ordner mit Leerzeichen é"
    src.mkdir()
    (src / "ä.txt").write_text("x")
    store = _store(tmp_path)
    uri = (tmp_path / "Zielordner ü" / "art").as_uri()
    assert "%20" in uri
    store.publish_dir(src, uri)
    assert (store.materialize(uri, tmp_path / "c") / "ä.txt").read_text() == "x"
    assert [p.name for p in store.download_prefix(src.as_uri(), tmp_path / "d")] == ["ä.txt"]
