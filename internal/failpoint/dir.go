//go:build failpoints

package failpoint

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// EnvDir names the directory a process built with the failpoints tag takes
// its failpoints from. A file in it named after a failpoint (NAME, or
// NAME@OWNER for one owner only) arms it; its content is the action:
//
//	kill   the process kills itself (SIGKILL) at the failpoint, once: the
//	       file is renamed to NAME.fired first, so that of the processes
//	       sharing the directory exactly one fires
//	skip   Skip of that name reports true while the file exists
//
// Tests create and remove the files while the processes run.
const EnvDir = "SYNCDB_FAILPOINTS"

func init() {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		return
	}
	Set(func(name, owner string) {
		path, action := armed(dir, name, owner)
		if action != "kill" {
			return
		}
		if os.Rename(path, path+".fired") != nil {
			return // another process fired it
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // nothing after the failpoint runs
	})
	SetSwitch(func(name, owner string) bool {
		_, action := armed(dir, name, owner)
		return action == "skip"
	})
}

// armed returns the file arming name for owner and its action, if any.
func armed(dir, name, owner string) (string, string) {
	for _, f := range []string{name + "@" + owner, name} {
		if strings.ContainsRune(f, filepath.Separator) {
			continue
		}
		path := filepath.Join(dir, f)
		if b, err := os.ReadFile(path); err == nil {
			return path, strings.TrimSpace(string(b))
		}
	}
	return "", ""
}
