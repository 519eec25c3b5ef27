"""Progress display: the runner's board reads cells' progress files; a cell's own line on a terminal or log."""

import io
import json

import pytest

from pwmbench.jobs.progress import ProgressBoard
from pwmbench.pwm.cell import ProgressLine
from pwmbench.pwm.config import resolve_config
from pwmbench.suite.spec import Cell


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_board_shows_overall_progress_eta_and_running_cells(tmp_path):
    cfg = resolve_config({"max_epochs": 10})
    cells = [Cell("dmc/a", "mlp", 1, cfg), Cell("dmc/a", "flow", 1, cfg)]
    cells[0].directory(tmp_path).mkdir(parents=True)
    (cells[0].directory(tmp_path) / "progress.json").write_text(json.dumps({"epoch": 5, "max_epochs": 10, "eval_return": 12.5}))
    screen = Terminal()
    board = ProgressBoard(cells, tmp_path, screen)
    board.draw()
    text = screen.getvalue()
    assert "cells 0/2" in text and "25%" in text and "ETA" in text
    assert "dmc/a mlp seed 1: epoch 5/10, eval 12.5" in text and "flow" not in text
    board.finished(cells[0], "ok")
    board.draw()
    assert "cells 1/2" in screen.getvalue() and "50%" in screen.getvalue()


def test_board_in_a_log_prints_plain_lines():
    log = io.StringIO()
    board = ProgressBoard([Cell("dmc/a", "mlp", 1, resolve_config({"max_epochs": 4}))], __import__("pathlib").Path("/nonexistent"), log)
    board.draw(final=True)
    board.finished(board.cells[0], "diverged")
    assert "cells 0/1" in log.getvalue() and "finished dmc/a mlp seed 1: diverged" in log.getvalue() and "\x1b[" not in log.getvalue()


@pytest.mark.parametrize("tty", [True, False])
def test_cell_progress_line(tty):
    stream = Terminal() if tty else io.StringIO()
    line = ProgressLine(10, stream)
    for epoch in range(1, 11):
        line({"epoch": epoch, "rewards": 1.5 * epoch, "eval_return": 3.0 if epoch == 5 else None}, 0)
    text = stream.getvalue()
    assert "epoch 10/10 [####################]" in text and "eval 3.0" in text and "rewards 15.0" in text
    if not tty:
        assert text.count("\n") == 10 and "\r" not in text
