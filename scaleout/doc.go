// Package scaleout holds the process-level tests of a syncdb cluster: three
// `syncdb serve --store` processes over one PostgreSQL database behind a
// load balancer, with Go clients pushing while nodes are killed (SIGKILL)
// or paused (SIGSTOP). They need PostgreSQL (SYNCDB_TEST_PG, set by
// scripts/test.sh) and skip without it.
package scaleout
