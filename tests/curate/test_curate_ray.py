"""The same per-shard pipeline as a Ray Data pipeline on a local Ray instance (`--ray local`),
when ray is installed: the same outputs as the process pool, reruns skip done shards, and a
broken shard or a dead worker fails alone."""

import json
import os
import tarfile

import pyarrow.parquet as pq
import pytest
from curate_fixtures import write_tar

from xgenmm.curate import GroundingTaskConfig, RunConfig, SourceOptions, list_shards, run

KNOWN = GroundingTaskConfig(detector="known")


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="ray is an optional extra: pip install -e '.[curate]'")
    pytest.importorskip("ray.data", reason="Ray Data needs ray[data]: pip install -e '.[curate]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _rows(out, name):
    return pq.read_table(out / "parquet" / f"{name}.parquet").to_pylist()


def _members(out, name):
    with tarfile.open(out / "wds" / f"{name}.tar") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_ray_data_gives_the_process_pool_outputs_and_reruns_skip_done_shards(tmp_path, scenes, local_ray):
    src = tmp_path / "in"
    for i, sc in enumerate(scenes):
        write_tar(src / f"{i:03d}.tar", [sc])
    (src / "bad.tar").write_bytes(b"this is not a tar archive" * 100)
    pool = run(KNOWN, str(src), RunConfig(str(tmp_path / "pool"), workers=2))
    out = tmp_path / "ray"
    on_ray = run(KNOWN, str(src), RunConfig(str(out), ray_address="local"))

    assert on_ray["samples"] == pool["samples"] == {"read": 3, "written": 3, "skipped": 0}
    assert on_ray["shards"]["done"] == 3 and on_ray["shards"]["skipped_as_done"] == 0
    # The broken shard is reported, the others are done, as in the process pool.
    assert list(on_ray["shards"]["failed"]) == ["bad"] and "ReadError" in on_ray["shards"]["failed"]["bad"]
    assert on_ray["shards"]["failed"] == pool["shards"]["failed"]
    for i in range(3):
        name = f"{i:03d}"
        assert _rows(out, name) == _rows(tmp_path / "pool", name) and len(_rows(out, name)) == 1
        assert _members(out, name) == _members(tmp_path / "pool", name)
    assert sorted(p.name for p in (out / "parquet").iterdir()) == ["000.parquet", "001.parquet", "002.parquet"]
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["shard"] for r in manifest) == ["000", "001", "002"]
    assert all(r["counts"] == {"read": 1, "written": 1} for r in manifest)

    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "parquet").iterdir()}
    again = run(KNOWN, str(src), RunConfig(str(out), ray_address="local"))
    assert again["shards"]["skipped_as_done"] == 3 and again["shards"]["done"] == 3
    assert list(again["shards"]["failed"]) == ["bad"]  # only the failed shard ran again
    assert {p.name: p.stat().st_mtime_ns for p in (out / "parquet").iterdir()} == stamp
    assert again["samples"]["written"] == 3


class _KillsItsWorker:
    """Unpickles as a call to os._exit: the Ray worker that unpacks this job dies, as one
    killed for running out of memory would."""

    def __reduce__(self):
        return (os._exit, (3,))


def test_a_shard_whose_ray_worker_dies_fails_alone(tmp_path, scenes, local_ray):
    from xgenmm.curate.runner import _run_ray

    src, out = tmp_path / "in", tmp_path / "out"
    write_tar(src / "good.tar", scenes)
    write_tar(src / "doomed.tar", scenes[:1])
    run_cfg = RunConfig(str(out))
    jobs = [(KNOWN, s, str(out), SourceOptions(), run_cfg, False) for s in list_shards(str(src))]
    jobs = [(_KillsItsWorker(),) + job[1:] if job[1].name == "doomed" else job for job in jobs]
    results = {r["shard"]: r for r in _run_ray(jobs, "local", 1.0)}
    assert sorted(results) == ["doomed", "good"]
    assert "Ray worker running it died" in results["doomed"]["error"]
    assert results["good"]["counts"] == {"read": 3, "written": 3}
    assert len(_rows(out, "good")) == 3 and not (out / "parquet" / "doomed.parquet").exists()
