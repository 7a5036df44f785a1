package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// packageVarsAllowed are the package-level variables cmd/herald may have,
// with why: none of them holds configuration. A command's flags are built
// per invocation (runFlags, sendFlags, dlqFlags...) and passed down, so
// two runs in one process, or two stages in one run, share nothing by
// accident.
var packageVarsAllowed = map[string]string{
	"commands":        "the registry of subcommands, filled by init",
	"version":         "set at link time (-ldflags -X)",
	"commit":          "set at link time (-ldflags -X)",
	"errFatal":        "a sentinel error",
	"errNotConfirmed": "a sentinel error",
	"_":               "compile-time interface checks",
}

// parseCommand parses cmd/herald's product files (not its tests).
func parseCommand(t *testing.T) (*token.FileSet, []*ast.File) {
	t.Helper()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatal("no Go files found")
	}
	return fset, files
}

// configVars lists the package-level variables of files that are not
// allowed, or that have a flags or options type.
func configVars(fset *token.FileSet, files []*ast.File) []string {
	var bad []string
	for _, f := range files {
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for _, n := range vs.Names {
					pos := fset.Position(n.Pos())
					if _, ok := packageVarsAllowed[n.Name]; !ok {
						bad = append(bad, pos.String()+": var "+n.Name+" is not an allowed package variable")
					} else if name := typeName(vs.Type); looksLikeConfig(name) {
						bad = append(bad, pos.String()+": var "+n.Name+" has type "+name)
					}
				}
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// typeName is the name a declared type ends in ("senderOptions" for
// senderOptions, *senderOptions or []senderOptions), or "struct" for a
// type literal.
func typeName(e ast.Expr) string {
	switch e := e.(type) {
	case nil:
		return ""
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return e.Sel.Name
	case *ast.StarExpr:
		return typeName(e.X)
	case *ast.ArrayType:
		return typeName(e.Elt)
	case *ast.StructType:
		return "struct"
	}
	return ""
}

// looksLikeConfig reports whether a type named name holds flags or
// options; an anonymous struct counts (the old `var sendFlags struct{...}`).
func looksLikeConfig(name string) bool {
	l := strings.ToLower(name)
	return name == "struct" || strings.HasSuffix(l, "flags") || strings.HasSuffix(l, "options") || strings.HasSuffix(l, "config")
}

// No package-level variable holds a command's configuration: only the
// allowed ones exist, and none of them has a flags or options type.
func TestNoPackageConfiguration(t *testing.T) {
	for _, b := range configVars(parseCommand(t)) {
		t.Error(b + " (build a command's flags per invocation and pass them down; see packageVarsAllowed)")
	}
}

// The check above catches what it looks for: a variable of an options
// type, an anonymous flags struct, a variable not allowed; and passes
// what is allowed. (No function here is longer than 80 lines:
// internal/archtest's TestNoFunctionIsTooLong checks cmd/ with the rest.)
func TestStructureChecksCatch(t *testing.T) {
	src := `package main
type senderOptions struct{}
var senderFlags senderOptions
var sendFlags struct{ file string }
var defaultProviders = []string{"email=mock://"}
var commands = map[string]int{}
var version, commit string
var _ = 1
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	files := []*ast.File{f}
	got := strings.Join(configVars(fset, files), "\n")
	for _, want := range []string{"var senderFlags is not", "var sendFlags is not", "var defaultProviders is not"} {
		if !strings.Contains(got, want) {
			t.Errorf("configVars found:\n%s\nwant %q", got, want)
		}
	}
	if n := len(configVars(fset, files)); n != 3 {
		t.Errorf("configVars found %d, want 3:\n%s", n, got)
	}
	if !looksLikeConfig(typeName(&ast.StarExpr{X: ast.NewIdent("apiOptions")})) || looksLikeConfig(typeName(ast.NewIdent("command"))) {
		t.Error("looksLikeConfig: *apiOptions is configuration, command is not")
	}
}
