"""One torchrun worker of the distributed test: trains each CONFIG.yaml in turn in one
process group (gloo, or the backend named by `--backend`), so that the interpreter starts once
for several strategies."""

from __future__ import annotations

import sys

import torch.distributed as dist

from xgenmm.train import load_config, run_stage


def main(configs: list[str]) -> None:
    backend = "gloo"
    if configs[:1] == ["--backend"]:
        backend, configs = configs[1], configs[2:]
    dist.init_process_group(backend)
    try:
        for path in configs:
            run_stage(load_config(path))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
