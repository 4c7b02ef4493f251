-- Secrets of the deployment, made once on first use: the key page tokens are signed with,
-- so tokens stay valid across restarts. Rotating one is deleting its row and restarting;
-- tokens signed with the old one are then refused.
CREATE TABLE deployment_secrets (
    name         TEXT    NOT NULL PRIMARY KEY,
    secret       BLOB    NOT NULL,
    create_time  INTEGER NOT NULL
) STRICT;
