"""The replay buffer: whole finished episodes, FIFO by entries, windows drawn as PWM's SliceSampler draws them."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pwmbench.errors import ConfigError
from pwmbench.pwm.buffer import SequenceBuffer


class Stream:
    """Envs with their own episode lengths; obs = [episode id, step, env], act = step, rew = step + 0.5.

    Keeps the reference: every finished episode's id and length, in the order the buffer receives them.
    """

    def __init__(self, num_envs: int, seed: int, min_len: int = 1, max_len: int = 30) -> None:
        self.n, self.rng = num_envs, np.random.default_rng(seed)
        self.min_len, self.max_len = min_len, max_len
        self.next_id = num_envs
        self.ep = np.arange(num_envs)
        self.step_ = np.zeros(num_envs, dtype=int)
        self.target = self._lengths(num_envs)
        self.finished: list[tuple[int, int, int]] = []  # (episode id, entries, env)

    def _lengths(self, k: int) -> np.ndarray:
        return self.rng.integers(self.min_len, self.max_len + 1, k)  # transitions before the episode ends

    def obs(self) -> torch.Tensor:
        return torch.tensor(np.stack([self.ep, self.step_, np.arange(self.n)], 1), dtype=torch.float32)

    def start(self, buf: SequenceBuffer) -> None:
        buf.start(self.obs())

    def step(self, buf: SequenceBuffer) -> None:
        self.step_ = self.step_ + 1
        final = self.obs()
        done = self.step_ >= self.target
        for j in np.nonzero(done)[0]:
            self.finished.append((int(self.ep[j]), int(self.step_[j]) + 1, int(j)))
        k = int(done.sum())
        self.ep = self.ep.copy()
        self.ep[done] = self.next_id + np.arange(k)
        self.next_id += k
        self.step_ = np.where(done, 0, self.step_)
        self.target = np.where(done, self._lengths(self.n), self.target)
        buf.add(final, final[:, 1:2].clone(), final[:, 1] + 0.5, torch.tensor(done), self.obs())


def stored_reference(finished: list[tuple[int, int, int]], capacity: int) -> list[tuple[int, int, int]]:
    """FIFO by entries: the newest episodes whose lengths fit in `capacity`."""
    kept, rows = [], 0
    for ep in reversed(finished):
        if rows + ep[1] > capacity:
            if not kept:  # the newest episode alone is longer than the ring: its newest entries stay
                kept.append((ep[0], capacity, ep[2]))
            break
        kept.append(ep)
        rows += ep[1]
    return kept[::-1]


def check_windows(obs: torch.Tensor, act: torch.Tensor, rew: torch.Tensor, allowed: dict[int, int]) -> None:
    """Each window: rows of one allowed episode, consecutive steps, act/rew of the step they led to."""
    ids = obs[:, :, 0]
    assert (ids == ids[:1]).all(), "a window crosses an episode boundary"
    assert (obs[1:, :, 1] - obs[:-1, :, 1] == 1).all(), "a window skips or repeats a step"
    torch.testing.assert_close(act[..., 0], obs[1:, :, 1])
    torch.testing.assert_close(rew, obs[1:, :, 1] + 0.5)
    for ep, last_step in zip(ids[0].long().tolist(), obs[-1, :, 1].long().tolist()):
        assert ep in allowed, f"episode {ep} is not a stored finished episode"
        assert last_step < allowed[ep], "window runs past its episode's end"


@settings(deadline=None, max_examples=25)
@given(
    seed=st.integers(0, 10_000),
    num_envs=st.integers(1, 6),
    horizon=st.integers(1, 8),
    capacity=st.integers(2, 400),
    steps=st.integers(1, 120),
)
def test_staggered_episodes_give_only_whole_episode_windows(seed, num_envs, horizon, capacity, steps):
    buf = SequenceBuffer(num_envs, capacity, obs_dim=3, act_dim=1)
    stream = Stream(num_envs, seed)
    stream.start(buf)
    for _ in range(steps):
        stream.step(buf)
    kept = stored_reference(stream.finished, capacity)
    assert buf.finished_episodes == len(stream.finished)
    assert buf.episode_lengths().tolist() == [length for _, length, _ in kept]
    assert len(buf) == sum(length for _, length, _ in kept) <= capacity
    full = {ep: length for ep, length, _ in stream.finished}
    eligible = {ep: full[ep] for ep, length, _ in kept if length >= horizon + 1}
    assert buf.can_sample(horizon) == bool(eligible)
    if not eligible:
        with pytest.raises(RuntimeError, match="no finished episode"):
            buf.sample(4, horizon)
        return
    obs, act, rew = buf.sample(2000, horizon, generator=torch.Generator().manual_seed(seed))
    assert obs.shape == (horizon + 1, 2000, 3) and act.shape == (horizon, 2000, 1) and rew.shape == (horizon, 2000)
    check_windows(obs, act, rew, eligible)
    # every eligible episode (so every env that has one) shows up: the draw is uniform over episodes
    envs_with_windows = {env for ep, length, env in kept if ep in eligible}
    assert set(obs[0, :, 2].long().tolist()) == envs_with_windows
    if len(eligible) <= 100:
        assert set(obs[0, :, 0].long().tolist()) == set(eligible)


def test_draw_is_trajectory_uniform_then_start_uniform_like_slicesampler():
    """Two episodes of 17 and 117 entries, H = 16: half the windows from each; starts uniform over 0..100."""
    buf = SequenceBuffer(1, 1000, obs_dim=3, act_dim=1)
    ids = torch.zeros(2, 117)
    ids[1] = 1
    steps = torch.arange(117.0).expand(2, 117)
    obs = torch.stack([ids, steps, torch.zeros(2, 117)], -1)
    buf.add_episodes(obs, steps[..., None].clone(), steps + 0.5, torch.tensor([17, 117]))
    o, a, r = buf.sample(20_000, 16, generator=torch.Generator().manual_seed(0))
    check_windows(o, a, r, {0: 17, 1: 117})
    from_long = o[0, :, 0] == 1
    assert abs(from_long.float().mean().item() - 0.5) < 0.02
    starts = o[0, from_long, 1].long()
    counts = torch.bincount(starts, minlength=101)
    assert counts.numel() == 101 and counts.min() > 0.5 * counts.float().mean()
    assert (o[0, ~from_long, 1] == 0).all()  # a 17-entry episode has one window


def test_running_episodes_are_never_sampled_and_no_filler_rows():
    buf = SequenceBuffer(3, 10_000, obs_dim=3, act_dim=1)
    stream = Stream(3, seed=1, min_len=40, max_len=40)
    stream.target = np.array([5, 40, 300])  # env 0 finishes early and often; env 2 never within the run
    stream.start(buf)
    for _ in range(60):
        stream.step(buf)
    stored_envs = {env for _, _, env in stream.finished}
    assert 2 not in stored_envs and buf.running_entries == sum(int(s) + 1 for s in stream.step_)
    assert len(buf) == sum(length for _, length, _ in stream.finished)  # every stored row is a real entry
    obs, act, rew = buf.sample(1000, 4, generator=torch.Generator().manual_seed(0))
    check_windows(obs, act, rew, {ep: length for ep, length, _ in stream.finished})
    assert 2 not in set(obs[0, :, 2].long().tolist())


def test_fifo_eviction_drops_whole_oldest_episodes_and_overlong_episode_keeps_its_tail():
    buf = SequenceBuffer(1, 50, obs_dim=3, act_dim=1)

    def episodes(first_id, lengths, width):
        n = len(lengths)
        ids = torch.arange(first_id, first_id + n, dtype=torch.float32)[:, None].expand(n, width)
        steps = torch.arange(float(width)).expand(n, width)
        return torch.stack([ids, steps, torch.zeros(n, width)], -1), steps[..., None].clone(), steps + 0.5

    buf.add_episodes(*episodes(0, [20, 20], 20), torch.tensor([20, 20]))
    buf.add_episodes(*episodes(2, [15], 15), torch.tensor([15]))  # 55 > 50: episode 0 goes
    assert buf.episode_lengths().tolist() == [20, 15] and len(buf) == 35
    obs, _, _ = buf.sample(500, 3, generator=torch.Generator().manual_seed(0))
    assert set(obs[0, :, 0].long().tolist()) == {1, 2}
    buf.add_episodes(*episodes(3, [70], 70), torch.tensor([70]))  # longer than the ring: its newest 50 entries
    assert buf.episode_lengths().tolist() == [50] and buf.finished_episodes == 4
    obs, _, _ = buf.sample(500, 49, generator=torch.Generator().manual_seed(0))
    assert (obs[:, :, 1].T == torch.arange(20.0, 70.0)).all()
    buf.add_episodes(*episodes(4, [30, 30, 10], 30), torch.tensor([30, 30, 10]))  # the batch itself overflows
    assert buf.episode_lengths().tolist() == [30, 10] and buf.finished_episodes == 7


@settings(deadline=None, max_examples=15)
@given(seed=st.integers(0, 10_000), capacity=st.integers(30, 300))
def test_add_episodes_interoperates_with_add(seed, capacity):
    buf = SequenceBuffer(2, capacity, obs_dim=3, act_dim=1)
    stream = Stream(2, seed, min_len=3, max_len=20)
    stream.start(buf)
    rng = np.random.default_rng(seed)
    for round_ in range(4):
        for _ in range(int(rng.integers(0, 25))):
            stream.step(buf)
        n, width = int(rng.integers(1, 4)), 25
        lengths = rng.integers(1, width + 1, n)
        ids = torch.arange(10_000 + 10 * round_, 10_000 + 10 * round_ + n, dtype=torch.float32)
        steps = torch.arange(float(width)).expand(n, width)
        obs = torch.stack([ids[:, None].expand(n, width), steps, torch.full((n, width), -1.0)], -1)
        act, rew = steps[..., None].clone(), steps + 0.5
        pad = torch.arange(width) >= torch.as_tensor(lengths)[:, None]
        obs[pad], act[pad], rew[pad] = 1e9, 1e9, 1e9  # padding must never be stored
        act[:, 0], rew[:, 0] = float("nan"), float("nan")
        buf.add_episodes(obs, act, rew, torch.as_tensor(lengths))
        stream.finished.extend((int(i), int(length), -1) for i, length in zip(ids.long(), lengths))
    kept = stored_reference(stream.finished, capacity)
    assert buf.episode_lengths().tolist() == [length for _, length, _ in kept]
    assert buf.finished_episodes == len(stream.finished)
    eligible = {ep: length for ep, length, _ in kept if length >= 3}
    if eligible:
        obs, act, rew = buf.sample(3000, 2, generator=torch.Generator().manual_seed(seed))
        check_windows(obs, act, rew, eligible)
        assert (obs.abs() < 1e8).all()
        if len(eligible) <= 60:
            assert set(obs[0, :, 0].long().tolist()) == set(eligible)


@settings(deadline=None, max_examples=15)
@given(seed=st.integers(0, 10_000), split=st.integers(1, 80), capacity=st.integers(20, 300))
def test_resume_mid_stream_reproduces_samples_exactly(seed, split, capacity):
    a = SequenceBuffer(3, capacity, obs_dim=3, act_dim=1)
    stream = Stream(3, seed, min_len=2, max_len=25)
    stream.start(a)
    for _ in range(split):
        stream.step(a)
    saved = io.BytesIO()
    torch.save(a.state_dict(), saved)  # as the trainer's checkpoint stores it
    saved.seek(0)
    b = SequenceBuffer(3, capacity, obs_dim=3, act_dim=1)
    b.load_state_dict(torch.load(saved, weights_only=False))
    assert len(b) == len(a) and b.finished_episodes == a.finished_episodes and b.running_entries == a.running_entries
    rng_state = np.random.default_rng(seed + 1)
    for _ in range(40):  # both keep receiving the same steps (running episodes continue across the save)
        done = rng_state.random(3) < 0.1
        final = torch.tensor(rng_state.normal(size=(3, 3)), dtype=torch.float32)
        reset = torch.tensor(rng_state.normal(size=(3, 3)), dtype=torch.float32)
        act, rew = final[:, :1] * 2, final[:, 1] * 3
        for buf in (a, b):
            buf.add(final, act, rew, torch.tensor(done), reset)
    torch.testing.assert_close(b.episode_lengths(), a.episode_lengths())
    if not a.can_sample(3):
        assert not b.can_sample(3)
        return
    ga, gb = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    for _ in range(3):
        for xa, xb in zip(a.sample(64, 3, generator=ga), b.sample(64, 3, generator=gb)):
            assert torch.equal(xa.nan_to_num(-7.0), xb.nan_to_num(-7.0))


def test_sampling_is_vectorised_over_many_episodes():
    """1e5 stored episodes, batch 256: a sample is a handful of tensor ops, not a loop over samples or episodes."""
    import time

    n, width = 100_000, 20
    buf = SequenceBuffer(1, n * width, obs_dim=3, act_dim=1)
    steps = torch.arange(float(width)).expand(n, width)
    obs = torch.stack([torch.arange(float(n))[:, None].expand(n, width), steps, torch.zeros(n, width)], -1)
    buf.add_episodes(obs, steps[..., None].clone(), steps + 0.5, torch.randint(1, width + 1, (n,)))
    buf.sample(256, 16)
    t0 = time.perf_counter()
    for _ in range(8):
        o, a, r = buf.sample(256, 16)
    assert time.perf_counter() - t0 < 2.0  # generous: ~ms each on one idle core
    lengths = dict(zip(range(n), buf.episode_lengths().tolist()))
    check_windows(o, a, r, {ep: length for ep, length in lengths.items() if length >= 17})


def test_bad_input_and_bad_checkpoints_get_clear_errors():
    buf = SequenceBuffer(2, 100, obs_dim=3, act_dim=1)
    assert not buf.can_sample(1)
    with pytest.raises(RuntimeError, match="no finished episode of 2 entries"):
        buf.sample(8, 1)
    with pytest.raises(RuntimeError, match="before start"):
        buf.add(torch.zeros(2, 3), torch.zeros(2, 1), torch.zeros(2), torch.zeros(2, dtype=torch.bool), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"obs must be \[n, L, 3\]"):
        buf.add_episodes(torch.zeros(4, 3), torch.zeros(4, 1), torch.zeros(4), torch.tensor([4]))
    with pytest.raises(ValueError, match="act must be"):
        buf.add_episodes(torch.zeros(1, 4, 3), torch.zeros(1, 4, 2), torch.zeros(1, 4), torch.tensor([4]))
    with pytest.raises(ValueError, match=r"every length must be in \[1, 4\]"):
        buf.add_episodes(torch.zeros(2, 4, 3), torch.zeros(2, 4, 1), torch.zeros(2, 4), torch.tensor([4, 5]))
    with pytest.raises(ValueError, match=r"start\(obs\) must be \[2, 3\]"):
        buf.start(torch.zeros(3, 3))
    with pytest.raises(ConfigError, match="wm_buffer_size"):
        SequenceBuffer(2, 200, obs_dim=3, act_dim=1).load_state_dict(buf.state_dict())
    with pytest.raises(ConfigError, match="--restart"):
        buf.load_state_dict({"obs": torch.zeros(1), "written": 3})  # the old lockstep layout
