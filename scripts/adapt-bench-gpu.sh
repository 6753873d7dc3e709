#!/usr/bin/env bash
# The domain-shift benchmark (`chameleon adapt bench`) on a lent GPU machine
# that has neither the corpus nor a Go toolchain. Prepared here:
#
#   go build -trimpath -ldflags "-s -w" -o .gpu/chameleon ./cmd/chameleon
#   go test -c -trimpath -ldflags "-s -w" -o .gpu/adapt.test ./adapt
#   xz -9 .gpu/chameleon .gpu/adapt.test
#   bin/chameleon adapt bench --t 192 --prompt 64 --train 250 --val 60 --test 150 --harm 60 --harm-val 60 \
#       --save-windows .gpu/windows.json.gz --prepare-only
#   (and Debian's Vulkan loader in .gl, as the device tool's README says)
#
# Run there from the repository root with OUT set:
#   scripts/adapt-bench-gpu.sh [PHASE[,PHASE...]|all] [head seconds] [deep seconds] [score seconds]
# PHASE is head, deep, score, cache, decode (issue 17's decode tables),
# overhead or sitebench.
# Writes OUT/info.txt (devices, the adapt kernels' conformance on the card),
# OUT/head.tgz and OUT/deep.tgz (bench.json, bench.md, bench.png, logs; a
# partial bench-partial.json when a phase ran out of time), the first
# seed's hyper-network and gated LoRA adapter files with their gate and
# self-check (OUT/hyper-*.safetensors, decoder updates included;
# OUT/lora*.safetensors) and, phase score (in
# all too), each of those files and the default scored through the
# inference path (OUT/score-*.json: adapt score on the test and harm splits)
# and, phase cache (in all too), the token cache on top of the default and
# the saved hyper-hidden and LoRA files (OUT/cache-*/: adapt cache, one seed)
# and, phase overhead (in all too), the decoder-update overhead of a random
# adapter on GPT-2 124M (OUT/overhead-*.json: head only, qkv, all sites,
# the sites' expand fused into their matmul and, -separate, apart; and the
# shipped default on 256-token text, overhead-default-text.json) and,
# phase sitebench (in all too), the site kernels' benchmarks
# (OUT/sitebench.txt). For the update overhead alone: `overhead,sitebench`
# (about 12 minutes: 6 bench runs of up to 120 s, then up to 290 s).
# With 15 minutes of device time a session, run `head,overhead` in
# one call (about 8 minutes), then `deep` and `score` in a later session.
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
phase=${1:-all}
# want PHASE: PHASE was asked for (phases are comma-separated, e.g. head,overhead; all runs every one).
want() { [ "$phase" = all ] || [[ ",$phase," == *",$1,"* ]]; }
head_s=${2:-420}
deep_s=${3:-200}
score_s=${4:-120}
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
unpack() {
	[ -x "/tmp/$1" ] && return
	xz -dc ".gpu/$1.xz" > "/tmp/$1" 2>/dev/null ||
		python3 -c "import lzma,sys; sys.stdout.buffer.write(lzma.open('.gpu/$1.xz').read())" > "/tmp/$1"
	chmod +x "/tmp/$1"
}
unpack chameleon
unpack adapt.test
CH=/tmp/chameleon
{
	nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
	$CH devices 2>&1
} > "$OUT/info.txt"
if ! grep -qi nvidia <($CH devices 2>&1); then
	export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
	$CH devices >> "$OUT/info.txt" 2>&1
fi
if [ -z "${ALLOW_CPU:-}" ] && ! grep -qi nvidia <($CH devices 2>&1); then
	echo "no NVIDIA adapter: stopping rather than running on the CPU" >> "$OUT/info.txt"
	exit 3
fi
common=(--windows "${WINDOWS:-.gpu/windows.json.gz}" --seeds 3 --epochs 2 --lrs "${LRS:-3e-4,1e-3,3e-3,1e-2,3e-2}" --bootstrap 1000)
if want head; then
	[ -n "${SKIP_CONFORMANCE:-}" ] || (cd /tmp && timeout 90 /tmp/adapt.test -test.run 'TestConformance|TestLogitsLimits' -test.count 1) >> "$OUT/info.txt" 2>&1
	mkdir -p "$OUT/head"
	timeout "$head_s" $CH adapt bench "${common[@]}" --out "$OUT/head" \
		--methods "${HEAD_METHODS:-lora,experts,table,hyper-both,hyper-hidden,hyper-embed,hyper-paper,lora-matched,hyper-hybrid,hyper-hybrid-full,hyper-basis}" > "$OUT/head/log" 2>&1
	echo "head: exit $?" >> "$OUT/info.txt"
	mv "$OUT"/head/hyper-*.safetensors "$OUT"/head/lora*.safetensors "$OUT/" 2>/dev/null
	tar czf "$OUT/head.tgz" -C "$OUT" head && rm -rf "$OUT/head"
fi
if want deep; then
	mkdir -p "$OUT/deep"
	timeout "$deep_s" $CH adapt bench "${common[@]}" --out "$OUT/deep" \
		--methods "${DEEP_METHODS:-lora-qkv,hyper-qkv,hyper-v3}" > "$OUT/deep/log" 2>&1
	echo "deep: exit $?" >> "$OUT/info.txt"
	mv "$OUT"/deep/hyper-*.safetensors "$OUT"/deep/lora*.safetensors "$OUT/" 2>/dev/null
	tar czf "$OUT/deep.tgz" -C "$OUT" deep && rm -rf "$OUT/deep"
fi
if want score; then
	for f in default "$OUT"/hyper-*.safetensors "$OUT"/lora*.safetensors ${SCORE_ADAPTERS:-}; do
		[ "$f" = default ] || [ -f "$f" ] || continue
		name=$(basename "$f" .safetensors)
		timeout "$score_s" $CH adapt score --adapter "$f" --windows "${WINDOWS:-.gpu/windows.json.gz}" --dtype f32 --json \
			> "$OUT/score-$name.json" 2> "$OUT/score-$name.log"
		echo "score $name: exit $?" >> "$OUT/info.txt"
	done
fi
if want cache; then
	# The token cache on top of each saved adapter (the default, the
	# hyper-networks, the gated LoRAs): does the cluster cache add to a
	# parameter-matched LoRA as it adds to the hyper-network?
	for f in default "$OUT"/hyper-hidden.safetensors "$OUT"/lora-matched.safetensors "$OUT"/lora.safetensors ${CACHE_ADAPTERS:-}; do
		[ "$f" = default ] || [ -f "$f" ] || continue
		name=$(basename "$f" .safetensors)
		timeout "${CACHE_S:-150}" $CH adapt cache --adapter "$f" --windows "${WINDOWS:-.gpu/windows.json.gz}" --dtype f32 \
			--seeds 1 --out "$OUT/cache-$name" > "$OUT/cache-$name.log" 2>&1
		echo "cache $name: exit $?" >> "$OUT/info.txt"
	done
fi
if want decode; then
	# Issue 17's decode tables on the card: GPT-2 124M (random f16 weights,
	# quantized from them) at batch 1 and 8, dispatches per token and the
	# measured ceilings in the JSON; with XL=1 the GPT-2 XL shape at batch 1
	# too (its random weights take minutes to make on the host). With
	# .gpu/conformance.test.xz present (go test -c ./gpu/conformance), the
	# kernels' conformance on the card first.
	if [ -f .gpu/conformance.test.xz ]; then
		unpack conformance.test
		(cd /tmp && timeout 120 /tmp/conformance.test -test.count 1) > "$OUT/conformance.log" 2>&1
		echo "conformance: exit $?" >> "$OUT/info.txt"
	fi
	timeout "${DECODE_S:-240}" $CH bench --config gpt2 --batches 1,8 --dtype f16,q8_0,q4_0 --decode 64 --reps 5 --json \
		> "$OUT/decode-gpt2.json" 2> "$OUT/decode-gpt2.log"
	echo "decode gpt2: exit $?" >> "$OUT/info.txt"
	if [ -n "${XL:-}" ]; then
		timeout "${XL_S:-300}" $CH bench --config gpt2-xl --batches 1 --dtype f16,q4_0 --decode 32 --reps 3 --json \
			> "$OUT/decode-gpt2-xl.json" 2> "$OUT/decode-gpt2-xl.log"
		echo "decode gpt2-xl: exit $?" >> "$OUT/info.txt"
	fi
fi
if want overhead; then
	# First the figure: the shipped default as generate runs it,
	# batch 32 x 256 on the adaptation domains' text (test windows joined
	# to length; the gate and self-check at work). +3.5% [+2.9%, +4.6%] on
	# lavapipe over 31 rounds (2026-12-06); a forward takes milliseconds on
	# a card, so 30 rounds cost little. The JSON has every round's ratio,
	# the interval and the plan's host transfers.
	timeout 180 $CH bench --adapter default --adapter-windows "${WINDOWS:-.gpu/windows.json.gz}" --batches 32 --seq 256 \
		--dtype f32 --reps 30 --json > "$OUT/overhead-default-text.json" 2> "$OUT/overhead-default-text.log"
	echo "overhead default on text: exit $?" >> "$OUT/info.txt"
	# The decoder-update overhead on the card (the 5% target is for qkv):
	# GPT-2 124M shape, random f16 weights, a random rank-8 hyper-network,
	# batch 32 x 256. Each site set twice: the sites' expand fused into
	# their matmul (matmul_tile_*_lr, the default) and apart
	# (CHAMELEON_SEPARATE_EXPAND=1: MatMul, then lowrank_add_tiled).
	for sites in none attn.qkv attn.qkv,attn.proj,mlp.fc,mlp.fc2; do
		for sep in 0 1; do
			[ "$sites" = none ] && [ $sep = 1 ] && continue
			args=(--config gpt2 --adapter random --adapter-rank 8 --reps 5 --json)
			[ "$sites" = none ] || args+=(--adapter-sites "$sites")
			name=${sites//,/+}
			[ $sep = 1 ] && name+=-separate
			CHAMELEON_SEPARATE_EXPAND=$sep timeout 120 $CH bench "${args[@]}" > "$OUT/overhead-$name.json" 2> "$OUT/overhead-$name.log"
			echo "overhead $name: exit $?" >> "$OUT/info.txt"
		done
	done
fi
if want sitebench; then
	# The site kernels on the card, fused against separate in one process
	# (BENCHMARKS.md, Updates inside the decoder, [d2], [d3] and [d4]): the
	# default model's shape, f32, M = 32 x 256, and an adapted decode step
	# (8 sequences; Q8_0 and f32; the coop mat-vec, the card's decode
	# kernel, and gemv); conformance of SiteMatMul and the decode check first.
	(cd /tmp && timeout 90 /tmp/adapt.test -test.run '(TestConformance|TestSitesDecode)/SiteMatMul' -test.count 1 &&
		timeout 200 /tmp/adapt.test -test.run '^$' -test.bench 'SiteUpdate|SitesForward|SitesDecode' -test.benchtime 5x) > "$OUT/sitebench.txt" 2>&1
	echo "sitebench: exit $?" >> "$OUT/info.txt"
fi
ls -la "$OUT"
