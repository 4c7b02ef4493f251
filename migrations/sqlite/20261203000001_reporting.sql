-- BI over SQL on the embedded store: the views of PostgreSQL's `reporting` schema, named
-- reporting_evaluations, reporting_criterion_scores and reporting_daily_scores (SQLite
-- has no schemas). Whoever can open the file reads every tenant, so each view names it;
-- times are ISO 8601 UTC text, ids UUID text.
CREATE VIEW reporting_evaluations AS
SELECT lower(substr(hex(e.id), 1, 8) || '-' || substr(hex(e.id), 9, 4) || '-' || substr(hex(e.id), 13, 4) || '-' || substr(hex(e.id), 17, 4) || '-' || substr(hex(e.id), 21, 12)) AS id,
       t.name AS tenant,
       e.agent_id,
       e.team_id,
       e.channel,
       e.region,
       lower(substr(hex(e.rubric_id), 1, 8) || '-' || substr(hex(e.rubric_id), 9, 4) || '-' || substr(hex(e.rubric_id), 13, 4) || '-' || substr(hex(e.rubric_id), 17, 4) || '-' || substr(hex(e.rubric_id), 21, 12)) AS rubric_id,
       e.rubric_version,
       e.reviewer_id,
       e.kind,
       e.score,
       e.passed,
       e.critical_failed,
       i.csat,
       strftime('%Y-%m-%dT%H:%M:%fZ', e.first_create_time / 1000000.0, 'unixepoch') AS create_time,
       strftime('%Y-%m-%dT%H:%M:%fZ', e.create_time / 1000000.0, 'unixepoch') AS update_time,
       e.revision,
       e.state = 'deleted' AS deleted,
       i.source,
       i.external_id
FROM evaluations e
JOIN interactions i ON i.tenant_id = e.tenant_id AND i.id = e.interaction_id
JOIN tenants t ON t.tenant_id = e.tenant_id
WHERE e.state <> 'superseded';

CREATE VIEW reporting_criterion_scores AS
SELECT lower(substr(hex(e.id), 1, 8) || '-' || substr(hex(e.id), 9, 4) || '-' || substr(hex(e.id), 13, 4) || '-' || substr(hex(e.id), 17, 4) || '-' || substr(hex(e.id), 21, 12)) AS evaluation_id,
       t.name AS tenant,
       r.criterion_key,
       COALESCE((SELECT json_extract(c.value, '$.section') FROM rubric_versions v, json_each(v.criteria) c
                 WHERE v.tenant_id = e.tenant_id AND v.rubric_id = e.rubric_id AND v.version = e.rubric_version
                   AND json_extract(c.value, '$.key') = r.criterion_key), '') AS section,
       r.value,
       (SELECT json_extract(s.value, '$.score') FROM json_each(e.criterion_scores) s
        WHERE json_extract(s.value, '$.criterion_key') = r.criterion_key) AS score,
       r.not_applicable,
       e.agent_id,
       e.team_id,
       lower(substr(hex(e.rubric_id), 1, 8) || '-' || substr(hex(e.rubric_id), 9, 4) || '-' || substr(hex(e.rubric_id), 13, 4) || '-' || substr(hex(e.rubric_id), 17, 4) || '-' || substr(hex(e.rubric_id), 21, 12)) AS rubric_id,
       e.kind,
       strftime('%Y-%m-%dT%H:%M:%fZ', e.first_create_time / 1000000.0, 'unixepoch') AS create_time,
       e.state = 'deleted' AS deleted
FROM evaluations e
JOIN ratings r ON r.tenant_id = e.tenant_id AND r.evaluation_id = e.id AND r.revision = e.revision
JOIN tenants t ON t.tenant_id = e.tenant_id
WHERE e.state <> 'superseded';

CREATE VIEW reporting_daily_scores AS
SELECT t.name AS tenant,
       d.day,
       d.agent_id,
       d.team_id,
       d.channel,
       d.region,
       lower(substr(hex(d.rubric_id), 1, 8) || '-' || substr(hex(d.rubric_id), 9, 4) || '-' || substr(hex(d.rubric_id), 13, 4) || '-' || substr(hex(d.rubric_id), 17, 4) || '-' || substr(hex(d.rubric_id), 21, 12)) AS rubric_id,
       d.kind,
       d.reviewer_id,
       d.evaluation_count,
       d.scored_count,
       d.score_sum,
       d.passed_count,
       d.critical_fail_count,
       d.csat_sum,
       d.csat_count
FROM daily_scores d
JOIN tenants t ON t.tenant_id = d.tenant_id;
