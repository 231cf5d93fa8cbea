//go:build race

package interop

// raceEnabled: the tests run under -race, so the server is built with it too.
const raceEnabled = true
