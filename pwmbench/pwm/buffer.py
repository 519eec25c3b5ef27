"""Replay of real experience as (H+1)-entry windows cut from whole finished episodes, as PWM replays it.

PWM (src/pwm/utils/buffer.py) keeps a per-env list of the running episode's entries and, when an env
finishes, appends that whole episode to a torchrl `LazyTensorStorage` (a ring of `wm_buffer_size` entries);
windows come from torchrl's `SliceSampler(traj_key="episode", strict_length=True)`. What that sampler does
(torchrl 0.4, the version PWM pins, and unchanged since): it keeps only trajectories with at least H+1
entries, draws the trajectory uniformly with replacement (`torch.randint(n_trajectories, (B,))`), then the
start uniformly among that trajectory's valid starts (`floor(rand · (len − H))`). Sampling is therefore
trajectory-uniform, not transition-uniform: a window from a short episode is as likely as one from a long
one. `sample` draws the same way.

Layout here: one flat ring of `capacity` rows (obs, act, rew) holding finished episodes back to back, a FIFO
index of them (absolute start position and length per episode), and a staging area with one row per env copy
for the episodes still running, each with its own write position, so an env that finishes never makes the
others write filler. Entry 0 of an episode is its reset observation (NaN action and reward); entry t holds
obs_t, the action that led to it and that transition's reward — TD-MPC2's layout, which `add_episodes` takes
as is. A window of entries k..k+H gives obs [H+1], act and rew of entries k+1..k+H.

Running episodes are never sampled: PWM adds an episode only when it ends, and windows from a still-growing
episode would tilt the trajectory-uniform draw towards long running episodes in ways PWM never sees. Nothing is
lost: a running episode becomes sampleable as a whole when it finishes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pwmbench.errors import ConfigError

_STATE_VERSION = 2  # version 1 was the lockstep ring with filler rows (no "version" key)


class SequenceBuffer:
    """Finished episodes in a FIFO ring of `capacity` entries, plus the running episode of each env copy.

    `capacity` counts entries (rows), as PWM's storage does: an episode of L entries (its reset observation
    and L−1 transitions) takes L rows. The oldest whole episodes are evicted first when a new one needs room;
    a single episode longer than the ring keeps its newest `capacity` entries (what PWM's ring would keep).
    Memory: O(capacity + num_envs · longest running episode); the staging area grows by doubling.
    """

    def __init__(self, num_envs: int, capacity: int, obs_dim: int, act_dim: int, device: str | torch.device = "cpu") -> None:
        if capacity < 2:
            raise ConfigError(f"wm_buffer_size must be at least 2 entries, got {capacity}")
        self.num_envs, self.capacity, self.obs_dim, self.act_dim = num_envs, capacity, obs_dim, act_dim
        self.device = torch.device(device)
        # finished episodes: flat ring of rows + FIFO episode index (absolute positions; row = pos % capacity)
        self.obs = torch.zeros(capacity, obs_dim, device=self.device)
        self.act = torch.full((capacity, act_dim), float("nan"), device=self.device)
        self.rew = torch.full((capacity,), float("nan"), device=self.device)
        self._ep_start = torch.zeros(capacity, dtype=torch.long, device=self.device)  # at most `capacity` episodes
        self._ep_len = torch.zeros(capacity, dtype=torch.long, device=self.device)
        self._ep_head = 0  # absolute index of the oldest stored episode in the episode ring
        self._ep_count = 0  # episodes stored
        self._write_pos = 0  # absolute position of the next row
        self._stored_rows = 0
        self.finished_episodes = 0  # every episode ever finished or added (PWM's num_eps)
        # running episodes: one staging row per env copy, each with its own length
        self._stage_obs = torch.zeros(num_envs, 16, obs_dim, device=self.device)
        self._stage_act = torch.full((num_envs, 16, act_dim), float("nan"), device=self.device)
        self._stage_rew = torch.full((num_envs, 16), float("nan"), device=self.device)
        self._run_len = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self._version = 0  # bumps when the finished store changes (invalidates the eligible-episode cache)
        self._eligible_cache: tuple[int, int, Tensor] | None = None

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        """Entries stored in finished episodes (what counts against `capacity`)."""
        return self._stored_rows

    @property
    def stored_episodes(self) -> int:
        return self._ep_count

    @property
    def running_entries(self) -> int:
        """Entries of the episodes still running (not sampleable yet)."""
        return int(self._run_len.sum())

    def episode_lengths(self) -> Tensor:
        """Lengths (entries) of the stored finished episodes, oldest first."""
        return self._ep_len[self._live_slots()].clone()

    def _live_slots(self) -> Tensor:
        return (self._ep_head + torch.arange(self._ep_count, device=self.device)) % self.capacity

    # ------------------------------------------------------------------ writing
    def start(self, obs: Tensor) -> None:
        """Entry 0 of every copy's first episode: its reset observation."""
        self._check_batch(obs, "start(obs)", self.obs_dim)
        self._stage_obs[:, 0] = obs.detach().to(self.device, self._stage_obs.dtype)
        self._stage_act[:, 0] = float("nan")
        self._stage_rew[:, 0] = float("nan")
        self._run_len.fill_(1)

    def add(self, final_obs: Tensor, act: Tensor, rew: Tensor, done: Tensor, reset_obs: Tensor) -> None:
        """One real step of every copy: the obs it reached (before any reset), its action and reward.

        Copies that are done (terminated or truncated) hand their whole episode to the finished store and
        start a new one from `reset_obs`; the other copies just grow their own episode.
        """
        if not bool((self._run_len > 0).all()):
            raise RuntimeError("SequenceBuffer.add before start(obs): call start with the reset observations first")
        self._check_batch(final_obs, "add(final_obs)", self.obs_dim)
        self._check_batch(act, "add(act)", self.act_dim)
        self._ensure_stage(int(self._run_len.max()) + 1)
        envs = torch.arange(self.num_envs, device=self.device)
        pos = self._run_len
        self._stage_obs[envs, pos] = final_obs.detach().to(self.device, self._stage_obs.dtype)
        self._stage_act[envs, pos] = act.detach().to(self.device, self._stage_act.dtype)
        self._stage_rew[envs, pos] = rew.detach().reshape(self.num_envs).to(self.device, self._stage_rew.dtype)
        self._run_len = pos + 1
        done_envs = done.reshape(self.num_envs).to(self.device).nonzero().squeeze(-1)
        if done_envs.numel() == 0:
            return
        lengths = self._run_len[done_envs]
        width = int(lengths.max())
        self._append(
            self._stage_obs[done_envs, :width], self._stage_act[done_envs, :width], self._stage_rew[done_envs, :width], lengths
        )
        self._stage_obs[done_envs, 0] = reset_obs.detach()[done_envs.to(reset_obs.device)].to(self.device, self._stage_obs.dtype)
        self._stage_act[done_envs, 0] = float("nan")
        self._stage_rew[done_envs, 0] = float("nan")
        self._run_len[done_envs] = 1

    def add_episodes(self, obs: Tensor, act: Tensor, rew: Tensor, lengths: Tensor) -> None:
        """Finished episodes in TD-MPC2's layout (offline data): obs [n, L, O], act [n, L, A], rew [n, L],
        lengths [n] = valid entries of each episode (1 ≤ lengths ≤ L; entries beyond are padding)."""
        if obs.dim() != 3 or obs.shape[-1] != self.obs_dim:
            raise ValueError(f"add_episodes: obs must be [n, L, {self.obs_dim}], got {tuple(obs.shape)}")
        n, L = obs.shape[:2]
        if tuple(act.shape) != (n, L, self.act_dim):
            raise ValueError(f"add_episodes: act must be [{n}, {L}, {self.act_dim}] like obs, got {tuple(act.shape)}")
        if tuple(rew.shape) not in ((n, L), (n, L, 1)):
            raise ValueError(f"add_episodes: rew must be [{n}, {L}] like obs, got {tuple(rew.shape)}")
        lengths = torch.as_tensor(lengths).reshape(-1).to(self.device, torch.long)
        if lengths.numel() != n:
            raise ValueError(f"add_episodes: lengths must have one entry per episode ({n}), got {lengths.numel()}")
        if n == 0:
            return
        if bool((lengths < 1).any()) or bool((lengths > L).any()):
            raise ValueError(f"add_episodes: every length must be in [1, {L}], got {lengths.min().item()}..{lengths.max().item()}")
        f32 = self.obs.dtype
        self._append(obs.to(self.device, f32), act.to(self.device, f32), rew.reshape(n, L).to(self.device, f32), lengths)

    def _append(self, obs: Tensor, act: Tensor, rew: Tensor, lengths: Tensor) -> None:
        """Append k padded episodes ([k, W, ...], first `lengths[i]` entries valid) to the ring, FIFO-evicting."""
        k = lengths.numel()
        self.finished_episodes += k
        # Episodes of this batch that later ones would push out are never written; one longer than the ring
        # keeps its newest entries.
        from_end = lengths.flip(0).cumsum(0).flip(0)  # entries from episode i to the batch's end
        first = int((from_end > self.capacity).sum())
        if first == k:  # the last episode alone overflows the ring
            first = k - 1
            skip = int(lengths[-1]) - self.capacity
            obs, act, rew = obs[-1:, skip:], act[-1:, skip:], rew[-1:, skip:]
            lengths = lengths[-1:].clamp_max(self.capacity)
        else:
            obs, act, rew, lengths = obs[first:], act[first:], rew[first:], lengths[first:]
        k = lengths.numel()
        total = int(lengths.sum())
        # as if added one by one: episodes skipped above would have pushed out every older stored episode
        self._evict(self._stored_rows if first > 0 else self._stored_rows + total - self.capacity)
        valid = torch.arange(obs.shape[1], device=self.device) < lengths[:, None]  # [k, W], episode-major order
        rows = (self._write_pos + torch.arange(total, device=self.device)) % self.capacity
        self.obs[rows] = obs[valid]
        self.act[rows] = act[valid]
        self.rew[rows] = rew[valid]
        starts = self._write_pos + torch.cumsum(lengths, 0) - lengths
        slots = (self._ep_head + self._ep_count + torch.arange(k, device=self.device)) % self.capacity
        self._ep_start[slots] = starts
        self._ep_len[slots] = lengths
        self._ep_count += k
        self._write_pos += total
        self._stored_rows += total
        self._version += 1

    def _evict(self, rows_needed: int) -> None:
        """Drop the oldest whole episodes until `rows_needed` rows are free."""
        if rows_needed <= 0:
            return
        freed = torch.cumsum(self._ep_len[self._live_slots()], 0)
        drop = int(torch.searchsorted(freed, torch.tensor([rows_needed], device=self.device))) + 1
        self._stored_rows -= int(freed[drop - 1])
        self._ep_head = (self._ep_head + drop) % self.capacity
        self._ep_count -= drop

    def _ensure_stage(self, length: int) -> None:
        """Grow the running-episode staging area (doubling) so every copy can hold `length` entries."""
        old = self._stage_obs.shape[1]
        if length <= old:
            return
        new = max(length, 2 * old)
        pad = new - old
        n = self.num_envs
        self._stage_obs = torch.cat([self._stage_obs, self._stage_obs.new_zeros(n, pad, self.obs_dim)], 1)
        self._stage_act = torch.cat([self._stage_act, self._stage_act.new_full((n, pad, self.act_dim), float("nan"))], 1)
        self._stage_rew = torch.cat([self._stage_rew, self._stage_rew.new_full((n, pad), float("nan"))], 1)

    def _check_batch(self, x: Tensor, what: str, dim: int) -> None:
        if tuple(x.shape) != (self.num_envs, dim):
            raise ValueError(f"SequenceBuffer.{what} must be [{self.num_envs}, {dim}] (num_envs, dim), got {tuple(x.shape)}")

    # ------------------------------------------------------------------ sampling
    def _eligible(self, horizon: int) -> Tensor:
        """Episode-ring slots of the stored episodes with at least horizon+1 entries, oldest first (cached)."""
        cache = self._eligible_cache
        if cache is not None and cache[0] == self._version and cache[1] == horizon:
            return cache[2]
        live = self._live_slots()
        eligible = live[self._ep_len[live] >= horizon + 1]
        self._eligible_cache = (self._version, horizon, eligible)
        return eligible

    def can_sample(self, horizon: int) -> bool:
        """True when at least one finished episode holds a window of horizon+1 entries."""
        return self._eligible(horizon).numel() > 0

    def sample(self, batch: int, horizon: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """`batch` windows as PWM's SliceSampler draws them: episode uniform over the finished episodes with
        ≥ horizon+1 entries, start uniform within it. Returns obs [H+1, B, O], act [H, B, A], rew [H, B]."""
        eligible = self._eligible(horizon)
        if eligible.numel() == 0:
            longest = int(self._ep_len[self._live_slots()].max()) if self._ep_count else 0
            raise RuntimeError(
                f"the replay buffer holds no finished episode of {horizon + 1} entries yet "
                f"({self._ep_count} finished episodes stored, longest {longest} entries); check can_sample({horizon}) first"
            )
        rng_device = generator.device if generator is not None else torch.device("cpu")
        pick = torch.randint(eligible.numel(), (batch,), generator=generator, device=rng_device).to(self.device)
        u = torch.rand(batch, generator=generator, device=rng_device).to(self.device)
        slot = eligible[pick]
        offset = (u * (self._ep_len[slot] - horizon)).floor().long()  # 0 .. len − H − 1
        rows = (self._ep_start[slot, None] + offset[:, None] + torch.arange(horizon + 1, device=self.device)) % self.capacity
        rows = rows.T  # [H+1, B], time-major
        return self.obs[rows], self.act[rows[1:]], self.rew[rows[1:]]

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict:
        """Only what is live: the stored rows in order, the episode index, the running episodes."""
        live = self._live_slots()
        first = int(self._ep_start[live[0]]) if self._ep_count else self._write_pos
        rows = (first + torch.arange(self._stored_rows, device=self.device)) % self.capacity
        width = int(self._run_len.max()) if self.num_envs else 0
        return {
            "version": _STATE_VERSION,
            "shape": (self.num_envs, self.capacity, self.obs_dim, self.act_dim),
            "write_pos": self._write_pos,
            "finished_episodes": self.finished_episodes,
            "ep_start": self._ep_start[live].clone(),
            "ep_len": self._ep_len[live].clone(),
            "obs": self.obs[rows].clone(),
            "act": self.act[rows].clone(),
            "rew": self.rew[rows].clone(),
            "stage_obs": self._stage_obs[:, :width].clone(),
            "stage_act": self._stage_act[:, :width].clone(),
            "stage_rew": self._stage_rew[:, :width].clone(),
            "run_len": self._run_len.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("version") != _STATE_VERSION:
            raise ConfigError(
                "the checkpoint's replay buffer was saved by an older pwmbench (lockstep rows with filler); "
                "it cannot be resumed with the episode buffer: start the run again with --restart"
            )
        shape = (self.num_envs, self.capacity, self.obs_dim, self.act_dim)
        if tuple(state["shape"]) != shape:
            raise ConfigError(
                f"the checkpoint's replay buffer has (num_envs, wm_buffer_size, obs_dim, act_dim) = {tuple(state['shape'])} "
                f"but this run has {shape}: resume with the same num_envs and wm_buffer_size, or --restart"
            )
        dev = self.device
        self._write_pos = int(state["write_pos"])
        self.finished_episodes = int(state["finished_episodes"])
        ep_start, ep_len = state["ep_start"].to(dev), state["ep_len"].to(dev)
        self._ep_count, self._ep_head = ep_len.numel(), 0
        self._ep_start[: self._ep_count] = ep_start
        self._ep_len[: self._ep_count] = ep_len
        self._stored_rows = int(ep_len.sum())
        first = int(ep_start[0]) if self._ep_count else self._write_pos
        rows = (first + torch.arange(self._stored_rows, device=dev)) % self.capacity
        self.obs[rows], self.act[rows], self.rew[rows] = state["obs"].to(dev), state["act"].to(dev), state["rew"].to(dev)
        width = state["stage_obs"].shape[1]
        self._ensure_stage(width)
        self._stage_obs[:, :width] = state["stage_obs"].to(dev)
        self._stage_act[:, :width] = state["stage_act"].to(dev)
        self._stage_rew[:, :width] = state["stage_rew"].to(dev)
        self._run_len = state["run_len"].to(dev).clone()
        self._version += 1
        self._eligible_cache = None
