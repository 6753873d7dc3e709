#!/usr/bin/env bash
# serve-load.sh: one timed-from-outside load on `chameleon serve` for A/B
# comparisons of server options (e.g. the token cache's cost):
#   scripts/serve-load.sh [N requests] [C concurrent] [TOKENS] -- [serve flags...]
# starts bin/chameleon serve on a free loopback port with the given flags
# (the embedded default model), waits for /health, sends N greedy
# completions of TOKENS tokens, C at a time, drawn in turn from the
# adaptation-domain prompts of `make run` (cmd/chameleon/samples.txt),
# checks every reply is a completion, and stops the server. Time the whole
# script (e.g. /usr/bin/time -v, twice with different flags, in turn).
set -euo pipefail
n=${1:-24}; c=${2:-4}; tokens=${3:-32}
shift $(( $# >= 3 ? 3 : $# )); [ "${1:-}" = -- ] && shift
cd "$(dirname "$0")/.."
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bin/chameleon serve --addr "127.0.0.1:$port" "$@" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.05; done
dir=$(mktemp -d)
python3 - "$dir" "$n" "$tokens" <<'PY'
import json, sys
d, n, tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lines = [l.split("\t", 1)[1].replace("\\n", "\n").replace("\\t", "\t")
         for l in open("cmd/chameleon/samples.txt", encoding="utf-8")
         if "\t" in l and not l.startswith("#")]
for i in range(n):
    with open(f"{d}/{i}.json", "w") as f:
        json.dump({"prompt": lines[i % len(lines)], "max_tokens": tokens, "temperature": 0}, f)
PY
seq 0 $((n - 1)) | xargs -P "$c" -I{} sh -c \
	"curl -sf -H 'Content-Type: application/json' -d @$dir/{}.json http://127.0.0.1:$port/v1/completions > $dir/{}.out"
ok=$(grep -l '"text_completion"' "$dir"/*.out | wc -l)
rm -rf "$dir"
[ "$ok" = "$n" ] || { echo "serve-load: $ok of $n completions" >&2; exit 1; }
