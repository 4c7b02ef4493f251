-- The PostgreSQL migration of the same name says why.
CREATE INDEX evaluations_automated ON evaluations (tenant_id, interaction_id, rubric_id)
    WHERE kind = 'automated' AND state = 'active';
