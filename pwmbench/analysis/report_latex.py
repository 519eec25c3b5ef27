"""`pwmbench report --latex`: the decision summary and the per-task tables as LaTeX (booktabs), to paste into a paper.

Needs `\\usepackage{booktabs}`. Numbers are the report's: normalised scores, Δ in normalised points (×100), the
decision's paired interval, the Holm-adjusted paired p per task.
"""

from __future__ import annotations

import math
from pathlib import Path

from pwmbench.analysis.scoring import Scoring, summary_rows
from pwmbench.results.atomic_files import write_atomic

_ESCAPE = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
           "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}  # fmt: skip


def tex(text: object) -> str:
    """Text safe inside a LaTeX table cell."""
    return "".join(_ESCAPE.get(ch, ch) for ch in str(text))


def _num(x: float | None, digits: int = 3, sign: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "--"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _ci(value: float, low: float, high: float, scale: float = 1.0, digits: int = 1, sign: bool = True) -> str:
    return f"{_num(scale * value, digits, sign)} [{_num(scale * low, digits, sign)}, {_num(scale * high, digits, sign)}]"


def latex_tables(scoring: Scoring) -> str:
    st = scoring.settings
    metric = "IQM" if st.metric == "iqm" else st.metric
    b = tex(scoring.baseline)
    out = [
        "% pwmbench report --latex: needs \\usepackage{booktabs}",
        "\\begin{table}[t]", "\\centering",
        f"\\caption{{Each candidate against {b}: {metric} of normalised scores with 95\\% stratified-bootstrap intervals; "
        f"$\\Delta$ is the paired difference in normalised points with the decision's interval (margin $\\delta = {100 * st.margin:g}$ points).}}",
        "\\begin{tabular}{lllrrr}", "\\toprule",
        f"Candidate & Decision & $\\Delta$ {metric} (points) & {metric} & P(better than {b}) & Time ratio \\\\", "\\midrule",
    ]  # fmt: skip
    for s in summary_rows(scoring):
        d = s["difference"] or {}
        iqm = s["iqm"] or {}
        poi = s["probability_of_improvement"] or {}
        out.append(
            f"{tex(s['candidate'])} & {tex(s['decision'])} & {_ci(d.get('value', math.nan), d.get('ci_low', math.nan), d.get('ci_high', math.nan), 100)} & "
            f"{_ci(iqm.get('value', math.nan), iqm.get('ci_low', math.nan), iqm.get('ci_high', math.nan), 1, 3, False)} & "
            f"{_ci(poi.get('value', math.nan), poi.get('ci_low', math.nan), poi.get('ci_high', math.nan), 1, 2, False)} & {_num(s['speed_ratio'], 2)}$\\times$ \\\\"
        )
    out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    for v in scoring.verdicts:
        c = tex(v.candidate)
        out += [
            "\\begin{table}[t]", "\\centering",
            f"\\caption{{{c} against {b} per task: raw result mean $\\pm$ std over seeds, $\\Delta$ in normalised points, "
            "paired sign-flip test (Holm-adjusted over every candidate $\\times$ task test).}",
            "\\begin{tabular}{lrrrrr}", "\\toprule",
            f"Task & {b} & {c} & $\\Delta$ (points) & Holm $p$ & Time ratio \\\\", "\\midrule",
        ]  # fmt: skip
        for t in v.tasks:
            out.append(f"{tex(t.task)} & {_num(t.baseline_mean, 1)} $\\pm$ {_num(t.baseline_std, 1)} & {_num(t.candidate_mean, 1)} $\\pm$ {_num(t.candidate_std, 1)} & "
                       f"{_num(t.delta_points, 1, True)} & {_num(t.holm_p, 3)} & {_num(t.speed_ratio, 2)} \\\\")  # fmt: skip
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)


def write_latex(scoring: Scoring, path: Path) -> Path:
    return write_atomic(latex_tables(scoring).encode(), path)
