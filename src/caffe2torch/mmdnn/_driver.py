"""MMdnn's three steps, run inside an environment where MMdnn 0.3.1 works (protobuf 3.20.3).

This file is a standalone script: it imports only the standard library, numpy, torch and
mmdnn, never caffe2torch (whose environment may have another protobuf). The engine runs it
as ``MMDNN_PYTHON _driver.py PROTOTXT CAFFEMODEL WORKDIR`` and reads one JSON line
from its stdout. In WORKDIR it leaves:

- ``ir.pb``, ``ir.json``, ``ir.npy``: ``mmtoir -f caffe`` (MMdnn's IR);
- ``kit.py``, ``kit.npy``: ``mmtocode -f pytorch``, with ``kit.npy``'s 1-D parameters
  (bias, scale, mean, var...) squeezed to their true shape, the fix for MMdnn issues
  #942/#611/#711 (without PyCaffe its Caffe reader pads every blob to 4-D); weights are kept;
- ``kit.pth``: ``mmtomodel -f pytorch`` (its pickled module), which works once squeezed;
- ``state.pth``: the state_dict of ``KitModel(kit.npy)``, plain tensors.
"""

import json
import os
import subprocess
import sys

import numpy as np

# The parameters MMdnn stores per layer that are 1-D in PyTorch; "weights" never is.
ONE_D = ("bias", "scale", "mean", "var", "gamma", "beta", "alpha")


def run(tool, args, log):
    exe = os.path.join(os.path.dirname(sys.executable), tool)
    proc = subprocess.run([exe, *args], capture_output=True, text=True)
    log.append(
        {
            "tool": tool,
            "args": args,
            "code": proc.returncode,
            "stdout": proc.stdout[-4000:],
            "stderr": proc.stderr[-4000:],
        }
    )
    if proc.returncode != 0:
        print(json.dumps({"ok": False, "step": tool, "log": log}))
        sys.exit(0)


def squeeze(path):
    """Reshape every 1-D parameter that MMdnn padded to 4-D back to 1-D; returns what changed."""
    weights = np.load(path, allow_pickle=True).item()  # MMdnn's own file, just written
    changed = []
    for layer, params in weights.items():
        for key, value in params.items():
            value = np.asarray(value)
            if key in ONE_D and value.ndim > 1 and sum(d > 1 for d in value.shape) <= 1:
                params[key] = value.reshape(-1)
                changed.append([layer, key, list(value.shape), [int(value.size)]])
    np.save(path, weights, allow_pickle=True)
    return changed


def main():
    prototxt, caffemodel, work = sys.argv[1:4]
    os.chdir(work)
    log = []
    run("mmtoir", ["-f", "caffe", "-n", prototxt, "-w", caffemodel, "-o", "ir"], log)
    run(
        "mmtocode",
        [
            "-f",
            "pytorch",
            "-n",
            "ir.pb",
            "--IRWeightPath",
            "ir.npy",
            "--dstModelPath",
            "kit.py",
            "-dw",
            "kit.npy",
        ],
        log,
    )
    changed = squeeze("kit.npy")
    run("mmtomodel", ["-f", "pytorch", "-in", "kit.py", "-iw", "kit.npy", "-o", "kit.pth"], log)
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("kit", os.path.join(work, "kit.py"))
    kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit)
    try:
        net = kit.KitModel("kit.npy")
    except Exception as e:  # noqa: BLE001 - reported to the engine
        print(
            json.dumps(
                {
                    "ok": False,
                    "step": "KitModel(kit.npy)",
                    "log": log,
                    "error": f"{type(e).__name__}: {e}",
                }
            )
        )
        return
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, "state.pth")
    versions = {
        "mmdnn": _version("mmdnn"),
        "protobuf": _version("protobuf"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }
    print(json.dumps({"ok": True, "squeezed": changed, "log": log, "versions": versions}))


def _version(name):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
