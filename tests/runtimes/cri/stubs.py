"""The CRI stubs, generated at test time from runtime_v1.proto with grpcio-tools.

Generated code is never committed: it would pin a protobuf runtime version the
virtualenv may not have. protoc runs once per session into a directory the
caller owns (a temp dir, removed with it), and the two modules are loaded from
there under their generated names, which the grpc module imports by.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

PROTO = Path(__file__).with_name("runtime_v1.proto")


def generate(out_dir: Path) -> tuple[ModuleType, ModuleType]:
    """(runtime_v1_pb2, runtime_v1_pb2_grpc), generated into out_dir and imported."""
    from grpc_tools import protoc  # only the CRI tier needs grpcio-tools

    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PROTO, out_dir / PROTO.name)
    include = Path(protoc.__file__).parent / "_proto"  # the well-known types grpc_tools ships
    argv = ["protoc", f"-I{out_dir}", f"-I{include}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"]
    rc = protoc.main([*argv, str(out_dir / PROTO.name)])
    if rc != 0:
        raise RuntimeError(f"protoc failed ({rc}) on {PROTO}")
    return _load(out_dir, "runtime_v1_pb2"), _load(out_dir, "runtime_v1_pb2_grpc")


def _load(directory: Path, name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, directory / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: the _grpc module imports the _pb2 one by this name
    spec.loader.exec_module(module)
    return module
