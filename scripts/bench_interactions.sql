-- The 100,000 interactions that bench_data.sql's evaluations point at, with CSAT 1..5.
INSERT INTO evaluation.interactions
    (tenant_id, id, source, external_id, channel, agent_id, team_id, region, csat, messages, attributes)
SELECT :'tenant'::uuid, ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'bench', 'I-' || g,
       'chat', 'agent-' || (g % 30), 'team-' || (g % 30 % 3), 'emea', 1 + abs(hashint8(g)) % 5, '[]', '{}'
FROM generate_series(0, 99999) AS g;
