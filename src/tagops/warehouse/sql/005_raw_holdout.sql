-- holdout.csv exactly as pulled: the projects every model is evaluated on and never trained on.
CREATE TABLE raw_holdout AS
SELECT CAST(source_row AS INTEGER) AS source_row, id, created_on, title, description, tag
FROM src_holdout;
