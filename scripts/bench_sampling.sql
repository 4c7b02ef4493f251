-- A month (October 2026) of :n interactions for 500 agents, for RunSampling: each agent's
-- work spread over chat, email and voice in its own proportions, CSAT 1..5 on 60% of them.
INSERT INTO evaluation.interactions
    (tenant_id, id, source, external_id, channel, agent_id, team_id, region, occur_time, csat,
     messages, attributes)
SELECT :'tenant'::uuid,
       ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid,
       'bench', 'S-' || g,
       CASE WHEN abs(hashint8(g)) % 10 < 5 + (g % 500) % 4 THEN 'chat'
            WHEN abs(hashint8(g + 1)) % 3 = 0 THEN 'voice' ELSE 'email' END,
       'agent-' || (g % 500), 'team-' || (g % 500 % 20), 'emea',
       timestamptz '2026-10-01 00:00:00+00' + (abs(hashint8(g + 2)) % (31 * 86400)) * interval '1 second',
       CASE WHEN abs(hashint8(g + 3)) % 10 < 6 THEN 1 + abs(hashint8(g + 4)) % 5 END,
       '[]', '{}'
FROM generate_series(0, :n - 1) AS g;
ANALYZE evaluation.interactions;
