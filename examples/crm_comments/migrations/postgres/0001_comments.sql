-- The comments of crm_comments (PostgreSQL).
CREATE TABLE comments (
    id BIGSERIAL PRIMARY KEY,
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT
);
