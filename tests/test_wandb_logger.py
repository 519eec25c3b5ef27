"""The W&B logger plugin, offline: a real wandb run directory with the cell's config and metrics."""

import time

import pytest
from toy_task import SMALL

from pwmbench.pwm.cell import train_cell
from pwmbench.pwm.config import resolve_config

pytestmark = pytest.mark.usefixtures("toy_plugins")


def test_cells_log_to_wandb_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("PWMBENCH_WANDB", "1")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("PWMBENCH_WANDB_DIR", str(tmp_path))
    result = train_cell("toy/point", resolve_config({**SMALL, "max_epochs": 6}), 7, tmp_path / "cell")
    assert result.status == "ok"
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    # The offline store is wandb's record log (what `wandb sync` uploads): config, history rows and summary. wandb's
    # service process writes it on its own schedule; on a loaded machine the file was seen holding only its header
    # right after the run, so wait (up to a minute) for the records to land.
    deadline, store = time.monotonic() + 60, b""
    while time.monotonic() < deadline:
        store = runs[0].read_bytes()
        if b"toy/point" in store and store.count(b"wm_loss") >= 3:
            break
        time.sleep(0.5)
    assert b"toy/point" in store and b"horizon" in store and b"flow-pwm-comparison" in store
    assert store.count(b"wm_loss") >= 3 and b"rewards" in store


def test_logger_is_silent_unless_enabled(tmp_path, monkeypatch):
    monkeypatch.delenv("PWMBENCH_WANDB", raising=False)
    monkeypatch.chdir(tmp_path)
    train_cell("toy/point", resolve_config({**SMALL, "max_epochs": 3}), 7, tmp_path / "cell")
    assert not (tmp_path / "wandb").exists()
