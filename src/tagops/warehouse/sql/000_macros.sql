-- How a source's text becomes a typed value, defined once for every table that reads a source.
-- The runner sets the session's time zone to UTC, so a time without an offset is read as UTC.

-- A project id: digits, spaces around them ignored (" 5", "05" and "5" are the same id). NULL when the
-- text is not an integer; the raw tables' tests have refused such a row before any model casts it.
CREATE MACRO project_id(value) AS TRY_CAST(trim(value) AS BIGINT);

-- A creation time: ISO 8601, with or without an offset, as a time in UTC without a zone (as
-- tagops.data.validate reads it).
CREATE MACRO utc_time(value) AS timezone('UTC', TRY_CAST(trim(value) AS TIMESTAMPTZ));

-- Text as its file wrote it, with Windows line endings as "\n": projects.csv keeps "\r\n" inside quoted
-- fields where dataset.csv has "\n" (cleaning treats both as a space).
CREATE MACRO unix_newlines(value) AS replace(value, chr(13) || chr(10), chr(10));

-- A description: unix_newlines, and trailing whitespace dropped. projects.csv trimmed the end of each of
-- its lines, and so the end of its last column, the description, where dataset.csv kept the spaces: the
-- two agree only without them (cleaning ignores them too).
CREATE MACRO description_text(value) AS
    rtrim(unix_newlines(value), ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13));
