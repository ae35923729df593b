-- Trusted feedback from the prediction log as projects rows. The rows are resolved in Python by
-- tagops.predlog.feedback, the code retraining runs (trust, one vote per key and text, conflicts by
-- trust then agreement, texts already in dataset.csv or holdout.csv dropped, the data contract), against
-- labeled_projects and holdout as built here; this table holds what joins training.
CREATE TABLE feedback_rows AS
SELECT
    CAST(NULL AS INTEGER) AS source_row,
    project_id(id) AS id,
    utc_time(created_on) AS created_on,
    title,
    description,
    tag
FROM src_feedback
ORDER BY id;
