-- Calibration: reviewer-bound keys, sessions of double-scored interactions, and the
-- evaluations submitted in them (the PostgreSQL migration of the same name says why).

ALTER TABLE api_keys ADD COLUMN reviewer_id TEXT
    CHECK (reviewer_id IS NULL OR role = 'qa_reviewer');

CREATE TABLE calibration_sessions (
    tenant_id             BLOB    NOT NULL,
    id                    BLOB    NOT NULL,
    display_name          TEXT    NOT NULL,
    rubric_id             BLOB    NOT NULL,
    rubric_version        INTEGER NOT NULL CHECK (rubric_version >= 1),
    interaction_ids       TEXT    NOT NULL,
    reviewer_ids          TEXT    NOT NULL,
    baseline_reviewer_id  TEXT,
    state                 TEXT    NOT NULL CHECK (state IN ('open', 'closed')),
    due_time              INTEGER,
    create_time           INTEGER NOT NULL,
    close_time            INTEGER,
    request_id            TEXT,
    request_fingerprint   BLOB,
    PRIMARY KEY (tenant_id, id)
) STRICT;

CREATE UNIQUE INDEX calibration_sessions_request_id_key
    ON calibration_sessions (tenant_id, request_id) WHERE request_id IS NOT NULL;

ALTER TABLE evaluations ADD COLUMN calibration_session_id BLOB;

CREATE UNIQUE INDEX evaluations_one_per_calibration_cell
    ON evaluations (tenant_id, calibration_session_id, interaction_id, reviewer_id)
    WHERE calibration_session_id IS NOT NULL AND state = 'active';

CREATE INDEX evaluations_by_calibration_session
    ON evaluations (tenant_id, calibration_session_id)
    WHERE calibration_session_id IS NOT NULL;

-- Writes are serialized on SQLite, so the check needs no lock.
CREATE TRIGGER evaluations_refuse_closed_calibration
    BEFORE INSERT ON evaluations
    FOR EACH ROW WHEN NEW.calibration_session_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM calibration_sessions
         WHERE tenant_id = NEW.tenant_id AND id = NEW.calibration_session_id AND state = 'open')
BEGIN
    SELECT RAISE(ABORT, 'IQ001: calibration session is closed');
END;
