//go:build unix

// Package flock takes an exclusive advisory lock on a file, held until
// released or until the process ends.
package flock

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ErrLocked reports that another holder has the lock.
var ErrLocked = errors.New("locked by another process")

// Lock takes an exclusive lock on path (created if missing) without
// waiting, and records the process id in it. owner is the pid of the holder
// when the lock is taken (0 if unknown).
func Lock(path string) (release func() error, owner int, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, 0, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b, _ := os.ReadFile(path)
			owner, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			return nil, owner, ErrLocked
		}
		return nil, 0, err
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f.Close, 0, nil
}
