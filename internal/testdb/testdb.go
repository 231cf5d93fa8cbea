// Package testdb is a small database for the tests of syncdb with Go's
// database tools: goose migrations (Migrations) and the query code sqlc
// generates from them and query.sql (db.go, models.go, query.sql.go; do
// not edit those).
package testdb

import "embed"

//go:generate go run github.com/sqlc-dev/sqlc/cmd/sqlc@v1.31.1 generate

// Migrations holds the goose migrations, in migrations/.
//
//go:embed migrations/*.sql
var Migrations embed.FS
