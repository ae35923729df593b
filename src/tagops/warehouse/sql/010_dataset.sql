-- dataset.csv typed: integer id, UTC time, text without its file's line-ending artefacts (000_macros.sql).
CREATE TABLE dataset AS
SELECT
    source_row,
    project_id(id) AS id,
    utc_time(created_on) AS created_on,
    unix_newlines(title) AS title,
    description_text(description) AS description,
    tag
FROM raw_dataset
ORDER BY source_row;
