-- The 100,000 interactions that bench_data.sql's evaluations point at.
INSERT INTO evaluation.interactions
    (tenant_id, id, source, external_id, channel, agent_id, team_id, region, csat, messages, attributes)
SELECT :'tenant'::uuid, ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'bench', 'I-' || g,
       'chat', 'agent-' || (g % 30), 'team-' || (g % 30 % 3), 'emea', 3, '[]', '{}'
FROM generate_series(0, 99999) AS g;
