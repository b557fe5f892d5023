"""hack/images.py writes OCI image layouts by hand: check one against the spec's
rules (digests, sizes, diff_ids, the ref name) and unpack it again."""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))
import images

pytestmark = pytest.mark.unit


def small_image(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "app").mkdir(parents=True)
    (root / "app" / "hello.txt").write_text("hello\n")
    (root / "home").mkdir()
    layer_tar = tmp_path / "layer.tar"
    images.tar_tree(root, layer_tar, owner={"home": images.NONROOT})
    layer = images.make_layer(layer_tar, "test layer")
    out = tmp_path / "image.oci.tar"
    images.write_oci_archive(out, "egpu.local/test:1", [layer], {"User": "65532:65532"})
    return out


def test_the_layout_is_consistent(tmp_path: Path) -> None:
    archive = small_image(tmp_path)
    with tarfile.open(archive) as oci:
        names = set(oci.getnames())

        def read(name: str) -> bytes:
            member = oci.extractfile(name)
            assert member is not None
            return member.read()

        assert json.loads(read("oci-layout")) == {"imageLayoutVersion": "1.0.0"}
        (entry,) = json.loads(read("index.json"))["manifests"]
        assert entry["annotations"]["io.containerd.image.name"] == "egpu.local/test:1"
        for blob in names - {"oci-layout", "index.json"}:  # content addressed
            assert blob == "blobs/sha256/" + hashlib.sha256(read(blob)).hexdigest()
        manifest_bytes = read("blobs/sha256/" + entry["digest"].removeprefix("sha256:"))
        assert entry["size"] == len(manifest_bytes)
        manifest = json.loads(manifest_bytes)
        config = json.loads(read("blobs/sha256/" + manifest["config"]["digest"][7:]))
        (layer,) = manifest["layers"]
        blob = read("blobs/sha256/" + layer["digest"][7:])
        assert layer["size"] == len(blob)
        diff_id = "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
        assert config["rootfs"]["diff_ids"] == [diff_id]
        assert config["config"]["User"] == "65532:65532"


def test_export_unpacks_the_layers_with_their_owners(tmp_path: Path) -> None:
    archive = small_image(tmp_path)
    dest = tmp_path / "out"
    images.export(archive, dest)
    assert (dest / "app" / "hello.txt").read_text() == "hello\n"
    with tarfile.open(fileobj=gzip.open(next((tmp_path).glob("layer.tar.gz")))) as tar:
        owners = {m.name: m.uid for m in tar.getmembers()}
    assert owners["home"] == images.NONROOT and owners["app/hello.txt"] == 0


def test_the_same_tree_gives_the_same_layer(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    digests = []
    for sub in (a, b):
        archive = small_image(sub)
        with tarfile.open(archive) as oci:
            member = oci.extractfile("index.json")
            assert member is not None
            digests.append(json.loads(member.read())["manifests"][0]["digest"])
    assert digests[0] == digests[1]


def test_tools_layer_puts_each_tool_on_path_as_an_executable(tmp_path: Path) -> None:
    layer = images.tools_layer(tmp_path)
    assert {p.name for p in images.TOOLS} == {"usage_feeder.py", "metrics_gauge.py"}
    with gzip.open(layer.blob) as raw, tarfile.open(fileobj=raw) as tar:
        for script, in_image in images.TOOLS.items():
            info = tar.getmember(in_image)
            body = tar.extractfile(info).read().decode()  # type: ignore[union-attr]
            assert info.mode & 0o111
            assert body.startswith("#!/usr/bin/python3.11\n")
            assert script.read_text() in body
