"""The same per-shard pipeline on a local Ray instance (Ray tasks), when ray is installed."""

import pyarrow.parquet as pq
import pytest
from curate_fixtures import write_tar

from xgenmm.curate import GroundingTaskConfig, RunConfig, run


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="ray is an optional extra: pip install -e '.[curate]'")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_runs_every_shard_and_matches_the_local_run(tmp_path, scenes, local_ray):
    src = tmp_path / "in"
    for i, sc in enumerate(scenes):
        write_tar(src / f"{i:03d}.tar", [sc])
    cfg = GroundingTaskConfig(detector="known")
    local = run(cfg, str(src), RunConfig(str(tmp_path / "local"), workers=1))
    on_ray = run(cfg, str(src), RunConfig(str(tmp_path / "ray"), ray_address="local"))
    assert on_ray["shards"]["done"] == 3 and on_ray["samples"] == local["samples"]
    for i in range(3):
        a = pq.read_table(tmp_path / "ray" / "parquet" / f"{i:03d}.parquet").to_pylist()
        assert a == pq.read_table(tmp_path / "local" / "parquet" / f"{i:03d}.parquet").to_pylist()
    again = run(cfg, str(src), RunConfig(str(tmp_path / "ray"), ray_address="local"))
    assert again["shards"]["skipped_as_done"] == 3
