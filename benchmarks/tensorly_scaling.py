"""TensorLy CP and Tucker on the PyTorch backend: seconds per ALS iteration and peak memory, by tensor size.

Prints one JSON line per (method, device, size). Each measurement runs in a fresh subprocess so that
peak memory belongs to it alone: the peak resident set on CPU (imports included, see
``process_baseline_mb``), ``torch.cuda.max_memory_allocated`` on a GPU.
The tensor is a random rank-``rank`` tensor plus noise of shape users x items x contexts, with a
mask keeping ``--density`` of the cells when ``--masked`` (as masked EM-ALS on ratings would).

    python benchmarks/tensorly_scaling.py                       # CPU, sizes up to MovieLens-100K scale
    python benchmarks/tensorly_scaling.py --sizes 943x1682x4,6040x3706x4 --devices cpu,cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

DEFAULT_SIZES = "200x400x4,471x841x4,943x1682x4"  # CPU-friendly; MovieLens-1M is 6040x3706x4
ML1M = "6040x3706x4"


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(method: str, shape: tuple[int, ...], rank: int, n_iter: int, device_name: str, masked: bool,
            density: float, seed: int) -> dict:  # fmt: skip
    """Time ``n_iter`` ALS iterations (after a one-iteration warm-up) of CP or Tucker on one device."""
    import tensorly as tl
    import torch

    from recsys_tutorial import tensors

    tl.set_backend("pytorch")
    device = torch.device(device_name)
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # after imports, before the tensor
    g = torch.Generator().manual_seed(seed)
    factors = [torch.rand(n, rank, generator=g) for n in shape]
    X = (tl.cp_to_tensor((torch.ones(rank), factors)) + 0.1 * torch.randn(shape, generator=g)).to(device)
    mask = (torch.rand(shape, generator=g) < density).float().to(device) if masked else None
    if method == "cp":
        run = lambda n: tensors.cp(X, rank, mask=mask, n_iter=n, tol=0, seed=seed)  # noqa: E731
    else:
        run = lambda n: tensors.tucker(X, (rank,) * len(shape), mask=mask, n_iter=n, tol=0, seed=seed)  # noqa: E731
    run(1)  # warm-up: CUDA context, kernels, allocator
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run(n_iter)
    _sync(device)
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "method": method, "device": str(device), "shape": list(shape), "rank": rank, "masked": masked,
        "n_iter": n_iter, "seconds_per_iter": round(seconds / n_iter, 4), "peak_mb": round(peak_mb, 1),
        "process_baseline_mb": round(baseline_mb, 1), "dense_tensor_mb": round(tensors.tensor_megabytes(shape), 1),
        "torch_threads": torch.get_num_threads(), "machine": machine(),
    }  # fmt: skip


def machine() -> str:
    """Cores, GPU and torch version: enough to tell recorded runs apart."""
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()}-core {platform.machine()}, {gpu}, torch {torch.__version__}"


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"bad size {text!r}: write sizes like 943x1682x4") from None
    if len(shape) != 3 or min(shape) < 1:
        raise SystemExit(f"bad size {text!r}: need three positive dimensions, e.g. 943x1682x4")
    return shape


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"comma-separated IxJxK (MovieLens-1M: {ML1M})")
    p.add_argument("--max-size", type=int, default=None, help="skip sizes with more cells than this")
    p.add_argument("--methods", default="cp,tucker")
    p.add_argument("--devices", default=None, help="comma-separated, default: cpu, and cuda when present")
    p.add_argument("--rank", type=int, default=10)
    p.add_argument("--n-iter", type=int, default=5)
    p.add_argument("--masked", action="store_true", help="masked EM-ALS (as on a sparse ratings tensor)")
    p.add_argument("--density", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: method:device:size, run in this process
    args = p.parse_args(argv)
    if args.one:
        method, device, size = args.one.split(":")
        out = measure(method, _parse_shape(size), args.rank, args.n_iter, device, args.masked, args.density, args.seed)
        print(json.dumps(out), flush=True)
        return 0
    import torch

    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    shapes = [_parse_shape(s) for s in args.sizes.split(",")]
    if args.max_size:
        shapes = [s for s in shapes if s[0] * s[1] * s[2] <= args.max_size]
    common = ["--rank", str(args.rank), "--n-iter", str(args.n_iter), "--density", str(args.density)]
    common += ["--seed", str(args.seed)] + (["--masked"] if args.masked else [])
    for shape in shapes:
        for method in args.methods.split(","):
            for device in devices:
                one = f"{method}:{device}:{'x'.join(map(str, shape))}"
                done = subprocess.run([sys.executable, __file__, "--one", one, *common], capture_output=True, text=True)
                if done.returncode:
                    print(json.dumps({"method": method, "device": device, "shape": list(shape),
                                      "error": done.stderr.strip().splitlines()[-1:]}), flush=True)  # fmt: skip
                else:
                    print(done.stdout.strip(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
