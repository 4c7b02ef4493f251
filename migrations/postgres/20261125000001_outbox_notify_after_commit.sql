-- IQS sends the outbox NOTIFY itself after the commit (src/store/postgres/notifier.rs),
-- and its sessions say so with iqs.outbox_notify_after_commit = 'on'. Sent by this
-- trigger, inside the writing transaction, the NOTIFY made PostgreSQL serialize the
-- commits of all concurrent writes, WAL flush included. The trigger still notifies for
-- other sessions: servers of an earlier version, during a rolling upgrade or after a
-- rollback, keep waking the projector at once.
CREATE OR REPLACE FUNCTION evaluation.notify_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('iqs.outbox_notify_after_commit', true) IS DISTINCT FROM 'on' THEN
        PERFORM pg_notify('iqs_outbox', '');
    END IF;
    RETURN NULL;
END;
$$;
