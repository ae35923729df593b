-- projects.csv exactly as pulled: every field as text, and its data row number (1 = the first row after
-- the header; a description that spans several lines is still one row). tags.csv aligns with it by
-- this number, since tags.csv has no id column.
CREATE TABLE raw_projects AS
SELECT CAST(source_row AS INTEGER) AS source_row, id, created_on, title, description
FROM src_projects;
