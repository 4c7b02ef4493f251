-- The outbox holds events for seconds to an hour; pruning deletes them in thousands.
-- With the default settings autovacuum waited for dead rows to reach a fifth of the table,
-- so during a burst the pruned rows' space was not reused and the file kept growing
-- (1.37 GB after importing 1,000,000 evaluations, with at most 2,500 rows alive). Vacuumed
-- once 5,000 rows are dead, at each autovacuum round, the file stays near what a round's
-- events take.
ALTER TABLE evaluation.outbox SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 5000
);
