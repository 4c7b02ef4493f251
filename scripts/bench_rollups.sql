-- The daily rollups the projector keeps, computed in one pass over the facts that
-- bench_data.sql generated: per agent and reviewer (daily_scores) and summed over them
-- (daily_team_scores, where both are ''). The section, criterion and root-cause rollups
-- are not generated: no benchmark figure reads them.
CREATE TEMPORARY TABLE generated_days AS
SELECT tenant_id, (first_create_time AT TIME ZONE 'UTC')::date AS day, agent_id, team_id,
       channel, region, rubric_id, reviewer_id, kind,
       count(*) AS evaluation_count, count(score) AS scored_count,
       COALESCE(sum(score), 0) AS score_sum, count(*) FILTER (WHERE passed) AS passed_count,
       count(*) FILTER (WHERE critical_failed) AS critical_fail_count,
       COALESCE(sum(csat), 0) AS csat_sum, count(csat) AS csat_count
FROM analytics.evaluation_facts
WHERE tenant_id = :'tenant'::uuid AND state = 'active'
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9;

INSERT INTO analytics.daily_scores
SELECT * FROM generated_days;

INSERT INTO analytics.daily_team_scores
SELECT tenant_id, day, '', team_id, channel, region, rubric_id, '', kind,
       sum(evaluation_count), sum(scored_count), sum(score_sum), sum(passed_count),
       sum(critical_fail_count), sum(csat_sum), sum(csat_count)
FROM generated_days
GROUP BY 1, 2, 4, 5, 6, 7, 9;
