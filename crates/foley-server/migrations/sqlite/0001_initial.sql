-- The single-process schema (it was created by hand-written code before migrations; IF NOT EXISTS keeps
-- databases made by those versions working).
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    api TEXT NOT NULL,
    app TEXT NOT NULL,
    status INTEGER NOT NULL,
    input TEXT NOT NULL,
    request TEXT NOT NULL,
    input_file_id TEXT,
    output TEXT,
    error TEXT,
    logs TEXT NOT NULL DEFAULT '',
    progress REAL NOT NULL DEFAULT 0,
    stage TEXT,
    webhook TEXT,
    webhook_pending INTEGER NOT NULL DEFAULT 0,
    external_id TEXT UNIQUE,
    base_url TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks(status, seq);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    uploaded INTEGER NOT NULL,
    task_id TEXT,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_task ON files(task_id);
