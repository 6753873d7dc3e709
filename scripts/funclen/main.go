// Command funclen lists the Go functions of the repository that are longer
// than a limit (80 lines by default, counted from `func` to the closing
// brace) and the non-generated Go files longer than a file limit (500
// lines), for the targets of issue 18. A long function passes when its doc
// comment states why, in a line containing "Over 80 lines:"; generated
// files (a "Code generated ... DO NOT EDIT." line) are skipped. It exits
// with status 1 when it finds a long function without a reason or a long
// file, so it can gate a change:
//
//	go run ./scripts/funclen            # the whole module, tests included
//	go run ./scripts/funclen -v ./serve # every long function, reasons too
//
// It is a development tool, linked into no binary.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

var generated = regexp.MustCompile(`(?m)^// Code generated .* DO NOT EDIT\.$`)

// finding is one long function or file.
type finding struct {
	path   string
	line   int
	name   string
	lines  int
	reason bool
	test   bool
}

func main() {
	maxFunc := flag.Int("func", 80, "longest function allowed without a stated reason, in lines")
	maxFile := flag.Int("file", 500, "longest non-generated, non-test Go file allowed, in lines")
	verbose := flag.Bool("v", false, "also list the long functions that state their reason")
	flag.Parse()
	roots := flag.Args()
	if len(roots) == 0 {
		roots = []string{"."}
	}
	var funcs, files []finding
	for _, root := range roots {
		err := filepath.WalkDir(strings.TrimSuffix(root, "/..."), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "node_modules") {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") {
				return nil
			}
			fn, fl, err := scan(path, *maxFunc, *maxFile)
			funcs, files = append(funcs, fn...), append(files, fl...)
			return err
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "funclen:", err)
			os.Exit(2)
		}
	}
	os.Exit(report(funcs, files, *maxFunc, *maxFile, *verbose))
}

// scan parses one file and returns its functions over maxFunc lines and,
// when it is a non-test file over maxFile lines, the file itself.
func scan(path string, maxFunc, maxFile int) (funcs, files []finding, err error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if generated.Match(src) {
		return nil, nil, nil
	}
	test := strings.HasSuffix(path, "_test.go")
	if n := lineCount(src); !test && n > maxFile {
		files = append(files, finding{path: path, lines: n})
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
	if err != nil {
		return nil, nil, err
	}
	for _, decl := range f.Decls {
		fd, ok := decl.(*ast.FuncDecl)
		if !ok {
			continue
		}
		start, end := fset.Position(fd.Pos()).Line, fset.Position(fd.End()).Line
		if n := end - start + 1; n > maxFunc {
			funcs = append(funcs, finding{path: path, line: start, name: funcName(fd), lines: n,
				reason: fd.Doc != nil && strings.Contains(fd.Doc.Text(), "Over 80 lines:"), test: test})
		}
	}
	return funcs, files, nil
}

// funcName is Name or (Recv).Name.
func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	t := fd.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	if ix, ok := t.(*ast.IndexExpr); ok {
		t = ix.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return "(" + id.Name + ")." + fd.Name.Name
	}
	return fd.Name.Name
}

// lineCount counts lines as wc -l does, plus a last line without a newline.
func lineCount(src []byte) int {
	n := bytes.Count(src, []byte("\n"))
	if len(src) > 0 && src[len(src)-1] != '\n' {
		n++
	}
	return n
}

// report prints the findings and returns the exit status.
func report(funcs, files []finding, maxFunc, maxFile int, verbose bool) int {
	sort.Slice(funcs, func(i, j int) bool { return funcs[i].lines > funcs[j].lines })
	var bad, withReason, inTests int
	for _, f := range funcs {
		if f.test {
			inTests++
		}
		if f.reason {
			withReason++
			if verbose {
				fmt.Printf("ok   %4d lines  %s:%d %s\n", f.lines, f.path, f.line, f.name)
			}
			continue
		}
		bad++
		fmt.Printf("BAD  %4d lines  %s:%d %s (no \"Over 80 lines:\" reason in its doc comment)\n", f.lines, f.path, f.line, f.name)
	}
	for _, f := range files {
		fmt.Printf("BAD  %4d lines  %s (a non-generated Go file over %d lines)\n", f.lines, f.path, maxFile)
	}
	fmt.Printf("funclen: %d functions over %d lines (%d in tests), %d with a stated reason, %d without; %d non-generated, non-test Go files over %d lines\n",
		len(funcs), maxFunc, inTests, withReason, bad, len(files), maxFile)
	if bad > 0 || len(files) > 0 {
		return 1
	}
	return 0
}
