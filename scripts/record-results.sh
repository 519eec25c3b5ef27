#!/usr/bin/env bash
# Copy a results directory's tables into a benchmarks/results record, so it can be re-scored from the repo:
#   scripts/record-results.sh RESULTS RECORD   →   RECORD/results/ (suite.json, cells/**/{run,curves}.arrow + .sha256,
#   every member's tables of a task set) and RESULTS/report → RECORD/report/ when it exists. No weights, checkpoints,
#   datasets or logs.
set -euo pipefail
src="$(realpath "$1")"; dst="$(realpath -m "$2")"
rm -rf "$dst/results" "$dst/report"
mkdir -p "$dst/results"
cp "$src/suite.json" "$dst/results/"
(cd "$src" && find cells -type f \( -name '*.arrow' -o -name '*.arrow.sha256' \) -print0 | xargs -0 -I{} cp --parents {} "$dst/results/")
if [ -d "$src/report" ]; then cp -r "$src/report" "$dst/report"; fi
du -sh "$dst"
