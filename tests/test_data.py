"""Offline data in TD-MPC2's format (pwmbench/data): chunk reading and checking, the window sampler, the inspector,
the collector and the `pwmbench data` commands.

The chunk files are made here, in exactly TD-MPC2's format (a TensorDict saved with torch.save), including
malformed ones: missing key, wrong length, non-NaN entry 0, a task id that changes, a truncated file, a file that
wants to unpickle something else.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from pwmbench.cli import main
from pwmbench.data.chunks import ChunkError, chunk_paths, read_chunk, write_chunk
from pwmbench.data.collect import collect
from pwmbench.data.dataset import OfflineDataset
from pwmbench.data.inspect import inspect_dataset

L, OBS, ACT = 9, 4, 3


def episodes(n: int, task: int, offset: int = 0) -> dict[str, torch.Tensor]:
    """n episodes whose entries encode where they are: obs[e, t] = (offset + e)·1000 + t (every column),
    action[e, t] = −that, reward[e, t] = that / 10; entry 0's action and reward NaN."""
    code = (torch.arange(n).view(n, 1) + offset) * 1000.0 + torch.arange(L).view(1, L)
    obs = code.unsqueeze(-1).repeat(1, 1, OBS)
    action = -code.unsqueeze(-1).repeat(1, 1, ACT)
    reward = code / 10
    action[:, 0], reward[:, 0] = float("nan"), float("nan")
    return {"obs": obs, "action": action, "reward": reward, "task": torch.full((n, L), task, dtype=torch.int32)}


def write(path, parts):
    return write_chunk(path, parts["obs"], parts["action"], parts["reward"], parts["task"])


@pytest.fixture
def two_chunks(tmp_path):
    a, b = episodes(5, 0), episodes(4, 1, offset=5)
    c = episodes(3, 0, offset=9)
    write(tmp_path / "chunk_0.pt", {k: torch.cat([a[k], b[k]]) for k in a})
    write(tmp_path / "chunk_1.pt", c)
    return tmp_path


# ------------------------------------------------------------------------------------------------- chunks
def test_round_trip_and_the_safe_loader_needs_no_tensordict_classes(tmp_path):
    parts = episodes(3, 2)
    write(tmp_path / "chunk_0.pt", parts)
    chunk = read_chunk(tmp_path / "chunk_0.pt")
    assert chunk.problems == [] and chunk.batch_size == (3, L)
    for key, value in parts.items():
        torch.testing.assert_close(chunk.tensors[key], value, equal_nan=True)
    assert chunk.tensors["task"].dtype == torch.int32
    import tensordict  # noqa: F401  (registers the real classes process-wide; the reader must still use its stand-ins)

    assert type(read_chunk(tmp_path / "chunk_0.pt").tensors["obs"]) is torch.Tensor
    assert any("tensordict" in str(g) for g in torch.serialization.get_safe_globals())  # put back afterwards


class Suspicious(dict):
    """Not on the allow-list: unpickling it would run this module's code."""


def test_a_file_wanting_other_globals_is_refused_unless_allowed(tmp_path):
    path = tmp_path / "chunk_0.pt"
    torch.save(Suspicious(episodes(2, 0)), path)
    with pytest.raises(ChunkError, match="allow_pickle"):
        read_chunk(path)
    assert read_chunk(path, allow_pickle=True).problems == []


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.pop("reward"), "missing key"),
        (lambda p: p.update(action=p["action"][:, :-1]), "wrong length"),
        (lambda p: p["reward"].__setitem__((1, 0), 0.5), "entry 0 must hold NaN"),
        (lambda p: p["task"].__setitem__((0, 3), 7), "task id changes within an episode"),
        (lambda p: p["reward"].__setitem__((0, 4), float("nan")), "non-finite rewards"),
    ],
    ids=["missing-key", "wrong-length", "index0-not-nan", "task-changes", "nan-reward"],
)
def test_malformed_chunks_are_named(tmp_path, damage, message):
    parts = episodes(3, 0)
    damage(parts)
    path = tmp_path / "chunk_0.pt"
    torch.save(dict(parts), path)  # a plain dict of tensors: a TensorDict would refuse some of these damages
    assert any(message in p for p in read_chunk(path, scan_values=True).problems)
    with pytest.raises(ChunkError, match=message):
        OfflineDataset(tmp_path, scan_values=True)
    if message == "non-finite rewards":  # opening for training skips the full scan; the structure checks stay
        assert read_chunk(path).problems == []
    else:
        with pytest.raises(ChunkError, match=message):
            OfflineDataset(tmp_path)
    report = inspect_dataset(tmp_path)
    assert any(message in p and "chunk_0.pt" in p for p in report["malformed"])


def test_truncated_and_foreign_files(tmp_path):
    write(tmp_path / "chunk_0.pt", episodes(3, 0))
    data = (tmp_path / "chunk_0.pt").read_bytes()
    (tmp_path / "chunk_0.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ChunkError, match="chunk_0.pt: cannot be read"):
        read_chunk(tmp_path / "chunk_0.pt")
    (tmp_path / "chunk_1.pt").write_text("not a torch file")
    report = inspect_dataset(tmp_path)
    assert len(report["malformed"]) == 2 and report["episodes"] == 0
    with pytest.raises(ChunkError, match="no such file"):
        read_chunk(tmp_path / "chunk_9.pt")
    with pytest.raises(ChunkError, match="no chunk_<i>.pt files"):
        OfflineDataset(tmp_path / "..")


def test_chunk_order_is_numeric(tmp_path):
    for i in (10, 2, 0):
        (tmp_path / f"chunk_{i}.pt").touch()
    (tmp_path / "chunk_x.pt").touch()
    assert [p.name for p in chunk_paths(tmp_path)] == ["chunk_0.pt", "chunk_2.pt", "chunk_10.pt"]


# ------------------------------------------------------------------------------------------------ sampler
def test_windows_follow_tdmpc2_slicing(two_chunks):
    ds = OfflineDataset(two_chunks)
    assert (ds.length, ds.obs_dim, ds.act_dim) == (L, OBS, ACT)
    assert ds.task_ids == [0, 1] and ds.episodes(0) == 8 and ds.episodes(1) == 4
    assert ds.transitions() == 12 * (L - 1)
    H = 3
    w = ds.sample(64, H, torch.Generator().manual_seed(0))
    assert w.obs.shape == (64, H + 1, OBS) and w.action.shape == (64, H, ACT) and w.reward.shape == (64, H)
    episode, start = (w.obs[:, 0, 0] // 1000).long(), (w.obs[:, 0, 0] % 1000).long()
    steps = torch.arange(H + 1)
    torch.testing.assert_close(w.obs[:, :, 1], (episode.view(-1, 1) * 1000 + start.view(-1, 1) + steps).float())
    torch.testing.assert_close(w.action[:, :, 0], -w.obs[:, 1:, 0])  # action[k+1 : k+H+1]
    torch.testing.assert_close(w.reward, w.obs[:, 1:, 0] / 10)  # reward[k+1 : k+H+1]
    assert torch.isfinite(w.reward).all() and int(start.max()) <= L - 1 - H
    assert torch.equal(w.task, torch.where((episode >= 5) & (episode < 9), 1, 0))
    assert len(set(episode.tolist())) > 6  # both chunks, many episodes


def test_sampling_is_seeded_and_per_task(two_chunks):
    ds = OfflineDataset(two_chunks)
    a = ds.sample(16, 4, torch.Generator().manual_seed(3))
    b = ds.sample(16, 4, torch.Generator().manual_seed(3))
    assert torch.equal(a.obs, b.obs)
    only = ds.sample(32, 4, torch.Generator().manual_seed(1), task=1)
    assert torch.all(only.task == 1)
    starts = ds.start_states(10, 0, torch.Generator().manual_seed(0))
    assert starts.shape == (10, OBS)
    with pytest.raises(ValueError, match="no episodes of task 5"):
        ds.sample(4, 4, torch.Generator(), task=5)
    with pytest.raises(ValueError, match="horizon"):
        ds.sample(4, L, torch.Generator())


def test_usage_counts_what_sampling_touched(two_chunks):
    ds = OfflineDataset(two_chunks)
    assert ds.usage()[1] == {"episodes": 4, "transitions": 4 * (L - 1), "episodes_used": 0, "transitions_sampled": 0}
    ds.sample(50, 2, torch.Generator().manual_seed(0), task=1)
    usage = ds.usage()
    assert usage[1]["episodes_used"] == 4 and usage[1]["transitions_sampled"] == 100
    assert usage[0]["episodes_used"] == 0


def test_chunks_with_different_widths_are_refused(two_chunks):
    parts = episodes(2, 0)
    parts["obs"] = torch.cat([parts["obs"], parts["obs"]], dim=-1)
    write(two_chunks / "chunk_2.pt", parts)
    with pytest.raises(ChunkError, match="chunk_2.pt: episode length / obs / action widths"):
        OfflineDataset(two_chunks)


# ---------------------------------------------------------------------------------------------- collector
@pytest.mark.slow
def test_collector_round_trip_through_reader_and_inspector(tmp_path):
    meta = collect("dmc/cartpole-balance", 3, tmp_path, num_envs=2, seed=1, episodes_per_chunk=2)
    assert meta["chunks"] == ["chunk_0.pt", "chunk_1.pt"] and meta["episode_length"] == 501
    assert meta["versions"]["mujoco"] and meta["versions"]["dm_control"]
    ds = OfflineDataset(tmp_path)
    assert ds.episodes() == 3 and ds.length == 501 and (ds.obs_dim, ds.act_dim) == (5, 1)
    chunk = read_chunk(tmp_path / "chunk_0.pt")
    assert torch.isnan(chunk.tensors["reward"][:, 0]).all() and torch.isfinite(chunk.tensors["reward"][:, 1:]).all()
    assert chunk.tensors["action"][:, 1:].abs().max() <= 1.0
    assert not torch.equal(chunk.tensors["obs"][0, 0], chunk.tensors["obs"][0, 1])
    report = inspect_dataset(tmp_path)
    assert report["episodes"] == 3 and report["transitions"] == 1500 and report["malformed"] == []
    assert report["metadata"]["policy"] == "random"
    with pytest.raises(Exception, match="already holds a dataset"):
        collect("dmc/cartpole-balance", 1, tmp_path)
    again = collect("dmc/cartpole-balance", 3, tmp_path / "again", num_envs=2, seed=1, episodes_per_chunk=2)
    assert again["chunks"] == meta["chunks"]
    for name in meta["chunks"]:  # same seed, same copies → the same data
        first, second = read_chunk(tmp_path / name).tensors, read_chunk(tmp_path / "again" / name).tensors
        assert all(torch.equal(first[k].nan_to_num(), second[k].nan_to_num()) for k in first)

def test_collector_refuses_bad_arguments(tmp_path):
    with pytest.raises(Exception, match="unknown behaviour policy"):
        collect("dmc/cartpole-balance", 1, tmp_path, policy="expert")
    with pytest.raises(Exception, match=r"task id\(s\) \[3\]"):
        collect("dmc/cartpole-balance", 1, tmp_path, task_ids=[3])


def test_cli_inspect_reports_and_exits_1_when_malformed(two_chunks):
    runner = CliRunner()
    result = runner.invoke(main, ["data", "inspect", str(two_chunks)])
    assert result.exit_code == 0, result.output
    assert "12 episodes" in result.output and "no problems found" in result.output
    result = runner.invoke(main, ["data", "inspect", str(two_chunks), "--json"])
    report = json.loads(result.output)
    assert report["tasks"]["0"] == {"episodes": 8, "transitions": 8 * (L - 1)}
    (two_chunks / "chunk_2.pt").write_bytes(b"\x00" * 10)
    result = runner.invoke(main, ["data", "inspect", str(two_chunks)])
    assert result.exit_code == 1 and "MALFORMED" in result.output and "chunk_2.pt" in result.output


@pytest.mark.slow
def test_collect_with_a_trained_policy(tmp_path):
    from toy_task import SMALL

    from pwmbench.pwm.cell import train_cell
    from pwmbench.pwm.config import resolve_config
    from pwmbench.pwm.policy_file import load_policy

    cfg = resolve_config({**SMALL, "horizon": 8, "num_envs": 2, "max_epochs": 3, "eval_every": 0, "initial_wm_iterations": 2})
    assert train_cell("dmc/pendulum-swingup", cfg, 1, tmp_path / "cell").status == "ok"
    policy = load_policy(tmp_path / "cell" / "policy.pt")
    obs = torch.zeros(4, 3)
    assert policy(obs, deterministic=True).shape == (4, 1) and torch.equal(policy(obs, True), policy(obs, True))
    meta = collect("mt30", 2, tmp_path / "data", policy=str(tmp_path / "cell" / "policy.pt"), task_ids=[7], num_envs=2)
    assert meta["policy"].endswith("policy.pt") and OfflineDataset(tmp_path / "data").episodes(7) == 2
    first = collect("mt30", 2, tmp_path / "again", policy=str(tmp_path / "cell" / "policy.pt"), task_ids=[7], num_envs=2)
    assert first["chunks"] == meta["chunks"]
    a, b = (read_chunk(tmp_path / d / "chunk_0.pt").tensors["action"] for d in ("data", "again"))
    assert torch.equal(a.nan_to_num(), b.nan_to_num())  # seeded: the same behaviour data again
    with pytest.raises(Exception, match="cannot act in"):
        collect("mt30", 1, tmp_path / "other", policy=str(tmp_path / "cell" / "policy.pt"), task_ids=[8])
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(Exception, match="not a pwmbench policy file"):
        load_policy(tmp_path / "junk.pt")
