CREATE TABLE users (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    email      TEXT    NOT NULL,
    age        INTEGER,
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL
);
-- Emails are unique regardless of case.
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));
