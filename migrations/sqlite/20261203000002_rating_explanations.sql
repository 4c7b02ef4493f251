-- What decided an automated rating (AutoQA); empty for ratings given by people.
ALTER TABLE ratings ADD COLUMN explanation TEXT NOT NULL DEFAULT '';
