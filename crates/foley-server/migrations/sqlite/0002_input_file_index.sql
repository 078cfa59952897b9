-- Retention looks up which tasks still use a file as their input.
CREATE INDEX IF NOT EXISTS tasks_input_file ON tasks(input_file_id);
