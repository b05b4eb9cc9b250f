-- subjects: the public catalog.
CREATE TABLE {subjects} (
    subject_id uuid PRIMARY KEY,
    name text NOT NULL,
    category text NOT NULL,
    active boolean NOT NULL,
    created_position bigint NOT NULL
);
CREATE INDEX {subjects}_active_idx ON {subjects} (active, name, subject_id);
