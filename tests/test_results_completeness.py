"""W14 item 2: a verdict is made from the suite's planned cells, each once, where it belongs — never from what happens
to be on disk. Faults are generated (which kind, which cell, which copy): every one is named and none leaves the
verdict "accepted" or the exit status 0."""

import json
import shutil

import pyarrow as pa
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from results_factory import SEEDS, write_results

from pwmbench.cli import main
from pwmbench.pwm.config import resolve_config
from pwmbench.results.tables import read_table, run_table, write_table_atomic

TASKS, VARIANTS = ("dmc/a", "dmc/b"), ("mlp", "flow")
GOOD = {(t, v): [600.0 + 10 * i + (25.0 if v == "flow" else 0.0) for i in range(6)] for t in TASKS for v in VARIANTS}
REFS = {t: (0.0, 1000.0) for t in TASKS}
FAULTS = ("missing", "empty", "truncated", "backup copy", "stray elsewhere", "copied from another cell", "duplicated row", "foreign config")


def results(root):
    plan = {"configs": {f"{t}|{v}": resolve_config({"dynamics": "flow" if v == "flow" else "mlp", "max_epochs": 3}).to_dict() for t in TASKS for v in VARIANTS},
            "seeds": list(SEEDS[:6])}  # fmt: skip
    return write_results(root, GOOD, scores=REFS, suite_extra=plan)


def cell(root, task, variant, seed):
    return root / "cells" / task.replace("/", "__") / variant / str(seed)


def test_the_complete_results_are_accepted(tmp_path):
    done = CliRunner().invoke(main, ["score", str(results(tmp_path)), "--bootstrap", "200"])
    assert done.exit_code == 0, done.output
    assert "incomplete" not in done.output


@settings(max_examples=24, deadline=None)
@given(fault=st.sampled_from(FAULTS), task=st.sampled_from(TASKS), variant=st.sampled_from(VARIANTS), seed=st.sampled_from(SEEDS[:6]),
       other=st.sampled_from(SEEDS[:6]), name=st.text("abcdefghij-_", min_size=1, max_size=8))  # fmt: skip
def test_every_fault_is_named_and_no_verdict_is_accepted(tmp_path_factory, fault, task, variant, seed, other, name):
    root = results(tmp_path_factory.mktemp("r"))
    target = cell(root, task, variant, seed)
    run = target / "run.arrow"
    if fault == "missing":
        shutil.rmtree(target)
        expect = f"missing: {task} {variant} seed {seed}"
    elif fault == "empty":
        write_table_atomic(read_table(run).slice(0, 0), run)
        expect = f"empty: {run}"
    elif fault == "truncated":
        run.write_bytes(run.read_bytes()[:60])
        expect = f"unreadable: {run}"
    elif fault == "backup copy":
        copy = target.with_name(f"{seed}-{name}")
        shutil.copytree(target, copy)
        expect = f"{copy / 'run.arrow'}"
    elif fault == "stray elsewhere":
        (root / name).mkdir(exist_ok=True)
        shutil.copy(run, root / name / "run.arrow")
        shutil.copy(run.with_name("run.arrow.sha256"), root / name / "run.arrow.sha256")
        expect = f"{root / name / 'run.arrow'}"
    elif fault == "copied from another cell":
        source = cell(root, task, variant, other if other != seed else SEEDS[(SEEDS.index(seed) + 1) % 6])
        for f in ("run.arrow", "run.arrow.sha256"):
            shutil.copy(source / f, target / f)  # a valid table with its checksum: only its identity betrays it
        expect = f"misplaced: {run}"
    elif fault == "duplicated row":
        table = read_table(run)
        write_table_atomic(pa.concat_tables([table, table]), run)
        expect = f"duplicated: {task} {variant} seed {seed}"
    else:  # a run row whose config is not the one the suite planned for its cell
        row = read_table(run).to_pylist()[0]
        foreign = resolve_config({"dynamics": row["dynamics"], "max_epochs": 4})
        write_table_atomic(run_table({**row, "config": foreign.to_json(), "config_hash": "0123456789abcdef"}), run)
        expect = f"misplaced: {run} — its config (hash 0123456789abcdef)"
    done = CliRunner().invoke(main, ["score", str(root), "--bootstrap", "100", "--json"])
    assert done.exit_code in (1, 3), (fault, done.exit_code, done.output[-600:])
    report = json.loads(done.output)
    assert all(v["status"] != "accepted" for v in report["verdicts"]), fault
    notes = [n for v in report["verdicts"] for n in v["notes"]]
    assert any(expect in n for n in notes), (fault, expect, notes[:6])
