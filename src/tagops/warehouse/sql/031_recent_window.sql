-- The newest share of the resolved feedback (the retrain config's recent_fraction): the recent labelled
-- window, held out of training so the recent-window gate measures a challenger on labels it never saw.
CREATE TABLE recent_window AS
SELECT
    CAST(NULL AS INTEGER) AS source_row,
    project_id(id) AS id,
    utc_time(created_on) AS created_on,
    title,
    description,
    tag
FROM src_recent
ORDER BY id;
