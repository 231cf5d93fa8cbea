//go:build !failpoints

package failpoint

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A build without the failpoints tag (every production build) takes no
// failpoints from the environment: nothing can make it kill itself or
// skip a check.
func TestProductionBuildIgnoresTheFailpointDirectory(t *testing.T) {
	if os.Getenv("FAILPOINT_TEST_CHILD") != "" {
		fmt.Printf("skip=%v\n", Skip("pgstore.lease-self-check", ""))
		Hit("server.committed", "default")
		fmt.Println("alive")
		return
	}
	dir := t.TempDir()
	for name, action := range map[string]string{"pgstore.lease-self-check": "skip", "server.committed": "kill", "server.committed@default": "kill"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(action), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestProductionBuildIgnoresTheFailpointDirectory$", "-test.v")
	cmd.Env = append(os.Environ(), "SYNCDB_FAILPOINTS="+dir, "FAILPOINT_TEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "skip=false") || !strings.Contains(string(out), "alive") {
		t.Fatalf("the child: %v\n%s", err, out)
	}
}
