//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// lockReplica takes PATH-lock, so that only one syncdb command at a time
// uses a replica: a second process writing the same files looks to the
// first like a foreign program, and syncdb then refuses to go on
// (ErrExternalModification). The lock is an flock on PATH-lock, released
// by unlock or when the process ends; the file holds the owner's pid.
func lockReplica(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path+"-lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &userError{fmt.Sprintf("no database at %s: its directory does not exist", path)}
		}
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			owner := ""
			if b, err := os.ReadFile(path + "-lock"); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					owner = fmt.Sprintf(" (pid %d)", pid)
				}
			}
			return nil, &userError{fmt.Sprintf("%s is in use by another syncdb process%s, for example an open shell: "+
				"one process at a time may use a replica; quit it or wait for it to finish", path, owner)}
		}
		return nil, fmt.Errorf("lock %s-lock: %w", path, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}
