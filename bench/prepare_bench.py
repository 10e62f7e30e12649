"""How fast the raw reader converts, and whether time grows linearly and memory stays flat.

`run_prepare_bench` generates synthetic raw files of the `aliccp` profile (the real data's
shape: ~14 triples per impression line, ~500 per request line, ~58 impressions per request)
at two or more scales, converts each with `convert_raw` in a fresh child process, and reports
wall seconds, MB/s, CPU seconds and the child's peak RSS (VmHWM, the whole process: Python,
pyarrow and the conversion) per size, with the RSS sampled over the run (highest per quarter of
the wall time) to show whether memory grows as more lines are converted; both are read by
ccp.memory. Scale 1.0 is the full real size (38 GB of text).

MB are 10^6 bytes of raw text. On a shared machine wall time depends on what else runs:
`load_average` is recorded before and after, and `mb_per_cpu_s` (raw MB per CPU second of the
child, all threads) is the figure that other load disturbs least.

Command line: python -m bench.prepare_bench --sizes 0.01 0.02 --work-dir DIR
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

from ccp.atomic import print_and_save

TARGET_MB_PER_S = 40.0
TARGET_PEAK_RSS_GIB = 6.0
LINEAR_TOLERANCE = 0.25  # seconds per MB may differ by this share between sizes
FLAT_TOLERANCE = 0.15  # RSS in the second half of a run may exceed the first half's by this
RSS_SAMPLE_S = 0.25


def _rss_by_quarter(samples: list[tuple[float, int]]) -> list[float]:
    """Highest RSS (MiB) in each quarter of the run's wall time, from (seconds, KiB) samples."""
    if not samples:
        return []
    end = samples[-1][0] or 1.0
    quarters = [0.0] * 4
    for at, rss_kib in samples:
        index = min(int(4 * at / end), 3)
        quarters[index] = max(quarters[index], rss_kib / 2**10)
    return [round(q, 1) for q in quarters]


def _convert_in_child(raw_dir: str, cache_dir: str, workers: int | None, queue) -> None:
    from ccp.data import raw
    from ccp.memory import Sampler, peak_rss_bytes

    try:
        kwargs = {} if workers is None else {"workers": workers}
        before = os.times()
        # RSS over time: does memory grow as more lines are converted?
        rss = Sampler("VmRSS", every_s=RSS_SAMPLE_S)
        report = raw.convert_raw(raw_dir, cache_dir, progress=False, **kwargs)
        rss.stop()
        after = os.times()
        cpu = (after.user - before.user) + (after.system - before.system)
        queue.put({"report": report, "cpu_seconds": cpu, "peak_rss": peak_rss_bytes(),
                   "rss_by_quarter": _rss_by_quarter(rss.samples)})
    except BaseException as error:  # reported to the parent, which raises it
        queue.put({"error": f"{type(error).__name__}: {error}"})


def measure_conversion(raw_dir: Path, cache_dir: Path, workers: int | None = None) -> dict:
    """Convert raw_dir in a fresh process (so that its peak RSS is the conversion's own)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_convert_in_child,
                            args=(str(raw_dir), str(cache_dir), workers, queue))
    load_before = os.getloadavg()
    child.start()
    result = queue.get()
    child.join()
    if "error" in result:
        raise RuntimeError(f"conversion of {raw_dir} failed: {result['error']}")
    report = result["report"]
    return {
        "raw_mb": report["raw_mb"],
        "impressions": sum(s["impressions"] for s in report["splits"].values()),
        "requests": sum(s["requests"] for s in report["splits"].values()),
        "seconds": report["seconds"],
        "mb_per_s": report["mb_per_s"],
        "cpu_seconds": round(result["cpu_seconds"], 2),
        "mb_per_cpu_s": round(report["raw_mb"] / max(result["cpu_seconds"], 1e-9), 1),
        "peak_rss_mib": round(result["peak_rss"] / 2**20, 1),
        "rss_mib_by_quarter": result["rss_by_quarter"],
        "workers": report["workers"],
        "per_file_mb_per_s": {name: f["mb_per_s"] for name, f in report["files"].items()},
        "load_average": [round(x, 2) for x in load_before] + [round(os.getloadavg()[0], 2)],
    }


def ensure_raw(out_dir: Path, profile: str, scale: float, seed: int, progress: bool) -> Path:
    """Generate the synthetic raw files unless a complete set of this size is there."""
    from ccp.data import synth

    if synth.is_complete(out_dir):
        info = synth.load_info(out_dir)
        if (info.get("profile"), info.get("scale"), info.get("seed")) == (profile, scale, seed):
            return out_dir
    started = time.perf_counter()
    synth.generate(out_dir, profile=profile, seed=seed, scale=scale, progress=progress)
    if progress:
        print(f"generated {profile} x {scale} in {time.perf_counter() - started:.0f} s",
              file=sys.stderr, flush=True)
    return out_dir


def run_prepare_bench(sizes=(0.01, 0.02), work_dir: str | os.PathLike = "data/prepare-bench",
                      profile: str = "aliccp", seed: int = 0, workers: int | None = None,
                      keep_cache: bool = False, progress: bool = True) -> dict:
    """Generate, convert and measure each size (a scale of the profile); return the figures."""
    if len(sizes) < 2:
        raise ValueError("give at least two sizes, to see how time and memory grow")
    work_dir = Path(work_dir)
    runs = []
    for scale in sorted(float(s) for s in sizes):
        raw_dir = ensure_raw(work_dir / f"{profile}-x{scale:g}", profile, scale, seed, progress)
        cache_dir = work_dir / f"{profile}-x{scale:g}-cache"
        shutil.rmtree(cache_dir, ignore_errors=True)
        run = {"scale": scale, **measure_conversion(raw_dir, cache_dir, workers)}
        if not keep_cache:
            shutil.rmtree(cache_dir, ignore_errors=True)
        if progress:
            print(f"scale {scale:g}: {run['raw_mb']:,.0f} MB in {run['seconds']:.1f} s = "
                  f"{run['mb_per_s']:.1f} MB/s ({run['mb_per_cpu_s']:.1f} MB per CPU s), "
                  f"peak RSS {run['peak_rss_mib']:,.0f} MiB", file=sys.stderr, flush=True)
        runs.append(run)
    return summarise(runs, profile)


def _second_half_flat(quarters: list[float]) -> bool:
    if len(quarters) < 4 or not max(quarters[:2]):
        return False
    return max(quarters[2:]) <= (1 + FLAT_TOLERANCE) * max(quarters[:2])


def summarise(runs: list[dict], profile: str) -> dict:
    small, large = runs[0], runs[-1]
    size_ratio = large["raw_mb"] / small["raw_mb"]
    time_ratio = large["seconds"] / small["seconds"]
    cpu_ratio = large["cpu_seconds"] / small["cpu_seconds"]
    rss_ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
    slowest = min(r["mb_per_s"] for r in runs)
    highest_rss = max(r["peak_rss_mib"] for r in runs)
    return {
        "profile": profile,
        "runs": runs,
        "size_ratio": round(size_ratio, 3),
        "time_ratio": round(time_ratio, 3),
        "cpu_time_ratio": round(cpu_ratio, 3),
        "peak_rss_ratio": round(rss_ratio, 3),
        # Linear: seconds per MB about the same at both sizes (wall, and CPU which noise from
        # other processes disturbs less).
        "time_linear": abs(time_ratio / size_ratio - 1) <= LINEAR_TOLERANCE,
        "cpu_time_linear": abs(cpu_ratio / size_ratio - 1) <= LINEAR_TOLERANCE,
        # Flat: in the largest run, RSS in the second half of the conversion stays within
        # FLAT_TOLERANCE of the first half's (the peak across sizes also rises a little with
        # the number of blocks, by chance coincidences of large blocks; see peak_rss_ratio).
        "memory_flat": _second_half_flat(large["rss_mib_by_quarter"]),
        "targets": {"mb_per_s": TARGET_MB_PER_S, "peak_rss_gib": TARGET_PEAK_RSS_GIB},
        "meets_speed_target": slowest >= TARGET_MB_PER_S,
        "meets_memory_target": highest_rss <= TARGET_PEAK_RSS_GIB * 1024,
        "machine": {"cpus": os.cpu_count(), "platform": sys.platform},
        "note": "MB = 10^6 bytes of raw text; seconds exclude generating the data",
    }


def add_arguments(parser) -> None:
    """The options of `python -m bench data bench-prepare` (and of this module's main)."""
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.01, 0.02],
                        help="scales of the profile (1.0 = the real 38 GB)")
    parser.add_argument("--work-dir", default="data/prepare-bench")
    parser.add_argument("--profile", default="aliccp")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", help="also write the result here (JSON)")


def run(args) -> int:
    result = run_prepare_bench(args.sizes, args.work_dir, args.profile, workers=args.workers)
    print_and_save(result, args.out)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
