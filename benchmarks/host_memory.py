"""Host memory of loading a Wan transformer: the previous eager loader vs the meta-device + mmap fill (not a test).

A Wan-1.3B-wide DiT (dim 1536, ffn 8960, 12 heads) at reduced depth is saved in bf16, Wan layout; each way of
loading it into a float32 DiT runs in a fresh process while a thread samples /proc/self/status every 2 ms:
  previous   load_file (the whole file in memory) -> meta DiT -> load_state_dict(assign) -> .float()
  fill       load_wan_dit: lazy safetensors (mmap) -> meta DiT -> to_empty -> copy tensor by tensor
  empty      wan_dit_source(...).empty(): the meta model a rank holds before sharding (no weights)
and per rank of a 2-rank torchrun job (gloo, FSDP2 per block then the root):
  previous + shard   every rank loads the whole model (previous loader), then shards it
  empty + shard + fill   every rank shards the meta model, then fills its own shard from the mmap'd file
Reported: peak anonymous memory (what a process really owns; file pages of a memory map are shared,
reclaimable page cache) and peak RSS, both above the process's baseline after imports, in GB.

    OMP_NUM_THREADS=1 python benchmarks/host_memory.py [--layers 6]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

WIDTH = dict(dim=1536, ffn_dim=8960, num_heads=12, freq_dim=256, text_dim=4096, in_channels=16, out_channels=16,
             patch_size=(1, 2, 2))


def status_kb() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(rest.split()[0])
    return out


def child(mode: str, path: str) -> None:
    """One load in this process; prints JSON peaks (GB above the baseline) and the model's size."""
    import torch
    from safetensors.torch import load_file

    from stream_r1.models.dit import DiT
    from stream_r1.models.wan_io import config_from_state, load_wan_dit, wan_dit_source

    base, peak, stop = status_kb(), status_kb(), threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for k, v in status_kb().items():
                peak[k] = max(peak[k], v)
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    sharded = mode.endswith("shard")
    if sharded:
        import torch.distributed as dist
        from torch.distributed.fsdp import fully_shard

        dist.init_process_group("gloo")
        mode = mode.removesuffix("-shard")
    if mode == "previous":
        state = load_file(path)
        with torch.device("meta"):
            model = DiT(config_from_state(state, {"num_heads": WIDTH["num_heads"]}))
        model.load_state_dict(state, assign=True)
        model.float()
        del state
    elif mode == "fill" and not sharded:
        model = load_wan_dit(path, num_heads=WIDTH["num_heads"])
    else:  # empty, or the sharded fill: the meta model first
        source = wan_dit_source(path, num_heads=WIDTH["num_heads"])
        model = source.empty()
    if sharded:
        for block in model.blocks:
            fully_shard(block)
        fully_shard(model)
        if mode == "fill":
            source.fill_(model.to_empty(device="cpu"))
    seconds = time.perf_counter() - start
    stop.set()
    thread.join()
    local = [p.to_local() if hasattr(p, "to_local") else p for p in model.parameters()]
    nbytes = sum(p.numel() * p.element_size() for p in local)
    print(json.dumps({"anon_gb": (peak["RssAnon"] - base["RssAnon"]) / 2**20,
                      "rss_gb": (peak["VmRSS"] - base["VmRSS"]) / 2**20, "model_gb": nbytes / 2**30,
                      "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    import torch

    from stream_r1.models.dit import DiT, DiTConfig
    from stream_r1.models.wan_io import save_wan_dit

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = DiT(DiTConfig(**WIDTH, num_layers=args.layers)).to(torch.bfloat16)
        path = save_wan_dit(model, tmp)
        file_gb = path.stat().st_size / 2**30
        del model
        print(f"file: {file_gb:.2f} GB (bf16, {args.layers} blocks of Wan-1.3B width) -> float32 DiT\n")
        print("| loader | peak anonymous GB | peak RSS GB | model GB | seconds |\n|---|---|---|---|---|")
        rows = {}
        for mode in ("previous", "fill", "empty", "previous-shard", "fill-shard"):
            cmd = [sys.executable, __file__, "--child", mode, str(path)]
            if mode.endswith("shard"):
                cmd[1:1] = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            ranks = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            rows[mode] = r = max(ranks, key=lambda x: x["anon_gb"])  # the rank that needed most
            label = {"previous-shard": "previous + shard (worst of 2 ranks)",
                     "fill-shard": "empty + shard + fill (worst of 2 ranks)"}.get(mode, mode)
            print(f"| {label} | {r['anon_gb']:.2f} | {r['rss_gb']:.2f} | {r['model_gb']:.2f} | {r['seconds']:.2f} |")
        ratio = rows["fill-shard"]["anon_gb"] / rows["previous-shard"]["anon_gb"]
        print(f"\npeak anonymous memory per rank at 2 ranks, empty + shard + fill / previous + shard: {ratio:.2f}")


if __name__ == "__main__":
    main()
