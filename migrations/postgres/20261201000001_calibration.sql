-- Calibration: reviewer-bound keys, sessions of double-scored interactions, and the
-- evaluations submitted in them.

-- A qa_reviewer key may be bound to one reviewer; it then submits only as that reviewer.
ALTER TABLE access.api_keys ADD COLUMN reviewer_id text
    CHECK (reviewer_id IS NULL OR role = 'qa_reviewer');

CREATE TABLE evaluation.calibration_sessions (
    tenant_id             uuid        NOT NULL,
    id                    uuid        NOT NULL,
    display_name          text        NOT NULL,
    rubric_id             uuid        NOT NULL,
    rubric_version        integer     NOT NULL CHECK (rubric_version >= 1),
    interaction_ids       jsonb       NOT NULL,
    reviewer_ids          jsonb       NOT NULL,
    baseline_reviewer_id  text,
    state                 text        NOT NULL CHECK (state IN ('open', 'closed')),
    due_time              timestamptz,
    create_time           timestamptz NOT NULL,
    close_time            timestamptz,
    request_id            text,
    request_fingerprint   bytea,
    PRIMARY KEY (tenant_id, id)
);

CREATE UNIQUE INDEX calibration_sessions_request_id_key
    ON evaluation.calibration_sessions (tenant_id, request_id) WHERE request_id IS NOT NULL;

ALTER TABLE evaluation.evaluations ADD COLUMN calibration_session_id uuid;

-- One active evaluation per reviewer and interaction in a session.
CREATE UNIQUE INDEX evaluations_one_per_calibration_cell
    ON evaluation.evaluations (tenant_id, calibration_session_id, interaction_id, reviewer_id)
    WHERE calibration_session_id IS NOT NULL AND state = 'active';

-- A session's evaluations, for its report.
CREATE INDEX evaluations_by_calibration_session
    ON evaluation.evaluations (tenant_id, calibration_session_id)
    WHERE calibration_session_id IS NOT NULL;

-- No calibration evaluation (nor revision) lands in a session that is not open. The row
-- lock is shared, so closing a session waits for the submissions in flight, and a
-- submission that comes after sees it closed.
CREATE FUNCTION evaluation.refuse_closed_calibration() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM evaluation.calibration_sessions
     WHERE tenant_id = NEW.tenant_id AND id = NEW.calibration_session_id AND state = 'open'
       FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'calibration session % is closed', NEW.calibration_session_id
            USING ERRCODE = 'IQ001';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER evaluations_refuse_closed_calibration
    BEFORE INSERT ON evaluation.evaluations
    FOR EACH ROW WHEN (NEW.calibration_session_id IS NOT NULL)
    EXECUTE FUNCTION evaluation.refuse_closed_calibration();
