//go:build unix

package dbactor

import (
	"os"
	"syscall"
)

// fileID is the device and inode of path (zeros if unknown).
func fileID(path string) (dev, ino uint64) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, 0
	}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return uint64(s.Dev), uint64(s.Ino)
	}
	return 0, 0
}
