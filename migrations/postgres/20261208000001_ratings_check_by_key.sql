-- The insert-side check of ratings looks each referenced evaluation revision up by its
-- primary key, as the check of interactions does (20261207000001). The semi-join it
-- replaces (`id = ANY (ids) AND (id, revision) IN (unnest …)`) weighed every index of
-- the evaluations table on each call: planning it took about twice as long as the
-- lookup below, and it is planned for every statement that inserts ratings (once per
-- submission group). OFFSET 0 keeps the lookup a subquery run per revision, so the
-- planner can only choose the index for one key.

CREATE OR REPLACE FUNCTION evaluation.ratings_reference_their_evaluation() RETURNS trigger
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    tenant uuid;
    ids uuid[];
    revisions integer[];
    matched bigint;
    missing record;
BEGIN
    FOR tenant, ids, revisions IN
        SELECT tenant_id, array_agg(evaluation_id), array_agg(revision)
          FROM (SELECT DISTINCT tenant_id, evaluation_id, revision FROM new_ratings) parents
         GROUP BY tenant_id
    LOOP
        SELECT count(*) INTO matched
          FROM unnest(ids, revisions) AS w(id, revision)
         CROSS JOIN LATERAL (
            SELECT FROM evaluation.evaluations e
             WHERE e.tenant_id = tenant AND e.id = w.id AND e.revision = w.revision
            OFFSET 0
         ) referenced;
        IF matched < cardinality(ids) THEN
            SELECT w.id, w.revision INTO missing
              FROM unnest(ids, revisions) AS w(id, revision)
             WHERE NOT EXISTS (SELECT FROM evaluation.evaluations e
                                WHERE e.tenant_id = tenant AND e.id = w.id AND e.revision = w.revision)
             LIMIT 1;
            RAISE EXCEPTION 'ratings reference evaluation % revision %, which does not exist',
                missing.id, missing.revision
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;
