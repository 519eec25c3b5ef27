"""Checkpoints load as plain data only (a malicious pickle runs no code), carry a checksum, and a corrupt one is
moved aside and the cell trained again instead of trusted."""

import os
import random
from collections import OrderedDict

import numpy as np
import pytest
import torch

from pwmbench.pwm.checkpoint import CorruptCheckpoint, from_plain, load_checkpoint, save_checkpoint, to_plain


def test_plain_data_round_trips_numpy_and_python_rng_states(tmp_path):
    shared = np.arange(6, dtype=np.uint32).reshape(2, 3)
    state = {"numpy": np.random.get_state(), "python": random.getstate(), "a": shared, "b": shared, "scalar": np.float64(2.5),
             "modules": OrderedDict(w=torch.ones(2)), "tuple": (1, None, "x"), "complex": 1 + 2j, "bytes": b"ab", "empty": np.zeros((0, 3))}  # fmt: skip
    back = load_checkpoint(save_checkpoint(state, tmp_path / "c.pt"))
    np.random.set_state(back["numpy"])
    random.setstate(back["python"])
    assert back["a"] is back["b"] and back["a"].dtype == np.uint32 and back["a"].tolist() == shared.tolist()
    assert back["scalar"] == 2.5 and isinstance(back["scalar"], np.float64) and back["empty"].shape == (0, 3)
    assert isinstance(back["modules"], OrderedDict) and back["tuple"] == (1, None, "x") and back["complex"] == 1 + 2j and back["bytes"] == b"ab"
    with pytest.raises(TypeError, match="cannot checkpoint state/obj: an object of type .*Path"):
        to_plain({"obj": tmp_path})
    assert from_plain(to_plain([1, {"x": (2.0,)}])) == [1, {"x": (2.0,)}]


class _Payload:
    def __reduce__(self):
        return (os.makedirs, (os.environ["PWMBENCH_TEST_MARKER"],))


def test_a_checkpoint_holding_a_malicious_pickle_runs_no_code(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("PWMBENCH_TEST_MARKER", str(marker))
    torch.save({"epoch": 3, "payload": _Payload()}, tmp_path / "checkpoint.pt")
    with pytest.raises(CorruptCheckpoint, match="has no checksum"):  # W14: no checksum, not trusted at all
        load_checkpoint(tmp_path / "checkpoint.pt")
    from pwmbench.results.atomic_files import sha256_of

    (tmp_path / "checkpoint.pt.sha256").write_text(sha256_of(tmp_path / "checkpoint.pt"))  # a checksum that matches, too
    with pytest.raises(CorruptCheckpoint, match="cannot be read as a pwmbench checkpoint"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    assert not marker.exists()


def test_a_changed_checkpoint_fails_its_checksum(tmp_path):
    path = save_checkpoint({"x": torch.arange(100)}, tmp_path / "c.pt")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpoint, match=f"{path} does not match its checksum"):
        load_checkpoint(path)
    path.write_bytes(b"")
    (tmp_path / "c.pt.sha256").unlink()
    with pytest.raises(CorruptCheckpoint, match="has no checksum"):
        load_checkpoint(path)
    (tmp_path / "c.pt.sha256").write_text("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")  # the empty file's
    with pytest.raises(CorruptCheckpoint, match="cannot be read"):
        load_checkpoint(path)


@pytest.mark.usefixtures("toy_plugins")
def test_a_cell_with_a_corrupt_checkpoint_is_trained_again_not_trusted(tmp_path, capsys):
    from pwmbench.pwm.cell import train_cell
    from pwmbench.pwm.config import resolve_config
    from pwmbench.results.tables import read_table

    cfg = resolve_config({"world_model": {"units": [16], "encoder_units": [16], "latent_dim": 8}, "actor_units": [16], "critic_units": [16],
                          "horizon": 4, "num_envs": 2, "max_epochs": 6, "wm_batch_size": 4, "wm_iterations": 1, "initial_wm_iterations": 2,
                          "eval_every": 3, "eval_episodes": 1, "checkpoint_every": 3})  # fmt: skip
    clean = train_cell("toy/point", cfg, 5, tmp_path / "clean")
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    again = train_cell("toy/point", cfg, 5, tmp_path / "garbled")
    assert again.status == clean.status == "ok" and "training" in capsys.readouterr().err
    assert (tmp_path / "garbled" / "checkpoint.pt.corrupt").exists()
    assert read_table(tmp_path / "garbled" / "run.arrow").column("final_return").to_pylist() == read_table(tmp_path / "clean" / "run.arrow").column("final_return").to_pylist()
