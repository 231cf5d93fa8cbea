//go:build !race

package syncdb_test

const raceEnabled = false
