-- The comments of crm_comments (SQLite). AUTOINCREMENT: an id is never given out twice.
CREATE TABLE comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT
);
