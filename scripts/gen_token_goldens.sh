#!/usr/bin/env bash
# Regenerates model/testdata/tokenizer/golden.json: GPT-2 token ids for a set
# of varied texts, computed by npm gpt-3-encoder@1.1.4 (an independent
# JavaScript implementation of GPT-2's encoder).
#
# Usage: scripts/gen_token_goldens.sh [PKGDIR]
# PKGDIR is an unpacked gpt-3-encoder@1.1.4 (e.g. .cache/npm/package); without
# it the package is fetched with `npm pack` into a temporary directory, never
# into the repository. Needs node and npm.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/model/testdata/tokenizer/golden.json"

pkgdir=${1:-}
if [[ -z $pkgdir ]]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null && tar -xzf gpt-3-encoder-1.1.4.tgz)
	pkgdir="$tmp/package"
fi

mkdir -p "$(dirname "$out")"
node "$root/scripts/gen_token_goldens.js" "$pkgdir" >"$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out"
