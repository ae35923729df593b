-- dataset.csv exactly as pulled: the labelled projects training has always read, kept as a checked
-- source (labeled_projects must equal it row for row).
CREATE TABLE raw_dataset AS
SELECT CAST(source_row AS INTEGER) AS source_row, id, created_on, title, description, tag
FROM src_dataset;
