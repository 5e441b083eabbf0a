#!/usr/bin/env bash
# Publish the CPU reproduction: copy the live grid store (benchmarks/results/, git-ignored; a grid
# may still be writing it) into reports/cpu-reproduction/ as one consistent file without the cells
# that earlier versions of the specs made, and render the report from that copy. Run from
# anywhere; the grids themselves run with
#   .venv/bin/greater grid run cpu-comparison --store benchmarks/results/cpu-reproduction.sqlite --data-dir ../shared/data
# (and cpu-ablation, cpu-transfer), which resume where they stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
LIVE=${1:-benchmarks/results/cpu-reproduction.sqlite}
OUT=reports/cpu-reproduction
DATA=${GREATER_DATA_DIR:-../shared/data}
G=.venv/bin/greater
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$G results snapshot --store "$LIVE" --out "$tmp/copy.sqlite"
for grid in cpu-comparison cpu-ablation cpu-transfer; do
  $G grid prune "$grid" --store "$tmp/copy.sqlite" --data-dir "$DATA"
done
$G results snapshot --slim --store "$tmp/copy.sqlite" --out "$OUT/cpu-reproduction.sqlite"
$G report --store "$OUT/cpu-reproduction.sqlite" --out "$OUT"
