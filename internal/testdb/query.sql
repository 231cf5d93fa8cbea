-- name: CreateAuthor :one
INSERT INTO authors (name, bio) VALUES (?, ?) RETURNING *;

-- name: GetAuthor :one
SELECT * FROM authors WHERE id = ? LIMIT 1;

-- name: ListAuthors :many
SELECT * FROM authors ORDER BY name;

-- name: UpdateAuthorBio :exec
UPDATE authors SET bio = ? WHERE id = ?;

-- name: DeleteAuthor :execrows
DELETE FROM authors WHERE id = ?;

-- name: AddBook :execlastid
INSERT INTO books (author_id, title, year) VALUES (?, ?, ?);

-- name: BooksByAuthor :many
SELECT b.id, b.title, b.year, a.name AS author
FROM books b JOIN authors a ON a.id = b.author_id
WHERE a.name = sqlc.arg(author_name)
ORDER BY b.year;

-- name: CountBooks :one
SELECT count(*) FROM books;
