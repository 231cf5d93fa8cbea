-- +goose Up
CREATE TABLE books (
  id        INTEGER PRIMARY KEY,
  author_id INTEGER NOT NULL REFERENCES authors (id),
  title     TEXT NOT NULL,
  year      INTEGER
);
CREATE INDEX books_author ON books (author_id);

-- +goose Down
DROP INDEX books_author;
DROP TABLE books;
