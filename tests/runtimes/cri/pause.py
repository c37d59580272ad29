"""The sandbox ("pause") image, built here because nothing may be pulled.

The CRI plugin starts one pause process per pod to hold its namespaces. Ours is
a few lines of C compiled with `gcc -static` (no libc in the image), packed by
hand as an OCI image layout tar: one uncompressed layer holding /pause, a config
with the Entrypoint and user 65535 (what the upstream pause image runs as), a
manifest, and an index whose `io.containerd.image.name` annotation is the name
the CRI plugin's `sandbox_image` asks for, so `ctr images import` registers it
under that name and the CRI plugin finds it without a registry.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

PAUSE_C = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }

int main(void) {
    struct sigaction act = {0};
    act.sa_handler = stop;
    sigaction(SIGINT, &act, 0);
    sigaction(SIGTERM, &act, 0);
    act.sa_handler = reap;
    act.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &act, 0);
    for (;;) pause();
}
"""


def compile_pause(workdir: Path) -> Path:
    """A static pause binary in workdir."""
    source, binary = workdir / "pause.c", workdir / "pause"
    source.write_text(PAUSE_C)
    proc = subprocess.run(
        ["gcc", "-static", "-Os", "-s", "-o", str(binary), str(source)], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise RuntimeError(f"gcc -static failed (apt-get install -y gcc libc6-dev): {proc.stderr}")
    return binary


def _blob(tar: tarfile.TarFile, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest.split(':', 1)[1]}")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
    return digest, len(data)


def _layer(binary: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as layer:
        info = tarfile.TarInfo("pause")
        data = binary.read_bytes()
        info.size, info.mode = len(data), 0o755
        layer.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build_image(workdir: Path, name: str) -> Path:
    """An OCI layout tar of the pause image, named `name` (e.g. localhost/loxi-pause:1)."""
    workdir.mkdir(parents=True, exist_ok=True)
    layer = _layer(compile_pause(workdir))
    archive = workdir / "pause-oci.tar"
    with tarfile.open(archive, "w") as tar:
        layer_digest, layer_size = _blob(tar, layer)
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "User": "65535:65535", "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},  # uncompressed: diff id = digest
        }
        config_digest, config_size = _blob(tar, json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}
            ],
        }
        manifest_digest, manifest_size = _blob(tar, json.dumps(manifest).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {"io.containerd.image.name": name},
                }
            ],
        }
        for member, data in (("oci-layout", {"imageLayoutVersion": "1.0.0"}), ("index.json", index)):
            raw = json.dumps(data).encode()
            info = tarfile.TarInfo(member)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return archive
