package syncdb_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A snippet that is a main package needs a func main.
var (
	mainPkg  = regexp.MustCompile(`^package main\b`)
	mainFunc = regexp.MustCompile(`(?m)^func main\(\) \{`)
)

// Every Go snippet of the README compiles as pasted: each ```go block is a
// whole file, compiled as its own main package inside this module (with
// -overlay, so nothing is written to the source tree). go list -export
// compiles without linking (go build linked five binaries, most of the
// test's time); a main package's only link-time error here, no func main,
// is checked by hand.
func TestREADMESnippetsCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list -export, which compiles")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 4 {
		t.Fatalf("found %d Go snippets in README.md", len(blocks))
	}
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	overlay := map[string]string{}
	var pkgs []string
	for i, b := range blocks {
		if !strings.HasPrefix(b[1], "package ") {
			t.Errorf("README snippet %d is not a whole file (it does not start with package):\n%s", i+1, b[1])
			continue
		}
		if mainPkg.MatchString(b[1]) && !mainFunc.MatchString(b[1]) {
			t.Errorf("README snippet %d is package main without a func main:\n%s", i+1, b[1])
		}
		src := filepath.Join(tmp, "snippet.go"+string(rune('a'+i)))
		if err := os.WriteFile(src, []byte(b[1]), 0o644); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join("internal", "readmesnippets", string(rune('a'+i)))
		overlay[filepath.Join(root, dir, "main.go")] = src
		pkgs = append(pkgs, "./"+dir)
	}
	js, err := json.Marshal(map[string]any{"Replace": overlay})
	if err != nil {
		t.Fatal(err)
	}
	ov := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(ov, js, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", append([]string{"list", "-overlay=" + ov, "-export", "-f", "{{.ImportPath}}"}, pkgs...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr // the compiler's errors; stdout lists the packages
	if err := cmd.Run(); err != nil {
		t.Fatalf("README snippets do not compile: %v\n%s", err, stderr.String())
	}
}
