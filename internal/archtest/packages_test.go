package archtest

import (
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
)

// module is the import path prefix of Herald's packages.
const module = "github.com/herald-dispatch/herald/"

// testTools are the packages the arrows of docs/architecture.md do not
// draw: tests, benchmarks and the load test, which may import anything
// (cmd/herald's TestBinaryLinksNoTestTools keeps them out of the binary).
var testTools = []string{"internal/heraldtest", "internal/loadtest", "internal/loadtest/baseline", "internal/chaos",
	"internal/hopbench", "internal/archtest", "cmd/herald-loadtest"}

// roots may import more than their arrows draw: the composition root
// wires every stage, and its line names the stages rather than every
// helper it passes to them.
var roots = []string{"cmd/herald"}

// goList returns every package of the module, by its path inside the
// module ("internal/views"), with the module's packages it imports
// (test files not counted).
func goList(t *testing.T) map[string][]string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...")
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	pkgs := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, ok := strings.CutPrefix(fields[0], module)
		if !ok {
			t.Fatalf("go list named %q, outside the module", fields[0])
		}
		imports := []string{}
		for _, imp := range fields[1:] {
			if rel, ok := strings.CutPrefix(imp, module); ok {
				imports = append(imports, rel)
			}
		}
		pkgs[pkg] = imports
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list named only %d packages:\n%s", len(pkgs), out)
	}
	return pkgs
}

// packageMap is the "Packages" section of docs/architecture.md: the
// packages its table names, and its arrows (package -> what it imports).
type packageMap struct {
	named  []string
	arrows map[string][]string
}

func readPackageMap(t *testing.T) packageMap {
	t.Helper()
	b, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	return parsePackageMap(t, string(b))
}

// parsePackageMap reads the section's table (the first cell of each row
// names packages in backquotes) and its one code block of arrows, whose
// lines hold segments "a, b ──► c, d" three or more spaces apart; a
// remark in parentheses after the targets is ignored, and "(nothing of
// Herald's)" draws no arrow. A short name is under internal/ unless it
// is contract or deploy or begins with contract/, cmd/ or deploy/.
func parsePackageMap(t *testing.T, doc string) packageMap {
	t.Helper()
	_, section, ok := strings.Cut(doc, "\n## Packages\n")
	if !ok {
		t.Fatal("docs/architecture.md has no section ## Packages")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	m := packageMap{arrows: map[string][]string{}}
	inBlock := false
	for _, line := range strings.Split(section, "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			inBlock = !inBlock
		case inBlock:
			for _, seg := range splitSegments(line) {
				from, to, ok := strings.Cut(seg, "──►")
				if !ok {
					t.Fatalf("arrow line without ──►: %q", line)
				}
				to, _, _ = strings.Cut(to, "(")
				for _, src := range names(from) {
					if _, dup := m.arrows[src]; dup {
						t.Errorf("docs/architecture.md draws the arrows of %s twice", src)
					}
					m.arrows[src] = names(to)
				}
			}
		case strings.HasPrefix(line, "| `"):
			cell, _, _ := strings.Cut(line[1:], "|")
			for _, f := range strings.Split(cell, ",") {
				m.named = append(m.named, strings.Trim(strings.TrimSpace(f), "`"))
			}
		}
	}
	if len(m.named) == 0 || len(m.arrows) == 0 {
		t.Fatalf("read %d packages and %d arrow lines from docs/architecture.md", len(m.named), len(m.arrows))
	}
	return m
}

// splitSegments cuts an arrow line at runs of three or more spaces.
func splitSegments(line string) []string {
	var segs []string
	for _, s := range strings.Split(line, "   ") {
		if s = strings.TrimSpace(s); s != "" {
			segs = append(segs, s)
		}
	}
	return segs
}

// names turns "views, sink" into full paths inside the module.
func names(list string) []string {
	out := []string{}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		switch {
		case n == "":
		case n == "contract", n == "deploy", strings.HasPrefix(n, "contract/"), strings.HasPrefix(n, "cmd/"), strings.HasPrefix(n, "deploy/"):
			out = append(out, n)
		default:
			out = append(out, "internal/"+n)
		}
	}
	return out
}

// docs/architecture.md's package map is the code's: its table names every
// package and no other, every package but the test tools has a line of
// arrows, every arrow is an import, and every import is an arrow.
func TestPackageMapMatchesGoList(t *testing.T) {
	pkgs := goList(t)
	m := readPackageMap(t)
	for _, n := range m.named {
		if _, ok := pkgs[n]; !ok {
			t.Errorf("docs/architecture.md's table names %s, which go list does not find", n)
		}
	}
	var all []string
	for p := range pkgs {
		all = append(all, p)
	}
	sort.Strings(all)
	for _, p := range all {
		if !slices.Contains(m.named, p) {
			t.Errorf("package %s is not in docs/architecture.md's table", p)
		}
		if slices.Contains(testTools, p) {
			continue
		}
		drawn, ok := m.arrows[p]
		if !ok {
			t.Errorf("docs/architecture.md draws no arrows for %s (it imports %v)", p, pkgs[p])
			continue
		}
		for _, d := range drawn {
			if !slices.Contains(pkgs[p], d) {
				t.Errorf("docs/architecture.md draws %s ──► %s, but %s does not import it", p, d, p)
			}
		}
		if slices.Contains(roots, p) {
			continue
		}
		for _, imp := range pkgs[p] {
			if !slices.Contains(drawn, imp) {
				t.Errorf("%s imports %s, an arrow docs/architecture.md does not draw", p, imp)
			}
		}
	}
	for src := range m.arrows {
		if _, ok := pkgs[src]; !ok {
			t.Errorf("docs/architecture.md draws arrows from %s, which go list does not find", src)
		}
	}
}

// The parser reads what the test relies on: segments, several sources,
// remarks, "nothing", and short names.
func TestParsePackageMap(t *testing.T) {
	doc := "# x\n\n## Packages\n\n| package | owns |\n|---|---|\n| `contract`, `contract/internal/pb` | c |\n| `internal/views` | v |\n\n" +
		"```\nviews ──► sink, contract     dlq, schedule ──► contract (a remark)\ntopology ──► (nothing of Herald's)\n```\n\n## Next\n| `internal/other` | o |\n"
	m := parsePackageMap(t, doc)
	if want := []string{"contract", "contract/internal/pb", "internal/views"}; !slices.Equal(m.named, want) {
		t.Errorf("named %v, want %v", m.named, want)
	}
	want := map[string][]string{
		"internal/views":    {"internal/sink", "contract"},
		"internal/dlq":      {"contract"},
		"internal/schedule": {"contract"},
		"internal/topology": {},
	}
	if len(m.arrows) != len(want) {
		t.Errorf("arrows %v, want %v", m.arrows, want)
	}
	for src, to := range want {
		if !slices.Equal(m.arrows[src], to) {
			t.Errorf("arrows of %s: %v, want %v", src, m.arrows[src], to)
		}
	}
}

// Imports the package map rules out, even through another package: the
// HTTP package reads the table and the reports through their own packages
// (tableview, report), never through the stages that write them, and the
// dispatcher routes its holds through topology, not through the delay
// stage.
func TestForbiddenImports(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	for pkg, forbidden := range map[string][]string{
		"internal/views":      {"internal/sink", "internal/dispatcher", "internal/sender", "internal/delay"},
		"internal/dispatcher": {"internal/delay"},
	} {
		cmd := exec.Command("go", "list", "-deps", "./"+pkg)
		cmd.Dir = "../.."
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if !slices.Contains(deps, module+pkg) {
			t.Fatalf("go list -deps %s does not list the package itself: %s", pkg, out)
		}
		for _, f := range forbidden {
			if slices.Contains(deps, module+f) {
				t.Errorf("%s imports %s", pkg, f)
			}
		}
	}
}
