//go:build !unix

package main

// lockReplica does nothing where flock is not available.
func lockReplica(path string) (unlock func(), err error) { return func() {}, nil }
