"""Data collection as jobs of the graph (W13 item 1, pwmbench/data/jobs.py): a directory is collected once whoever
needs it, an interrupted collector is taken over, a live one is waited for, and `--dry-run --json` shows the data jobs
and the cells depending on them without collecting anything."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pwmbench.cli import main
from pwmbench.data.chunks import chunk_paths, write_chunk
from pwmbench.data.jobs import COLLECTING_LOCK, _collect_once, collect_pretrain_data, data_complete, data_state
from pwmbench.errors import ConfigError

TESTS = Path(__file__).parent
PRETRAIN = {"episodes": 3, "num_envs": 2, "seed": 0}


@pytest.fixture
def toy_env(monkeypatch, toy_plugins):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PWMBENCH_PLUGINS", "toy_task")


@pytest.mark.slow
def test_two_jobs_needing_one_directory_collect_it_once(tmp_path, toy_env):
    code = ("import json, sys; from pwmbench.data.jobs import collect_pretrain_data; "
            f"print(json.dumps(collect_pretrain_data('toy/point', sys.argv[1], {PRETRAIN!r}, 4)))")  # fmt: skip
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "pre")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["collected"] for r in results) == [False, False, True]  # one collector; the others waited and found it done
    assert data_state(tmp_path / "pre") == "ready" and (tmp_path / "pre" / "metadata.json").exists()
    assert not (tmp_path / "pre" / COLLECTING_LOCK).exists() and len(chunk_paths(tmp_path / "pre")) == 1


def test_an_interrupted_collection_is_taken_over_and_a_live_one_waited_for(tmp_path, toy_plugins):
    import torch

    where = tmp_path / "pre"
    where.mkdir()
    write_chunk(where / "chunk_0.pt", torch.zeros(1, 5, 2), torch.zeros(1, 5, 1), torch.zeros(1, 5), torch.zeros(1, 5))  # a partial write
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (where / COLLECTING_LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead), "started": 0}))
    assert data_state(where) == "interrupted" and not data_complete(where)
    assert data_state(tmp_path / "nothing") == "missing"
    result = collect_pretrain_data("toy/point", str(where), PRETRAIN, 4)
    assert result["collected"] and data_state(where) == "ready" and not (where / COLLECTING_LOCK).exists()
    assert json.loads((where / "metadata.json").read_text())["task"] == "toy/point"  # the partial chunk was replaced

    live = tmp_path / "busy"
    live.mkdir()
    (live / COLLECTING_LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": 0}))
    assert data_state(live) == "collecting"
    with pytest.raises(ConfigError, match=rf"another process .*'pid': {os.getpid()}.* delete {live / COLLECTING_LOCK}"):
        _collect_once(live, "data", lambda overwrite: {}, wait_s=0)
    # someone's TD-MPC2 chunks without our lock are complete data: never ours to collect
    theirs = tmp_path / "tdmpc2"
    theirs.mkdir()
    write_chunk(theirs / "chunk_0.pt", torch.zeros(1, 5, 2), torch.zeros(1, 5, 1), torch.zeros(1, 5), torch.zeros(1, 5))
    assert data_complete(theirs) and _collect_once(theirs, "data", lambda overwrite: 1 / 0, wait_s=0) == {"collected": False, "directory": str(theirs)}


@pytest.mark.slow
def test_dry_run_json_is_the_graph_with_its_data_jobs_and_run_collects_through_a_job(tmp_path, toy_env):
    from test_runner import write_suite

    path = write_suite(tmp_path, epochs=4, seeds=(1,))
    pre = tmp_path / "pre"
    path.write_text(path.read_text() + f'\n[pretrain]\nepisodes = 3\ndir = "{pre}/{{task}}"\nnum_envs = 2\niterations = 5\n')
    out = tmp_path / "out"
    dry = CliRunner().invoke(main, ["run", str(path), "--out", str(out), "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    graph = json.loads(dry.output)
    data_key = f"pretrain_data|{pre / 'toy' / 'point'}"
    assert [(j["key"], j["kind"], j["depends_on"]) for j in graph] == [
        (data_key, "pretrain_data", []), ("toy/point|mlp|1", "cell", [data_key]), ("toy/point|flow|1", "cell", [data_key])]
    assert graph[1]["resources"] == {"cpus": 1, "gpus": 0, "memory_gb": None, "time_min": None}
    assert not pre.exists() and not out.exists()  # a dry run collects and writes nothing
    text = CliRunner().invoke(main, ["run", str(path), "--out", str(out), "--dry-run"])
    assert text.output.count("would train") == 2 and f"would collect (pretrain_data) → {pre / 'toy' / 'point'}" in text.output
    assert CliRunner().invoke(main, ["run", str(path), "--json"]).exit_code == 2  # --json is for the dry run's graph

    done = CliRunner().invoke(main, ["run", str(path), "--out", str(out), "--no-progress", "--workers", "2"])
    assert done.exit_code == 0, done.output
    assert data_state(pre / "toy" / "point") == "ready" and (pre / "toy" / "point" / "metadata.json").exists()
    status = CliRunner().invoke(main, ["status", str(out)])
    assert f"done      {data_key}" in status.output and status.exit_code == 0, status.output
    again = json.loads(CliRunner().invoke(main, ["run", str(path), "--out", str(out), "--dry-run", "--json", "--restart"]).output)
    assert [j["kind"] for j in again] == ["cell", "cell"]  # the data is there: no job collects it again
