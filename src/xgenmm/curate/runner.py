"""Running a curation task over many shards, on one machine or on a Ray cluster.

Layout of an output folder:

    OUT/parquet/NAME.parquet   rows in the released schema, one file per input shard
    OUT/wds/NAME.tar           WebDataset caption shard: KEY.jpg|png, KEY.txt, KEY.json
    OUT/manifest.jsonl         one line per finished shard, with its counters
    OUT/summary.json           the run summary: samples read / written, skipped per reason
    OUT/run.json               the task and its config (a rerun must be the same task)

Both outputs of a shard are written under temporary names in their own folder and renamed
only when the shard is complete, and only then is the shard added to the manifest; a rerun
skips the shards in the manifest whose outputs exist. A crash therefore loses at most the
shards in progress. `process_shard` is the one function every backend runs: in-process
(`workers=1`), in a local process pool (the default), or in a Ray Data pipeline on a
Ray cluster (`ray_address`)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import pickle
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .manifest import Manifest, summarize, write_json_atomic
from .sources import ShardSpec, SourceOptions, count_records, encode_png, image_bytes_format, list_shards, read_shard
from .tasks import Task, build_task, task_name

log = logging.getLogger(__name__)


@dataclass
class RunConfig:
    """Where and how to run."""

    output: str  # output folder (created)
    workers: int = 0  # local worker processes (0: one per CPU core, at most one per pending shard; 1: in this process);
    # on Ray, the most shards run at once (0: as many as the cluster has CPUs for)
    ray_address: str | None = None  # run shards on Ray ("local" starts or reuses a local instance, or "auto", or ray://HOST:PORT)
    cpus_per_shard: float = 1.0  # Ray: CPUs reserved by each shard
    limit: int | None = None  # read at most this many samples per shard (trial runs)
    write_parquet: bool = True  # write OUT/parquet/NAME.parquet
    write_webdataset: bool = True  # write OUT/wds/NAME.tar


_TASK_CACHE: dict[str, Task] = {}


def _task(config) -> Task:
    """One task object per worker process and config: engines and models load once."""
    key = task_name(config) + repr(config)
    if key not in _TASK_CACHE:
        _TASK_CACHE.clear()
        _TASK_CACHE[key] = build_task(config)
    return _TASK_CACHE[key]


def _wds_key(key: str) -> str:
    # WebDataset splits a member name at its first dot: keys must not contain one.
    return key.replace(".", "_").replace("/", "__")


def process_shard(config, shard: ShardSpec, output: str, source: SourceOptions = SourceOptions(),
                  run: RunConfig | None = None, progress: bool = False) -> dict:
    """Curate one shard and write its outputs atomically. Returns its result record."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import webdataset as wds

    from xgenmm.model.image_processing import ImageLoadError, load_image

    run = run or RunConfig(output)
    t0 = time.perf_counter()
    task = _task(config)
    engine0 = task.engine_seconds
    out = Path(output)
    tag = f".tmp-{os.getpid()}"
    pq_path, tar_path = out / "parquet" / f"{shard.name}.parquet", out / "wds" / f"{shard.name}.tar"
    pq_tmp, tar_tmp = pq_path.with_name(pq_path.name + tag), tar_path.with_name(tar_path.name + tag)
    pq_path.parent.mkdir(parents=True, exist_ok=True)
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    rows: list[dict] = []
    tar_file = open(tar_tmp, "wb") if run.write_webdataset else None
    tar = wds.TarWriter(tar_file) if tar_file else None
    seen_keys: set[str] = set()

    def flush(batch):
        for (rec, image), res in zip(batch, task.process_batch(batch, counts)):
            if res is None:
                continue
            key = _wds_key(rec.key)
            if key in seen_keys:
                counts["duplicate_key"] += 1
                continue
            seen_keys.add(key)
            rows.append(res.row)
            if tar is not None:
                ext = image_bytes_format(rec.image)
                data = rec.image if ext else encode_png(image)
                tar.write({"__key__": key, ext or "png": data, "txt": res.caption,
                           "json": json.dumps(res.meta, ensure_ascii=False)})
            counts["written"] += 1

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count_records(shard), desc=shard.name, unit="img", leave=False)
    try:
        batch = []
        for rec in read_shard(shard, source):
            if run.limit is not None and counts["read"] >= run.limit:
                break
            counts["read"] += 1
            if bar is not None:
                bar.update()
            if not rec.image:
                counts["missing_image"] += 1
                continue
            try:
                image = load_image(rec.image, name=f"{shard.name}/{rec.key}")
            except (ImageLoadError, ValueError, OSError) as e:
                counts["corrupt_image"] += 1
                log.debug("skip %s/%s: %s", shard.name, rec.key, e)
                continue
            batch.append((rec, image))
            if len(batch) >= task.batch_size:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
        if tar is not None:
            tar.close()
            tar_file = None
            os.replace(tar_tmp, tar_path)
        if run.write_parquet:
            pq.write_table(pa.Table.from_pylist(rows, schema=task.schema), pq_tmp)
            os.replace(pq_tmp, pq_path)
    finally:
        if bar is not None:
            bar.close()
        if tar_file is not None:
            tar_file.close()
        for p in (tar_tmp, pq_tmp):
            if p.exists():
                p.unlink()
    return {"shard": shard.name, "task": task.name, "counts": dict(counts),
            "engine_s": round(task.engine_seconds - engine0, 4), "total_s": round(time.perf_counter() - t0, 4)}


def _shard_job(args) -> dict:
    config, shard, output, source, run, progress = args
    try:
        return process_shard(config, shard, output, source, run, progress)
    except Exception as e:  # a broken shard (unreadable tar, bad Parquet) fails alone
        log.error("shard %s failed: %s: %s", shard.name, type(e).__name__, e)
        return {"shard": shard.name, "error": f"{type(e).__name__}: {e}"}


def _set_threads(n: int) -> None:
    # Before torch is imported (spawned workers), the environment is what its pools read.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, n)))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(max(1, n))


def _run_local(jobs: list, workers: int) -> Iterator[dict]:
    if workers <= 1:
        for job in jobs:
            yield _shard_job(job)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # forkserver, not fork: torch's thread pools do not survive a fork of a process that used
    # them. The server imports this module (and so torch) once; workers fork from it quickly.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_set_threads, initargs=(threads,)) as pool:
        futures = [pool.submit(_shard_job, job) for job in jobs]
        for fut in as_completed(futures):
            yield fut.result()


def _ray_data_shard(row: dict) -> dict:
    """The Ray Data map function: one row in (a pickled shard job), one row out (its result
    record as JSON, so rows of finished and failed shards share one Arrow schema)."""
    try:
        result = _shard_job(pickle.loads(row["job"]))
    except Exception as e:  # a job that cannot even be unpacked fails alone too
        result = {"shard": row["shard"], "error": f"{type(e).__name__}: {e}"}
    return {"shard": row["shard"], "result": json.dumps(result)}


@contextlib.contextmanager
def _quiet_ray_data(ray_data):
    """Ray Data without its progress bars, per-run statistics and INFO lines on stderr (the
    run's own tqdm bar and summary say the same), restored afterwards."""
    ctx = ray_data.DataContext.get_current()
    settings = {"enable_progress_bars": False, "enable_operator_progress_bars": False,
                "print_on_execution_start": False, "enable_auto_log_stats": False,
                # The map function returns a shard's error as a row; a block that still fails
                # is a lost worker, which `_run_ray` reports as that shard's failure.
                "max_errored_blocks": -1}
    saved = {k: getattr(ctx, k) for k in settings if hasattr(ctx, k)}
    # "ray.data._internal.progress" only says, once, that the bars are off.
    levels = {"ray.data": logging.WARNING, "ray.data._internal.progress": logging.ERROR}
    saved_levels = {name: logging.getLogger(name).level for name in levels}
    try:
        for k in saved:
            setattr(ctx, k, settings[k])
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        yield
    finally:
        for k, v in saved.items():
            setattr(ctx, k, v)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


def _run_ray(jobs: list, address: str, cpus_per_shard: float, max_concurrent: int = 0) -> Iterator[dict]:
    """The same per-shard function as a Ray Data pipeline: a dataset with one row (and one
    block) per shard job, mapped by `_shard_job` with `cpus_per_shard` CPUs reserved per shard
    and at most `max_concurrent` shards at once (0: as many as the cluster has CPUs for).
    Results stream back as shards finish, so the caller adds each to the done-manifest at once
    and a crash loses at most the shards in flight. Jobs travel pickled in a bytes column
    (Arrow cannot hold the task's config objects), results as JSON. A shard whose worker dies
    (out of memory, node lost) is retried once, then reported as failed without stopping the
    others. Worker processes are reused, so models load once per worker."""
    if not jobs:
        return
    import ray
    import ray.data

    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False)
    items = [{"shard": job[1].name, "job": pickle.dumps(job)} for job in jobs]
    concurrency = min(len(jobs), max_concurrent) if max_concurrent > 0 else None
    missing = {job[1].name for job in jobs}
    with _quiet_ray_data(ray.data):
        with warnings.catch_warnings():
            # max_retries=1: a shard whose worker died runs once more (Ray Data's default retries
            # forever, so a shard that runs out of memory every time would hang the run). Ray
            # Data has no named parameter for it yet and warns that this form is deprecated.
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ray.data.from_items(items, override_num_blocks=len(items)).map(
                _ray_data_shard, num_cpus=cpus_per_shard, concurrency=concurrency, max_retries=1)
        for row in ds.iter_rows():
            missing.discard(row["shard"])
            yield json.loads(row["result"])
    for name in sorted(missing):
        yield {"shard": name, "error": "the Ray worker running it died (out of memory, node lost), also on its retry"}


def run(config, sources: list[str] | str, run_cfg: RunConfig, source: SourceOptions = SourceOptions()) -> dict:
    """Curate every shard of `sources` not yet done in `run_cfg.output`; returns the summary
    (also written to OUT/summary.json)."""
    from tqdm import tqdm

    out = Path(run_cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    name = task_name(config)
    _check_run_file(out, name, config)
    shards = list_shards(sources, source)
    manifest = Manifest(out / "manifest.jsonl")
    done = manifest.done()
    pending = [s for s in shards if not (s.name in done and _outputs_exist(out, s.name, run_cfg))]
    log.info("%s: %d shards, %d already done, %d to run", name, len(shards), len(shards) - len(pending), len(pending))
    workers = run_cfg.workers or min(os.cpu_count() or 1, max(1, len(pending)))
    single = run_cfg.ray_address is None and workers <= 1
    jobs = [(config, s, str(out), source, run_cfg, single) for s in pending]
    if run_cfg.ray_address:
        results = _run_ray(jobs, run_cfg.ray_address, run_cfg.cpus_per_shard, run_cfg.workers)
    else:
        results = _run_local(jobs, workers)
    failed: dict[str, str] = {}
    with tqdm(total=len(pending), desc=f"curate {name}", unit="shard", disable=not pending) as bar:
        for result in results:
            if "error" in result:
                failed[result["shard"]] = result["error"]
            else:
                manifest.add(result)
            bar.update()
    summary = summarize(name, [s.name for s in shards], manifest.done(), failed, len(shards) - len(pending))
    write_json_atomic(out / "summary.json", summary)
    return summary


def _outputs_exist(out: Path, shard: str, run_cfg: RunConfig) -> bool:
    return (not run_cfg.write_parquet or (out / "parquet" / f"{shard}.parquet").exists()) and (
        not run_cfg.write_webdataset or (out / "wds" / f"{shard}.tar").exists()
    )


def _check_run_file(out: Path, name: str, config) -> None:
    path = out / "run.json"
    if path.exists():
        previous = json.loads(path.read_text()).get("task")
        if previous != name:
            raise ValueError(f"{out} holds a `curate {previous}` run; use another --output for `curate {name}`")
    write_json_atomic(path, {"task": name, "config": dataclasses.asdict(config)})
