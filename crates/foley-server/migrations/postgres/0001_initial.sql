-- The shared schema of a cluster. Times are Unix milliseconds; leases and webhook claims are compared with the
-- database's clock (foley_now_ms) so that the nodes' clocks do not matter.
CREATE FUNCTION foley_now_ms() RETURNS BIGINT LANGUAGE sql VOLATILE AS
    $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT $$;

CREATE TABLE tasks (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    api TEXT NOT NULL,
    app TEXT NOT NULL,
    status BIGINT NOT NULL,
    input TEXT NOT NULL,
    request TEXT NOT NULL,
    input_file_id TEXT,
    output TEXT,
    error TEXT,
    logs TEXT NOT NULL DEFAULT '',
    progress DOUBLE PRECISION NOT NULL DEFAULT 0,
    stage TEXT,
    webhook TEXT,
    webhook_pending BOOLEAN NOT NULL DEFAULT FALSE,
    -- A node delivering the webhook holds it until then; afterwards any node may take it over.
    webhook_claimed_until BIGINT,
    -- Kling's external_task_id: unique across the cluster.
    external_id TEXT UNIQUE,
    base_url TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    -- The node running the task and when its lease lapses (renewed while it runs).
    worker_id TEXT,
    lease_expires_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    -- The fingerprint of the key that submitted the task (GET /tasks lists one key's tasks); NULL without keys.
    owner TEXT
);
CREATE INDEX tasks_status ON tasks (status, seq);
CREATE INDEX tasks_owner ON tasks (owner, seq);
CREATE INDEX tasks_live_lease ON tasks (lease_expires_at) WHERE status IN (7, 8, 9);
CREATE INDEX tasks_webhook ON tasks (seq) WHERE webhook_pending;

CREATE TABLE files (
    id TEXT PRIMARY KEY,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    uploaded BOOLEAN NOT NULL,
    task_id TEXT,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX files_task ON files (task_id);

-- Every visible change of a task is announced on channel foley_tasks as "<id> <status>": streams on any node
-- follow it, a queued task wakes idle workers, a cancelling task stops on the node that runs it.
-- Lease renewals do not touch updated_at and announce nothing.
CREATE FUNCTION foley_task_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('foley_tasks', NEW.id || ' ' || NEW.status);
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_inserted AFTER INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION foley_task_changed();
CREATE TRIGGER tasks_changed AFTER UPDATE ON tasks FOR EACH ROW
    WHEN (OLD.updated_at IS DISTINCT FROM NEW.updated_at OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION foley_task_changed();

-- Retention looks up which tasks still use a file as their input.
CREATE INDEX tasks_input_file ON tasks (input_file_id);
