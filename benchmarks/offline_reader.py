"""Offline reader: sequences per second and peak memory on a multi-GB TD-MPC2-format dataset (issue W4).

Writes a synthetic MT30-shaped dataset (chunks of [episodes, 501] with obs 24, action 6; 30 task ids) of about
`--gb` GB once into `--data` (default /tmp/pwmbench_reader_data), then, in a fresh process so that generating it
does not count, measures:
- `open_s`: `OfflineDataset(dir)` (memory-maps every chunk, reads the per-episode task ids);
- `sequences_per_s`: windows of H+1 = 17 entries, batches of 256, over all tasks and for one task;
- peak private memory (RssAnon, sampled every 5 ms) above the process's baseline, against the dataset's size on
  disk, and the mapped file pages (RssFile) beside it.
Written to benchmarks/results/offline_reader.{json,md}.

    python benchmarks/offline_reader.py [--gb 3] [--batches 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
L, OBS, ACT, TASKS = 501, 24, 6, 30


def make_dataset(directory: Path, gb: float, chunks: int = 4) -> None:
    import torch

    from pwmbench.data.chunks import chunk_paths, write_chunk

    per_episode = L * (OBS + ACT + 2) * 4
    episodes = int(gb * 1e9 / per_episode / chunks)
    directory.mkdir(parents=True, exist_ok=True)
    if len(chunk_paths(directory)) == chunks:
        return
    gen = torch.Generator().manual_seed(0)
    for c in range(chunks):
        obs = torch.randn(episodes, L, OBS, generator=gen)
        action = torch.rand(episodes, L, ACT, generator=gen) * 2 - 1
        reward = torch.rand(episodes, L, generator=gen)
        action[:, 0], reward[:, 0] = float("nan"), float("nan")
        task = (torch.arange(episodes) % TASKS).view(-1, 1).expand(episodes, L).to(torch.int32)
        write_chunk(directory / f"chunk_{c}.pt", obs, action, reward, task)
        del obs, action, reward, task


def rss(kind: str = "RssAnon") -> int:
    """Resident bytes of one kind: RssAnon (the process's own memory) or RssFile (mapped file pages, which the
    kernel can drop at any time: memory-mapped chunks show up here, not as real memory use)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(kind + ":"):
                return int(line.split()[1]) * 1024
    return 0


def measure(directory: Path, batches: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from pwmbench.data.dataset import OfflineDataset

    peak, peak_file, stop = [rss()], [rss("RssFile")], threading.Event()

    def sampler():
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            peak_file[0] = max(peak_file[0], rss("RssFile"))
            time.sleep(0.005)

    baseline, baseline_file = rss(), rss("RssFile")
    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    start = time.perf_counter()
    data = OfflineDataset(directory)
    open_s = time.perf_counter() - start
    gen = torch.Generator().manual_seed(0)
    results = {}
    for label, task in (("all_tasks", None), ("one_task", 3)):
        data.sample(256, 16, gen, task=task)  # warm-up
        start = time.perf_counter()
        for _ in range(batches):
            data.sample(256, 16, gen, task=task)
        results[label] = batches * 256 / (time.perf_counter() - start)
    stop.set()
    thread.join()
    size = sum(p.stat().st_size for p in directory.glob("chunk_*.pt"))
    return {
        "dataset_bytes": size,
        "episodes": data.num_episodes,
        "transitions": data.transitions(),
        "open_s": open_s,
        "sequences_per_s": results,
        "batch": 256,
        "window": 17,
        "peak_anon_rss_above_baseline_MiB": (peak[0] - baseline) / 2**20,
        "peak_anon_rss_fraction_of_dataset": (peak[0] - baseline) / size,
        "peak_file_rss_above_baseline_MiB": (peak_file[0] - baseline_file) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=3.0)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--data", type=Path, default=Path("/tmp/pwmbench_reader_data"))
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "offline_reader")
    args = parser.parse_args()
    if args.measure_only:
        print(json.dumps(measure(args.data, args.batches)))
        return
    start = time.perf_counter()
    make_dataset(args.data, args.gb)
    made = time.perf_counter() - start
    out = subprocess.run([sys.executable, __file__, "--measure-only", "--data", str(args.data), "--batches", str(args.batches)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    from pwmbench.results.provenance import cpu_model

    record = {"machine": f"{cpu_model()}, {os.cpu_count()} CPUs", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "generate_s": made, **result}
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    gb = result["dataset_bytes"] / 1e9
    lines = [
        "# Offline reader: throughput and memory",
        "",
        f"{record['machine']}; {record['date']}. Synthetic MT30-shaped dataset: {gb:.2f} GB on disk, "
        f"{result['episodes']:,} episodes, {result['transitions']:,} transitions, 4 chunk files.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| open (memory-map 4 chunks, read task ids) | {result['open_s']:.2f} s |",
        f"| sequences/s, all tasks (batch 256, 17 entries) | {result['sequences_per_s']['all_tasks']:,.0f} |",
        f"| sequences/s, one task | {result['sequences_per_s']['one_task']:,.0f} |",
        f"| peak private memory (RssAnon) above baseline while opening and sampling | {result['peak_anon_rss_above_baseline_MiB']:.0f} MiB "
        f"({100 * result['peak_anon_rss_fraction_of_dataset']:.1f}% of the dataset) |",
        f"| peak mapped file pages (RssFile, page cache the kernel may drop) | {result['peak_file_rss_above_baseline_MiB']:.0f} MiB |",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
