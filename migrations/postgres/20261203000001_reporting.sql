-- BI over SQL: read-only views for BI tools (Metabase, Superset, Tableau, Power BI …).
-- A BI login (made by `iqs bi grant`) may read these views and nothing else, and sees only
-- its tenant's rows: each view keeps the rows of the tenant that access.bi_logins maps
-- the current login to. The views run with their owner's rights, so the login needs no
-- right on the tables behind them; security_barrier keeps a caller's own functions from
-- seeing rows before the tenant filter has run.
CREATE SCHEMA IF NOT EXISTS reporting;

-- Which PostgreSQL login reads which tenant.
CREATE TABLE access.bi_logins (
    role_name    text        NOT NULL PRIMARY KEY,
    tenant_id    uuid        NOT NULL UNIQUE REFERENCES access.tenants (tenant_id),
    create_time  timestamptz NOT NULL DEFAULT now(),
    rotate_time  timestamptz NOT NULL DEFAULT now()
);

-- The latest revision of every evaluation (deleted ones flagged), with the interaction's
-- CSAT.
CREATE VIEW reporting.evaluations WITH (security_barrier) AS
SELECT e.id,
       t.name AS tenant,
       e.agent_id,
       e.team_id,
       e.channel,
       e.region,
       e.rubric_id,
       e.rubric_version,
       e.reviewer_id,
       e.kind,
       e.score,
       e.passed,
       e.critical_failed,
       i.csat,
       e.first_create_time AS create_time,
       e.create_time AS update_time,
       e.revision,
       e.state = 'deleted' AS deleted,
       i.source,
       i.external_id
FROM evaluation.evaluations e
JOIN evaluation.interactions i ON i.tenant_id = e.tenant_id AND i.id = e.interaction_id
JOIN access.tenants t ON t.tenant_id = e.tenant_id
WHERE e.state <> 'superseded'
  AND e.tenant_id = (SELECT b.tenant_id FROM access.bi_logins b WHERE b.role_name = current_user);

-- Every criterion of the latest revision of every evaluation: the rating, its score
-- (0..100, NULL when not applicable) and the criterion's section in the rubric version.
CREATE VIEW reporting.criterion_scores WITH (security_barrier) AS
SELECT e.id AS evaluation_id,
       r.criterion_key,
       COALESCE(c.criterion ->> 'section', '') AS section,
       r.value,
       (s.scored ->> 'score')::double precision AS score,
       r.not_applicable,
       e.agent_id,
       e.team_id,
       e.rubric_id,
       e.kind,
       e.first_create_time AS create_time,
       e.state = 'deleted' AS deleted
FROM evaluation.evaluations e
JOIN evaluation.ratings r
  ON r.tenant_id = e.tenant_id AND r.evaluation_id = e.id AND r.revision = e.revision
LEFT JOIN LATERAL (
    SELECT scored FROM jsonb_array_elements(e.criterion_scores) scored
    WHERE scored ->> 'criterion_key' = r.criterion_key LIMIT 1
) s ON true
LEFT JOIN rubric.rubric_versions v
  ON v.tenant_id = e.tenant_id AND v.rubric_id = e.rubric_id AND v.version = e.rubric_version
LEFT JOIN LATERAL (
    SELECT criterion FROM jsonb_array_elements(v.criteria) criterion
    WHERE criterion ->> 'key' = r.criterion_key LIMIT 1
) c ON true
WHERE e.state <> 'superseded'
  AND e.tenant_id = (SELECT b.tenant_id FROM access.bi_logins b WHERE b.role_name = current_user);

-- The daily rollups the API's figures come from: IQS = score_sum / scored_count, pass
-- rate = passed_count / scored_count, mean CSAT = csat_sum / csat_count.
CREATE VIEW reporting.daily_scores WITH (security_barrier) AS
SELECT d.day,
       d.agent_id,
       d.team_id,
       d.channel,
       d.region,
       d.rubric_id,
       d.kind,
       d.reviewer_id,
       d.evaluation_count,
       d.scored_count,
       d.score_sum,
       d.passed_count,
       d.critical_fail_count,
       d.csat_sum,
       d.csat_count
FROM analytics.daily_scores d
WHERE d.tenant_id = (SELECT b.tenant_id FROM access.bi_logins b WHERE b.role_name = current_user);
