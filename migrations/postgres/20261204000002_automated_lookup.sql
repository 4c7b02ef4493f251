-- AutoQA looks up the automated evaluation of an interaction under a rubric before each
-- scoring: an index that answers exactly that, so no plan walks a wider one.
CREATE INDEX evaluations_automated ON evaluation.evaluations (tenant_id, interaction_id, rubric_id)
    WHERE kind = 'automated' AND state = 'active';
