-- Integrity checks that never freeze a plan made on an empty table.
--
-- The foreign key from evaluations to interactions is checked by a query PostgreSQL
-- prepares once per session and, after five runs, replaces by a generic plan. Planned
-- while `interactions` was empty, that plan read `interactions_by_time` by tenant and
-- filtered on the id: as cheap as the primary key on an empty table, and a scan of every
-- interaction of the tenant once there are many. Sessions opened on a new database kept
-- it, and each submission got slower as the table grew (700 ms per insert at 80,000
-- interactions, under 500 submissions/s). A foreign key's query cannot be planned
-- differently, so the rule is checked by a trigger, once per statement and per
-- interaction, with every lookup planned for its values (`plan_cache_mode`); the checks
-- that replaced the ratings' foreign key get the same setting, for the same reason.
ALTER TABLE evaluation.evaluations
    DROP CONSTRAINT evaluations_tenant_id_interaction_id_fkey;

CREATE FUNCTION evaluation.evaluations_reference_their_interaction() RETURNS trigger
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    parent record;
BEGIN
    FOR parent IN SELECT DISTINCT tenant_id, interaction_id FROM new_evaluations LOOP
        PERFORM FROM evaluation.interactions i
         WHERE i.tenant_id = parent.tenant_id AND i.id = parent.interaction_id
           FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'evaluations reference interaction %, which does not exist',
                parent.interaction_id
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER evaluations_reference_their_interaction_on_insert
    AFTER INSERT ON evaluation.evaluations
    REFERENCING NEW TABLE AS new_evaluations
    FOR EACH STATEMENT EXECUTE FUNCTION evaluation.evaluations_reference_their_interaction();

-- What the foreign key kept on the other side: an interaction with evaluations is neither
-- deleted nor re-keyed (IQS does neither; this keeps anyone else from it).
CREATE FUNCTION evaluation.interactions_keep_their_evaluations() RETURNS trigger
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    gone record;
BEGIN
    FOR gone IN SELECT tenant_id, id FROM old_interactions LOOP
        PERFORM FROM evaluation.evaluations e
         WHERE e.tenant_id = gone.tenant_id AND e.interaction_id = gone.id;
        IF FOUND THEN
            RAISE EXCEPTION 'interaction % still has evaluations', gone.id
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER interactions_keep_their_evaluations_on_delete
    AFTER DELETE ON evaluation.interactions
    REFERENCING OLD TABLE AS old_interactions
    FOR EACH STATEMENT EXECUTE FUNCTION evaluation.interactions_keep_their_evaluations();

CREATE FUNCTION evaluation.interaction_keys_never_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the key of interaction % cannot change', OLD.id
        USING ERRCODE = 'foreign_key_violation';
END;
$$;

CREATE TRIGGER interaction_keys_never_change
    BEFORE UPDATE OF tenant_id, id ON evaluation.interactions
    FOR EACH ROW
    WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION evaluation.interaction_keys_never_change();

ALTER FUNCTION evaluation.ratings_reference_their_evaluation()
    SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION evaluation.evaluations_keep_their_ratings()
    SET plan_cache_mode = force_custom_plan;
