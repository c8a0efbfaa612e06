"""A real training process for the resume test: trains CONFIG.yaml and, once the checkpoint of
step STALL_STEP is complete, writes MARKER and waits to be killed."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from xgenmm.train import load_config
from xgenmm.train.loop import Hooks, run_stage


def main(config: str, stall_step: int, marker: str) -> None:
    def on_checkpoint(step: int, path: Path) -> None:
        if step == stall_step:
            Path(marker).write_text(str(path))
            time.sleep(600)

    run_stage(load_config(config), Hooks(on_checkpoint=on_checkpoint))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
