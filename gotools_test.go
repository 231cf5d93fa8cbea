package syncdb_test

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/pressly/goose/v3"

	"github.com/syncdb/syncdb"
	"github.com/syncdb/syncdb/internal/testdb"
)

// migrate runs the goose migrations of internal/testdb up, and reports
// the database's version afterwards.
func migrate(t *testing.T, db *sql.DB) int64 {
	t.Helper()
	ctx := context.Background()
	migrations, err := fs.Sub(testdb.Migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, migrations)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type author struct {
	ID   int64          `db:"id"`
	Name string         `db:"name"`
	Bio  sql.NullString `db:"bio"`
}

// goose migrates a synced replica, sqlc's generated code and sqlx write and
// read it through DB.SQL; a second replica, opened with sql.Open("syncdb",
// dsn), pulls the migrated schema (goose finds nothing to do there) and the
// rows, writes through the same tools and pushes back.
func TestGoToolsOnReplicas(t *testing.T) {
	url := newServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	a := open(t, syncdb.Config{Path: filepath.Join(dir, "a.db"), URL: url})

	if v := migrate(t, a.SQL()); v != 2 {
		t.Fatalf("version after migrating a: %d", v)
	}

	// sqlc's generated code, in and out of a transaction.
	q := testdb.New(a.SQL())
	le, err := q.CreateAuthor(ctx, testdb.CreateAuthorParams{Name: "Ursula K. Le Guin", Bio: sql.NullString{String: "Earthsea", Valid: true}})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := a.SQL().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	qtx := q.WithTx(tx)
	for i, title := range []string{"A Wizard of Earthsea", "The Tombs of Atuan"} {
		if _, err := qtx.AddBook(ctx, testdb.AddBookParams{AuthorID: le.ID, Title: title, Year: sql.NullInt64{Int64: int64(1968 + 3*i), Valid: true}}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := qtx.CountBooks(ctx); err != nil || n != 2 {
		t.Fatalf("books in the transaction: %d %v", n, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	books, err := q.BooksByAuthor(ctx, "Ursula K. Le Guin")
	if err != nil || len(books) != 2 || books[1].Title != "The Tombs of Atuan" {
		t.Fatalf("BooksByAuthor: %+v %v", books, err)
	}

	// sqlx: named statements, Get and Select.
	x := sqlx.NewDb(a.SQL(), "sqlite3")
	if _, err := x.NamedExecContext(ctx, "INSERT INTO authors (name, bio) VALUES (:name, :bio)",
		[]author{{Name: "Stanisław Lem"}, {Name: "Octavia E. Butler", Bio: sql.NullString{String: "Kindred", Valid: true}}}); err != nil {
		t.Fatal(err)
	}
	var lem author
	if err := x.GetContext(ctx, &lem, "SELECT * FROM authors WHERE name LIKE ?", "Stanis%"); err != nil || lem.Bio.Valid {
		t.Fatalf("sqlx Get: %+v %v", lem, err)
	}
	if err := a.Push(ctx); err != nil {
		t.Fatal(err)
	}

	// The second replica, through the registered driver.
	bdb, err := sql.Open("syncdb", filepath.Join(dir, "b.db")+"?url="+url)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	if v := migrate(t, bdb); v != 2 {
		t.Fatalf("version on b: %d", v)
	}
	bx := sqlx.NewDb(bdb, "sqlite3")
	var all []author
	if err := bx.SelectContext(ctx, &all, "SELECT * FROM authors ORDER BY id"); err != nil || len(all) != 3 || all[0].Name != "Ursula K. Le Guin" {
		t.Fatalf("sqlx Select on b: %+v %v", all, err)
	}
	bq := testdb.New(bdb)
	if err := bq.UpdateAuthorBio(ctx, testdb.UpdateAuthorBioParams{Bio: sql.NullString{String: "Solaris", Valid: true}, ID: lem.ID}); err != nil {
		t.Fatal(err)
	}
	if n, err := bq.DeleteAuthor(ctx, all[2].ID); err != nil || n != 1 {
		t.Fatalf("DeleteAuthor: %d %v", n, err)
	}
	closeAndPush(t, bdb, filepath.Join(dir, "b.db"), a)
	got, err := q.ListAuthors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "Stanisław Lem" || got[0].Bio.String != "Solaris" || got[1].Name != "Ursula K. Le Guin" {
		t.Fatalf("a after pulling b's changes: %+v", got)
	}
	if v := migrate(t, a.SQL()); v != 2 {
		t.Fatalf("version on a at the end: %d", v)
	}
}
