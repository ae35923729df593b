-- projects.csv labelled by tags.csv, joined by position (source_row): the finer tag as tags.csv has it
-- (fine_tag) beside the product's tag, which collapses the finer topics into `other` (tag_map).
CREATE TABLE labeled_projects AS
SELECT
    p.source_row,
    project_id(p.id) AS id,
    utc_time(p.created_on) AS created_on,
    unix_newlines(p.title) AS title,
    description_text(p.description) AS description,
    m.tag,
    t.tag AS fine_tag
FROM raw_projects AS p
INNER JOIN raw_tags AS t ON t.source_row = p.source_row
INNER JOIN tag_map AS m ON m.fine_tag = t.tag
ORDER BY p.source_row;
