-- holdout.csv typed, as dataset.csv is.
CREATE TABLE holdout AS
SELECT
    source_row,
    project_id(id) AS id,
    utc_time(created_on) AS created_on,
    unix_newlines(title) AS title,
    description_text(description) AS description,
    tag
FROM raw_holdout
ORDER BY source_row;
