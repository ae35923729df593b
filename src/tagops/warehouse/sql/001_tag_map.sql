-- The tags tags.csv may hold and the product's tag for each: the four labels map to themselves and the
-- finer topics of tags.csv collapse into `other` (the label guide's rule).
CREATE TABLE tag_map AS
SELECT fine_tag, tag
FROM (
    VALUES
        ('computer-vision', 'computer-vision'),
        ('mlops', 'mlops'),
        ('natural-language-processing', 'natural-language-processing'),
        ('other', 'other'),
        ('reinforcement-learning', 'other'),
        ('graph-learning', 'other'),
        ('time-series', 'other')
) AS pairs (fine_tag, tag);
