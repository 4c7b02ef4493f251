-- A rating belongs to an evaluation revision. The foreign key said so by checking each
-- rating on its own, with a row lock on its evaluation: six checks per submission, about
-- half of the time PostgreSQL spent on a submission's statements. The same rule is now
-- checked once per statement and per evaluation revision, and the evaluation side keeps
-- what the foreign key kept: a revision with ratings is neither deleted nor re-keyed.
ALTER TABLE evaluation.ratings
    DROP CONSTRAINT ratings_tenant_id_evaluation_id_revision_fkey;

CREATE FUNCTION evaluation.ratings_reference_their_evaluation() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    parent record;
BEGIN
    -- One index lookup per revision: a set-based anti-join is planned without statistics
    -- on the transition table and scanned every evaluation.
    FOR parent IN SELECT DISTINCT tenant_id, evaluation_id, revision FROM new_ratings LOOP
        PERFORM FROM evaluation.evaluations e
         WHERE e.tenant_id = parent.tenant_id
           AND e.id = parent.evaluation_id
           AND e.revision = parent.revision;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'ratings reference evaluation % revision %, which does not exist',
                parent.evaluation_id, parent.revision
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER ratings_reference_their_evaluation_on_insert
    AFTER INSERT ON evaluation.ratings
    REFERENCING NEW TABLE AS new_ratings
    FOR EACH STATEMENT EXECUTE FUNCTION evaluation.ratings_reference_their_evaluation();

CREATE TRIGGER ratings_reference_their_evaluation_on_update
    AFTER UPDATE ON evaluation.ratings
    REFERENCING NEW TABLE AS new_ratings
    FOR EACH STATEMENT EXECUTE FUNCTION evaluation.ratings_reference_their_evaluation();

CREATE FUNCTION evaluation.evaluations_keep_their_ratings() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    gone record;
BEGIN
    FOR gone IN SELECT tenant_id, id, revision FROM old_evaluations LOOP
        PERFORM FROM evaluation.ratings r
         WHERE r.tenant_id = gone.tenant_id
           AND r.evaluation_id = gone.id
           AND r.revision = gone.revision;
        IF FOUND THEN
            RAISE EXCEPTION 'evaluation % revision % still has ratings', gone.id, gone.revision
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER evaluations_keep_their_ratings_on_delete
    AFTER DELETE ON evaluation.evaluations
    REFERENCING OLD TABLE AS old_evaluations
    FOR EACH STATEMENT EXECUTE FUNCTION evaluation.evaluations_keep_their_ratings();

CREATE FUNCTION evaluation.evaluation_keys_never_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the key of evaluation % revision % cannot change', OLD.id, OLD.revision
        USING ERRCODE = 'foreign_key_violation';
END;
$$;

-- Evaluations are updated only to change their state; the function runs only when a key
-- column changes.
CREATE TRIGGER evaluation_keys_never_change
    BEFORE UPDATE OF tenant_id, id, revision ON evaluation.evaluations
    FOR EACH ROW
    WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id
          OR OLD.id IS DISTINCT FROM NEW.id
          OR OLD.revision IS DISTINCT FROM NEW.revision)
    EXECUTE FUNCTION evaluation.evaluation_keys_never_change();
