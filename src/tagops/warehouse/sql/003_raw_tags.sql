-- tags.csv exactly as pulled: one tag per row, row N labelling row N of projects.csv.
CREATE TABLE raw_tags AS
SELECT CAST(source_row AS INTEGER) AS source_row, tag
FROM src_tags;
