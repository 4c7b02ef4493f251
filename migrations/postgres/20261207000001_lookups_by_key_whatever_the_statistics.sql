-- The insert-side check of interactions looks each referenced interaction up by its
-- primary key. Written as `id = ANY (wanted)`, the planner could instead read every
-- interaction of the tenant and filter them: it did so when the table's statistics were
-- stale, as they are during a bulk import into a table autovacuum has not analysed yet
-- (a part of 500 rows read all 100,000 interactions of the tenant, 22 ms, growing with
-- the table). A lateral lookup per id leaves the planner only the key.

CREATE OR REPLACE FUNCTION evaluation.evaluations_reference_their_interaction() RETURNS trigger
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    tenant uuid;
    wanted uuid[];
    locked bigint;
    missing uuid;
BEGIN
    FOR tenant, wanted IN
        SELECT tenant_id, array_agg(DISTINCT interaction_id) FROM new_evaluations GROUP BY tenant_id
    LOOP
        SELECT count(*) INTO locked
          FROM unnest(wanted) AS w(id)
         CROSS JOIN LATERAL (
            SELECT FROM evaluation.interactions i
             WHERE i.tenant_id = tenant AND i.id = w.id
               FOR KEY SHARE
         ) referenced;
        IF locked < cardinality(wanted) THEN
            SELECT w INTO missing FROM unnest(wanted) AS w
             WHERE NOT EXISTS (SELECT FROM evaluation.interactions i
                                WHERE i.tenant_id = tenant AND i.id = w)
             LIMIT 1;
            RAISE EXCEPTION 'evaluations reference interaction %, which does not exist', missing
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;
