-- What decided an automated rating (AutoQA); empty for ratings given by people.
ALTER TABLE evaluation.ratings ADD COLUMN explanation text NOT NULL DEFAULT '';
