#!/usr/bin/env bash
# How the shipped default model (defaults/model) is made, end to end, on a
# 2-core machine with no GPU (lavapipe): the corpus, a byte-level BPE
# vocabulary learned on it, pre-training, the f16 conversion, and the default
# hyper-network. Every step prints progress; the model card in the README
# records the figures of the run that produced the shipped files.
# Usage: scripts/default-model.sh [WORKDIR]   (default .cache/default-model)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-.cache/default-model}
CH=bin/chameleon
make build data
mkdir -p "$W"
$CH data vocab --size 4096 --out "$W/vocab"
$CH train --corpus .cache/corpus --tokenizer "$W/vocab" --out "$W/train" --config custom \
  --n-embd 64 --n-layer 4 --n-head 4 --n-ctx 128 --seq 128 --batch 16 --steps 400 \
  --lr 2e-3 --min-lr 2e-4 --warmup 50 --eval-every 100 --eval-tokens 4096 --save-every 100
$CH convert --model "$W/train/checkpoint" --out "$W/model" --dtype f16
$CH adapt train --model "$W/model" --out "$W/adapters" --method hyper,lora,lora-matched,experts \
  --per-domain 160 --epochs 2 --rank 8
cp "$W/adapters/hyper.safetensors" "$W/model/hyper.safetensors"
$CH adapt eval --model "$W/model" --adapters "$W/adapters" --per-domain 100 --md "$W/adapt-eval.md" --png docs/adapt-eval.png
$CH card --model "$W/model" --corpus .cache/corpus
cp "$W/model/"{config.json,model.safetensors,encoder.json,vocab.bpe,hyper.safetensors} defaults/model/
