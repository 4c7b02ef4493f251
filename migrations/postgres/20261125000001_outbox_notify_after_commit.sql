-- IQS sends the outbox NOTIFY itself, after the commit (src/store/postgres/notifier.rs):
-- sent by this trigger, inside the writing transaction, it made PostgreSQL serialize the
-- commits of all concurrent writes, WAL flush included.
DROP TRIGGER outbox_notify ON evaluation.outbox;
DROP FUNCTION evaluation.notify_outbox();
