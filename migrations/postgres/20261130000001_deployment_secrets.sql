-- Secrets every replica of a deployment shares, made once on first use: the key page
-- tokens are signed with, so a token from one replica verifies on another and after a
-- restart. Rotating one is deleting its row and restarting every replica; tokens signed
-- with the old one are then refused.
CREATE TABLE access.deployment_secrets (
    name         text        NOT NULL,
    secret       bytea       NOT NULL,
    create_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name)
);
