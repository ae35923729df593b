-- What a model trains on: the labelled projects and the trusted feedback rows (origin says which).
CREATE TABLE training_set AS
SELECT source_row, id, created_on, title, description, tag, 'projects' AS origin
FROM labeled_projects
UNION ALL
SELECT source_row, id, created_on, title, description, tag, 'feedback' AS origin
FROM feedback_rows
ORDER BY id;
