#!/usr/bin/env python3
"""Container images built without a registry or a container engine.

    python hack/images.py build [operator|pause|python|all]   # print the OCI archives
    python hack/images.py load --address SOCKET [NAME...]     # import into a containerd
    python hack/images.py export operator DIR                 # unpack its file system

Three images, each an OCI image layout in a tar file that `ctr images import`
(and `skopeo`, `podman load`) reads:

- python:   Debian's python3.11 and the libraries it links, extracted from
            Debian's packages by mmdebstrap (no shell, no package manager);
            the base layer of the operator image, and the image of the
            real-node tests' plain pods. It carries the usage feeder
            (hack/image/usage_feeder.py) as /usr/local/bin/egpu-usage-feeder: a
            container that really uses memory and CPU, for resize tests; and
            the metrics gauge (hack/image/metrics_gauge.py) as
            /usr/local/bin/egpu-metrics-gauge: a serving pod's /metrics whose
            load follows a schedule, for autoscaling tests.
- operator: python + one layer with the project's wheel and its pinned
            dependencies (hack/image/requirements.lock), precompiled, run as
            uid 65532. Tagged with the package version, the chart's appVersion.
- pause:    the sandbox container of a real node's pods (hack/image/pause).

Archives are cached under $EGPU_CACHE/images, keyed by a hash of their inputs:
a second build of unchanged inputs only prints the paths.
Standard library only (like localcluster.py, which calls it).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("EGPU_CACHE", Path.home() / ".cache" / "egpu"))
IMAGES = CACHE / "images"
# Layers carry this time stamp, so unchanged inputs give identical digests.
EPOCH = 1764633600  # 2025-12-02T00:00:00Z
NONROOT = 65532
PY_SITE = "usr/local/lib/python3.11/dist-packages"

# Dropped from the Debian root file system: documentation, translations, and
# the device nodes the container runtime provides anyway.
DROP_PREFIXES = ("./usr/share/doc/", "./usr/share/man/", "./usr/share/locale/", "./dev/")


def log(msg: str) -> None:
    print(f"[images] {msg}", file=sys.stderr, flush=True)


def read_versions() -> dict[str, str]:
    versions = {}
    for line in (REPO / "hack" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key] = value
    return versions


def project_version() -> str:
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split("=", 1)[1].strip().strip('"')
    raise RuntimeError("no version in pyproject.toml")


def digest_of(*parts: bytes | str | Path) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            files = sorted(p for p in part.rglob("*") if p.is_file()) if part.is_dir() else [part]
            for f in files:
                if "__pycache__" in f.parts:
                    continue
                h.update(str(f.relative_to(REPO)).encode())
                h.update(f.read_bytes())
        else:
            h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


# --- OCI image layout ---------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """A layer blob (gzip) and the digest of its uncompressed tar (the diff_id)."""

    blob: Path
    diff_id: str
    comment: str


def make_layer(tar_path: Path, comment: str) -> Layer:
    h = hashlib.sha256()
    with tar_path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    blob = tar_path.with_suffix(".tar.gz")
    # mtime=0 and no file name in the gzip header: the same tar, the same blob.
    with (
        tar_path.open("rb") as src,
        blob.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0, filename="") as gz,
    ):
        shutil.copyfileobj(src, gz, 1 << 20)
    return Layer(blob=blob, diff_id=f"sha256:{h.hexdigest()}", comment=comment)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_oci_archive(out: Path, ref: str, layers: list[Layer], config: dict[str, object]) -> None:
    """An OCI image layout (oci-layout, index.json, blobs/sha256/...) in one tar."""
    blobs: list[tuple[str, Path | bytes]] = []
    layer_descs = []
    for layer in layers:
        d = _sha256_file(layer.blob)
        blobs.append((d, layer.blob))
        layer_descs.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": f"sha256:{d}",
                "size": layer.blob.stat().st_size,
            }
        )
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(EPOCH))
    image_config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": created, "created_by": layer.comment} for layer in layers],
    }
    config_bytes = json.dumps(image_config, sort_keys=True, separators=(",", ":")).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    blobs.append((config_digest, config_bytes))
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": f"sha256:{config_digest}",
            "size": len(config_bytes),
        },
        "layers": layer_descs,
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
    blobs.append((manifest_digest, manifest_bytes))
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": f"sha256:{manifest_digest}",
                "size": len(manifest_bytes),
                "annotations": {
                    # containerd names the imported image by the first one,
                    # other OCI tools by the second.
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": ref,
                },
            }
        ],
    }
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:

        def add_bytes(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), EPOCH, 0o644
            tar.addfile(info, io.BytesIO(data))

        add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes("index.json", json.dumps(index, sort_keys=True).encode())
        for d, content in blobs:
            if isinstance(content, Path):
                info = tar.gettarinfo(str(content), arcname=f"blobs/sha256/{d}")
                info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "", ""
                with content.open("rb") as f:
                    tar.addfile(info, f)
            else:
                add_bytes(f"blobs/sha256/{d}", content)
    tmp.replace(out)


def tar_tree(root: Path, out: Path, owner: dict[str, int] | None = None) -> None:
    """A layer tar of the directory `root`: sorted, root-owned (or `owner` by
    path prefix), fixed time stamps."""
    owner = owner or {}
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            info = tar.gettarinfo(str(path), arcname=rel)
            info.mtime, info.uname, info.gname = EPOCH, "", ""
            uid = next((u for prefix, u in owner.items() if rel.startswith(prefix)), 0)
            info.uid = info.gid = uid
            if info.isfile():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def filter_rootfs(src: Path, out: Path) -> None:
    """Copy a root file system tar without DROP_PREFIXES, time stamps fixed."""
    with tarfile.open(src) as tin, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tout:
        for member in tin:
            name = member.name if member.name.startswith("./") else f"./{member.name}"
            name += "/" if member.isdir() else ""
            if any(name.startswith(p) for p in DROP_PREFIXES) and name != "./dev/":
                continue
            member.mtime = EPOCH
            if member.isfile():
                tout.addfile(member, tin.extractfile(member))
            else:
                tout.addfile(member)


# --- the images ---------------------------------------------------------------


def cached(name: str, key: str) -> Path:
    IMAGES.mkdir(parents=True, exist_ok=True)
    return IMAGES / f"{name}-{key}.oci.tar"


def python_packages(v: dict[str, str]) -> list[str]:
    pin = v["DEBIAN_PYTHON_VERSION"]
    return [f"python3.11-minimal={pin}", f"libpython3.11-stdlib={pin}", f"python3.11={pin}"]


def python_layer(work: Path) -> Layer:
    """Debian's python3.11, extracted from its packages (cached apart: both
    images that start from it share the layer)."""
    v = read_versions()
    key = digest_of(v["DEBIAN_SUITE"], v["DEBIAN_MIRROR"], *python_packages(v), *DROP_PREFIXES)
    layer_tar = IMAGES / f"python-layer-{key}.tar"
    if not layer_tar.exists():
        if not shutil.which("mmdebstrap"):
            raise RuntimeError("mmdebstrap is missing: run hack/install-node-deps.sh")
        raw = work / "rootfs.tar"
        t0 = time.monotonic()
        mirror, suite = v["DEBIAN_MIRROR"], v["DEBIAN_SUITE"]
        security = mirror.rsplit("/", 1)[0] + "/debian-security"
        proc = subprocess.run(
            [
                "mmdebstrap",
                "--variant=extract",
                "--mode=root",
                "--quiet",
                f"--include={','.join(python_packages(v))}",
                suite,
                str(raw),
                f"deb {mirror} {suite} main",
                f"deb {mirror} {suite}-updates main",
                f"deb {security} {suite}-security main",
            ],
            env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)},
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"mmdebstrap failed ({proc.returncode}); is DEBIAN_PYTHON_VERSION in "
                f"hack/versions.env still on the mirror?\n{proc.stderr[-2000:]}"
            )
        tmp = layer_tar.with_suffix(".partial")
        filter_rootfs(raw, tmp)
        tmp.replace(layer_tar)
        log(f"python layer: mmdebstrap + filter in {time.monotonic() - t0:.1f}s")
    blob = layer_tar.with_suffix(".tar.gz")
    meta = layer_tar.with_suffix(".json")
    if blob.exists() and meta.exists():
        return Layer(blob=blob, diff_id=json.loads(meta.read_text())["diff_id"], comment="python")
    layer = make_layer(layer_tar, f"mmdebstrap --variant=extract {' '.join(python_packages(v))}")
    meta.write_text(json.dumps({"diff_id": layer.diff_id}))
    return layer


PYTHON_ENV = ["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1", "LANG=C.UTF-8"]


# The test tools of the python image: script -> executable on PATH.
TOOLS = {
    REPO / "hack" / "image" / "usage_feeder.py": "usr/local/bin/egpu-usage-feeder",
    REPO / "hack" / "image" / "metrics_gauge.py": "usr/local/bin/egpu-metrics-gauge",
}


def tools_layer(work: Path) -> Layer:
    """The test tools (hack/image/*.py, TOOLS) as executables on PATH."""
    root = work / "tools-root"
    for script, in_image in TOOLS.items():
        target = root / in_image
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("#!/usr/bin/python3.11\n" + script.read_text())
        target.chmod(0o755)
    tar = work / "tools.tar"
    tar_tree(root, tar)
    return make_layer(tar, " ".join(str(s.relative_to(REPO)) for s in TOOLS))


def build_python() -> Path:
    v = read_versions()
    key = digest_of(*python_packages(v), Path(__file__), *TOOLS)
    out = cached("python", key)
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(dir=IMAGES) as work:
        layer = python_layer(Path(work))
        write_oci_archive(
            out,
            "egpu.local/python:3.11",
            [layer, tools_layer(Path(work))],
            {"Env": PYTHON_ENV, "Cmd": ["/usr/bin/python3.11"], "User": f"{NONROOT}:{NONROOT}"},
        )
    return out


def build_pause() -> Path:
    src = REPO / "hack" / "image" / "pause"
    out = cached("pause", digest_of(src, Path(__file__)))
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(dir=IMAGES) as work:
        root = Path(work) / "root"
        root.mkdir()
        env = {
            **os.environ,
            "CGO_ENABLED": "0",
            "GOTOOLCHAIN": "local",
            "GOCACHE": str(CACHE / "go" / "build"),
            "GOFLAGS": "-mod=mod",
        }
        subprocess.run(
            ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(root / "pause"), "."],
            cwd=src,
            env=env,
            check=True,
        )
        tar = Path(work) / "pause.tar"
        tar_tree(root, tar)
        write_oci_archive(
            out,
            "egpu.local/pause:1",
            [make_layer(tar, "go build hack/image/pause")],
            {"Entrypoint": ["/pause"], "User": f"{NONROOT}:{NONROOT}"},
        )
    return out


def operator_ref() -> str:
    return f"ghcr.io/egpu/egpu-operator:{project_version()}"


def build_operator() -> Path:
    v = read_versions()
    lock = REPO / "hack" / "image" / "requirements.lock"
    key = digest_of(
        *python_packages(v),
        Path(__file__),
        lock,
        REPO / "pyproject.toml",
        REPO / "README.md",
        REPO / "operator" / "egpu",
    )
    out = cached("operator", key)
    if out.exists():
        return out
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir=IMAGES) as tmp:
        work = Path(tmp)
        base = python_layer(work)
        wheels = work / "wheels"
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
        subprocess.run(
            [*pip, "wheel", "--no-deps", "-w", str(wheels), str(REPO)],
            check=True,
        )
        wheel = next(wheels.glob("egpu_operator-*.whl"))
        root = work / "root"
        site = root / PY_SITE
        # Binary wheels for Debian's CPython 3.11 on glibc 2.36, exactly the
        # pinned set: no resolver, no build at image time.
        subprocess.run(
            [
                *pip,
                "install",
                "--no-deps",
                "--no-compile",
                "--only-binary=:all:",
                "--implementation=cp",
                "--python-version=3.11",
                "--abi=cp311",
                "--abi=abi3",
                "--abi=none",
                *(f"--platform=manylinux_{v}_x86_64" for v in ("2_36", "2_28", "2_17")),
                "--platform=manylinux2014_x86_64",
                "--target",
                str(site),
                "-r",
                str(lock),
                str(wheel),
            ],
            check=True,
        )
        shutil.rmtree(site / "bin", ignore_errors=True)
        # Compiled now: the root file system is read-only at run time.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "compileall",
                "-q",
                "-j0",
                "--invalidation-mode",
                "unchecked-hash",
                str(site),
            ],
            check=True,
        )
        etc = root / "etc"
        etc.mkdir()
        (etc / "passwd").write_text(
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/usr/sbin/nologin\n"
        )
        (etc / "group").write_text(f"root:x:0:\nnonroot:x:{NONROOT}:\n")
        (root / "home" / "nonroot").mkdir(parents=True)
        app_tar = work / "app.tar"
        tar_tree(root, app_tar, owner={"home/nonroot": NONROOT})
        app = make_layer(app_tar, f"pip install {wheel.name} -r hack/image/requirements.lock")
        write_oci_archive(
            out,
            operator_ref(),
            [base, app],
            {
                "Entrypoint": ["/usr/bin/python3.11", "-m", "egpu.controllers.main"],
                "Env": PYTHON_ENV,
                "User": f"{NONROOT}:{NONROOT}",
                "WorkingDir": "/home/nonroot",
                "ExposedPorts": {"8080/tcp": {}, "8081/tcp": {}},
                "Labels": {
                    "org.opencontainers.image.title": "egpu-operator",
                    "org.opencontainers.image.version": project_version(),
                    "org.opencontainers.image.source": "https://github.com/egpu/egpu-operator",
                    "io.egpu.debian-python": v["DEBIAN_PYTHON_VERSION"],
                },
            },
        )
    log(f"operator image built in {time.monotonic() - t0:.1f}s: {out}")
    return out


BUILDERS = {"python": build_python, "pause": build_pause, "operator": build_operator}


def build(names: Iterable[str]) -> dict[str, Path]:
    archives = {name: BUILDERS[name]() for name in names}
    for name, keep in archives.items():  # older builds of the same image
        for old in IMAGES.glob(f"{name}-*.oci.tar"):
            if old != keep:
                old.unlink()
    return archives


def load(address: str, archives: Iterable[Path]) -> None:
    """Import OCI archives into the CRI namespace of the containerd at `address`."""
    for archive in archives:
        proc = subprocess.run(
            [
                "ctr",
                "--address",
                address,
                "--namespace",
                "k8s.io",
                "images",
                "import",
                "--all-platforms",
                str(archive),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"ctr images import {archive.name} failed:\n{proc.stderr}")


def export(archive: Path, dest: Path) -> None:
    """Unpack an image's layers, in order, into `dest` (the Dockerfile's last stage
    copies it): ownership and modes as in the image."""
    with tarfile.open(archive) as oci:

        def blob(digest: str) -> bytes:
            member = oci.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
            assert member is not None
            return member.read()

        index = json.loads(blob_of(oci, "index.json"))
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        dest.mkdir(parents=True, exist_ok=True)
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=io.BytesIO(blob(layer["digest"])), mode="r:gz") as tar:
                tar.extractall(dest, numeric_owner=True, filter="tar")


def blob_of(oci: tarfile.TarFile, name: str) -> bytes:
    member = oci.extractfile(name)
    assert member is not None
    return member.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "load", "export"])
    parser.add_argument("names", nargs="*", help="python, pause, operator (default: all)")
    parser.add_argument("--address", help="load: the containerd socket")
    args = parser.parse_args(argv)
    if args.command == "export":
        if len(args.names) != 2:
            parser.error("export takes an image name and a directory")
        export(build([args.names[0]])[args.names[0]], Path(args.names[1]))
        return 0
    names = args.names or list(BUILDERS)
    unknown = set(names) - set(BUILDERS) - {"all"}
    if unknown:
        parser.error(f"unknown images: {sorted(unknown)}")
    if "all" in names:
        names = list(BUILDERS)
    t0 = time.monotonic()
    archives = build(names)
    if args.command == "load":
        if not args.address:
            parser.error("load needs --address")
        load(args.address, archives.values())
    for name, path in archives.items():
        print(f"{name}\t{path}\t{path.stat().st_size}")
    log(f"{args.command} {' '.join(names)}: {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
