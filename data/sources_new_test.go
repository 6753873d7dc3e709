package data

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const gplHeader = `;;; a.el --- a test file  -*- lexical-binding:t -*-

;; Copyright (C) 2020 Free Software Foundation, Inc.

;; This file is part of GNU Emacs.

;; GNU Emacs is free software: you can redistribute it and/or modify
;; it under the terms of the GNU General Public License as published by

;;; Commentary:

;; Frobs the widgets.

;;; Code:
`

// mitText is long enough to have a few dozen sampled shingles.
const mitText = `Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions: the above copyright
notice and this permission notice shall be included in all copies or
substantial portions of the Software. THE SOFTWARE IS PROVIDED "AS IS",
WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO
THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE
FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT,
TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE.`

func gz(t *testing.T, s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// writeZText writes a SWORD zText testament: one block per book, one
// index entry per verse.
func writeZText(t *testing.T, base string, books [][]string) {
	var bzs, bzz, bzv bytes.Buffer
	for k, verses := range books {
		var block bytes.Buffer
		for _, v := range verses {
			binary.Write(&bzv, binary.LittleEndian, uint32(k))
			binary.Write(&bzv, binary.LittleEndian, uint32(block.Len()))
			binary.Write(&bzv, binary.LittleEndian, uint16(len(v)))
			block.WriteString(v)
		}
		var c bytes.Buffer
		w := zlib.NewWriter(&c)
		w.Write(block.Bytes())
		w.Close()
		binary.Write(&bzs, binary.LittleEndian, [3]uint32{uint32(bzz.Len()), uint32(c.Len()), uint32(block.Len())})
		bzz.Write(c.Bytes())
	}
	binary.Write(&bzv, binary.LittleEndian, [10]byte{}) // an empty entry
	for ext, b := range map[string][]byte{".bzs": bzs.Bytes(), ".bzz": bzz.Bytes(), ".bzv": bzv.Bytes()} {
		if err := os.WriteFile(base+ext, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fakeNewSources writes miniatures of the adapt and heldout sources.
func fakeNewSources(t *testing.T, src string, write func(path, text string)) {
	t.Helper()
	for i := range 4 {
		write(filepath.Join(src, srcPython, "json", fmt.Sprintf("m%d.py", i)), fmt.Sprintf("# Copyright (C) 2001 Python Software Foundation\n# Licensed under the PSF licence.\n\n\"\"\"Module %d.\"\"\"\n\ndef f%d(x):\n    return x + %d\n", i, i, i))
	}
	write(filepath.Join(src, srcPython, "test", "test_json.py"), "import unittest\n\nclass T(unittest.TestCase): pass\n")
	for i := range 3 {
		write(filepath.Join(src, srcElisp, "28.2", "lisp", fmt.Sprintf("a%d.el.gz", i)), gz(t, gplHeader+fmt.Sprintf("\n(defun frob-%d (x)\n  \"Frob X %d times.\"\n  (* x %d))\n", i, i, i)))
	}
	for i := range 3 {
		write(filepath.Join(src, srcVimDoc, "vim90", "doc", fmt.Sprintf("help%d.txt", i)), fmt.Sprintf("*help%d.txt*\tFor Vim version 9.0.\n\n\t\tVIM REFERENCE MANUAL\n\nTopic %d\t\t\t\t\t\t*topic-%d*\n", i, i, i))
	}
	for i := range 3 {
		write(filepath.Join(src, srcSOTU, fmt.Sprintf("%d_george_washington_n.txt", 1790+i)), fmt.Sprintf("Fellow-Citizens of the Senate and House of Representatives: in the year %d %s", 1790+i, strings.Repeat(fmt.Sprintf("we report on the state of the union number %d. ", i), 4)))
	}
	write(filepath.Join(src, srcSOTU, "1790_george_washington_n.json"), `{"year":1790}`)
	write(filepath.Join(src, srcSPDX, "MIT.json"), fmt.Sprintf(`{"name":"MIT License","licenseText":%q}`, "MIT License\n\n"+mitText))
	write(filepath.Join(src, srcSPDX, "MIT-Variant.json"), fmt.Sprintf(`{"name":"MIT Variant","licenseText":%q}`, "MIT Variant License\n\n"+mitText))
	write(filepath.Join(src, srcSPDX, "Beerware.json"), `{"name":"Beerware","licenseText":"As long as you retain this notice you can do whatever you want with this stuff."}`)
	write(filepath.Join(src, srcFortunesDE, "witze"), "Treffen sich zwei Jäger, beide tot.\n%\nWas ist grün und klopft an die Tür? Ein Klopfsalat.\n%\n")
	write(filepath.Join(src, srcFortunesDE, "witze.dat"), "\x00index")
	write(filepath.Join(src, srcManDE, "man1", "ls.1"), ".TH LS 1\n.SH BEZEICHNUNG\nls \\- Verzeichnisinhalte auflisten\n")
	for i := range 3 {
		write(filepath.Join(src, srcPerl, "5.36.0", "File", fmt.Sprintf("M%d.pm", i)), fmt.Sprintf("package File::M%d;\nuse strict;\nsub new { return bless {n => %d}, shift }\n1;\n__END__\n\n=head1 NAME\n\nFile::M%d - does thing %d\n\n=head1 COPYRIGHT\n\nThis library is free software.\n\n=cut\n", i, i, i, i))
	}
	write(filepath.Join(src, srcPerl, "5.36.0", "t", "x.pm"), "package t::x; 1; # a test module, skipped\n")
	write(filepath.Join(src, srcBrown, "ca01"), "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ./.\n\n\n\tIt/pps ended/vbd in/in Atlanta/np ,/, Ga./np ./.\n")
	write(filepath.Join(src, srcBrown, "cb02"), "\n\n\tA/at second/od file/nn of/in the/at corpus/nn ,/, editorial/jj ./.\n")
	write(filepath.Join(src, srcBrown, "cats.txt"), "ca01 news\n")
	dir := filepath.Join(src, srcSword)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeZText(t, filepath.Join(dir, "ot"), [][]string{{
		`<div osisID="Gen" type="book"/><title type="main">GÉNESIS</title><chapter osisID="Gen.1" sID="Gen.1"/><w lemma="x">EN el principio</w> crió Dios los cielos y la tierra.`,
		`Y la tierra estaba desordenada y vacía<note>nota</note>, y las tinieblas estaban sobre la haz del abismo.`,
		`<chapter osisID="Gen.2" sID="Gen.2"/>Y FUERON acabados los cielos y la<transChange type="added">tierra</transChange>, y todo su ornamento.`,
	}})
	writeZText(t, filepath.Join(dir, "nt"), [][]string{{
		`<chapter osisID="Matt.1" sID="Matt.1"/>LIBRO de la generación de Jesucristo, hijo de David, hijo de Abraham.`,
	}})
}

func TestNewSourceReaders(t *testing.T) {
	src, goroot := fakeSources(t, 3)
	o := Options{Src: src, Out: t.TempDir(), GOROOT: goroot, renderMan: fakeMan}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	load := func(domain string) map[string]string {
		t.Helper()
		cands, info, err := o.candidates(domain)
		if err != nil {
			t.Fatal(err)
		}
		if len(info) == 0 || info[0].License == "" {
			t.Errorf("%s: no licence recorded: %+v", domain, info)
		}
		out := map[string]string{}
		for _, c := range cands {
			s, err := c.load()
			if err != nil {
				t.Fatal(err)
			}
			out[c.id] = Clean(s)
		}
		return out
	}
	py := load(DomainPython)
	if len(py) != 4 || py["python3.11/json/m1.py"] != "\"\"\"Module 1.\"\"\"\n\ndef f1(x):\n    return x + 1" {
		t.Errorf("python: %q", py)
	}
	el := load(DomainElisp)
	if a := el["emacs/28.2/lisp/a1.el"]; len(el) != 3 || strings.Contains(a, "Copyright") || strings.Contains(a, "General Public") ||
		!strings.HasPrefix(a, ";;; a.el") || !strings.Contains(a, ";; Frobs the widgets.") || !strings.Contains(a, "(defun frob-1") {
		t.Errorf("elisp: %q", el)
	}
	if v := load(DomainVimHelp); len(v) != 3 || !strings.Contains(v["vim/vim90/doc/help2.txt"], "*topic-2*") {
		t.Errorf("vimhelp: %q", v)
	}
	sp := load(DomainSpeeches)
	if s := sp["sotu/1791_george_washington_n"]; len(sp) != 3 || !strings.HasPrefix(s, "Fellow-Citizens") || strings.Count(s, "\n") < 2 {
		t.Errorf("speeches (wrapped at 78): %q", sp)
	}
	for _, l := range strings.Split(sp["sotu/1790_george_washington_n"], "\n") {
		if len(l) > 78 {
			t.Errorf("speeches: line of %d bytes", len(l))
		}
	}
	if l := load(DomainLicenses); len(l) != 3 || !strings.HasPrefix(l["spdx/MIT"], "MIT License\n\nPermission") {
		t.Errorf("licenses: %q", l)
	}
	de := load(DomainGerman)
	if len(de) != 3 || de["fortunes-de/witze/0002"] != "Was ist grün und klopft an die Tür? Ein Klopfsalat." || !strings.Contains(de["man/manpages-de/man1/ls.1"], "Verzeichnisinhalte") {
		t.Errorf("german: %q", de)
	}
	pl := load(DomainPerl)
	if p := pl["perl/5.36.0/File/M0.pm"]; len(pl) != 3 || strings.Contains(p, "COPYRIGHT") || !strings.Contains(p, "=head1 NAME") || !strings.HasSuffix(p, "=cut") {
		t.Errorf("perl: %q", pl)
	}
	br := load(DomainBrown)
	if b := br["brown/ca01"]; len(br) != 2 || b != "The jury said \"no evidence\".\nIt ended in Atlanta, Ga." {
		t.Errorf("brown: %q", br)
	}
	es := load(DomainSpanish)
	want := map[string]string{
		"rv1909/ot/0001-Gen.1":  "EN el principio crió Dios los cielos y la tierra.\nY la tierra estaba desordenada y vacía, y las tinieblas estaban sobre la haz del abismo.",
		"rv1909/ot/0002-Gen.2":  "Y FUERON acabados los cielos y la tierra, y todo su ornamento.",
		"rv1909/nt/0003-Matt.1": "LIBRO de la generación de Jesucristo, hijo de David, hijo de Abraham.",
	}
	if fmt.Sprint(es) != fmt.Sprint(want) {
		t.Errorf("spanish:\n got %q\nwant %q", es, want)
	}
}

func TestStripLicenceComments(t *testing.T) {
	in := "#!/usr/bin/env python3\n# Copyright 2001 X\n# All rights reserved.\n\n# A helpful comment.\nimport os  # Copyright in code stays\n"
	want := "#!/usr/bin/env python3\n# A helpful comment.\nimport os  # Copyright in code stays\n"
	if got := StripLicenceComments(in, "#"); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
