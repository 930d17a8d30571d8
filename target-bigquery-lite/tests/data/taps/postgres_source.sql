-- The PostgreSQL 15 database the recorded tap fixtures were read from
-- (scripts/record-tap-fixtures.py loads it into a throw-away cluster; see its --help).
-- Every common type, several rows each, a NULL in every nullable column, and the values
-- that break naive targets: integers beyond 2^53, 38-digit decimals, NaN and infinities,
-- JSON scalars, arrays with NULL elements, 2-D arrays, times with offsets, odd names.
SET TimeZone = 'UTC';

CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'très bien');

CREATE TABLE typed (
  id integer PRIMARY KEY,
  updated_at timestamptz NOT NULL,
  c_bigint bigint,
  c_integer integer,
  c_smallint smallint,
  c_numeric numeric(38, 9),
  c_numeric_plain numeric,
  c_double double precision,
  c_real real,
  c_boolean boolean,
  c_text text,
  c_varchar varchar(40),
  c_char char(8),
  c_timestamptz timestamptz,
  c_timestamp timestamp,
  c_date date,
  c_time time,
  c_timetz timetz,
  c_interval interval,
  c_jsonb jsonb,
  c_json json,
  c_text_array text[],
  c_int_array integer[],
  c_uuid uuid,
  c_bytea bytea,
  c_inet inet,
  c_cidr cidr,
  c_money money,
  c_enum mood
);

INSERT INTO typed VALUES
(1, '2024-01-01 00:00:01+00', 42, 7, 3, 5000000000000.123456789, 3.14159265358979323846264338327950288,
 0.1, 0.5, true, 'plain text', 'varchar text', 'abc', '2024-03-10 12:34:56.789012+00',
 '2024-03-10 12:34:56.789012', '2024-03-10', '12:34:56.789', '12:34:56+05:30',
 '1 year 2 months 3 days 04:05:06.789', '{"a": {"b": [1, 2.50, "x", null, true]}, "n": 12345678901234567890}',
 '{"z": 1, "a": [true, null]}', '{alpha,NULL,"two words"}', '{1,NULL,3}',
 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\xdeadbeef00', '192.168.0.1/24', '10.0.0.0/8', 1234.56, 'happy'),
(2, '2024-01-01 00:00:02+00', 9223372036854775807, 2147483647, 32767,
 99999999999999999999999999999.999999999, 123456789012345678901234567890.123456789012345678901234567890,
 1.7976931348623157e308, 3.4028235e38, false, 'Ελληνικά · 中文 · العربية · עברית · 日本語 · 🦆🚀 · é (e + U+0301)',
 'Ünïcödé', 'ñ', '9999-12-31 23:59:59.999999+00', '9999-12-31 23:59:59.999999', '9999-12-31',
 '23:59:59.999999', '23:59:59-11:00', '-1 days -00:00:01', '[1, "two", {"three": 3}, [4]]',
 '[]', '{"ελληνικά","🦆",""}', '{2147483647,-2147483648}', '00000000-0000-0000-0000-000000000000',
 '\x', '::1', '2001:db8::/32', -92233720368547758.08, 'très bien'),
(3, '2024-01-01 00:00:03+00', -9223372036854775808, -2147483648, -32768,
 -99999999999999999999999999999.999999999, -0.000000000000000000000000000000000001,
 -2.2250738585072014e-308, -1.17549435e-38, true, E'quotes '' " and backslash \\ and\nnewline\ttab\r\nCRLF',
 'O''Reilly "quoted"', 'x"y\z', '0001-01-01 00:00:00+00', '0001-01-01 00:00:00', '0001-01-01',
 '00:00:00', '00:00:00+14', '0 seconds', '"a bare JSON string"', '"json string"',
 '{"back\\slash","quo\"te","comma,inside","{braces}",NULL}', '{}', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
 '\x00ff', '255.255.255.255', '0.0.0.0/0', 0, 'sad'),
(4, '2024-01-01 00:00:04+00', 9007199254740993, 0, 0, 0.000000001, 0, 0, 0, false, '', '', '',
 '2024-06-30 23:59:59.5-07:00', '2024-06-30 23:59:59.5', '2000-02-29', '08:00:00', '08:00:00-08:00',
 '100 years', '42', '42.0', '{NULL}', '{0}', '123e4567-e89b-12d3-a456-426614174000', '\x5c6e',
 '10.1.2.3', '10.1.2.0/24', 0.01, 'ok'),
(5, '2024-01-01 00:00:05+00', -9007199254740993, -1, -1, -0.000000001, 1e-20,
 -0.0, 1e-45, true, 'combining: é ñ', 'tab	inside', '        ', '1970-01-01 00:00:00+00',
 '1970-01-01 00:00:00', '1970-01-01', '00:00:00.000001', '00:00:01+00', '00:00:00.000001',
 'true', 'false', NULL, NULL, 'b1c2d3e4-0000-4000-8000-000000000001', '\x0a0d09', '127.0.0.1',
 '127.0.0.0/8', -0.01, NULL),
(6, '2024-01-01 00:00:06+00', 9007199254740992, 1, 1, 12345678901234567890.123456789, 12345678901234567890.123456789,
 123456789.123456789, 1234567.875, NULL, 'null', 'NULL', 'null', '2024-02-29 00:00:00.000001+00',
 '2024-02-29 00:00:00.000001', '2024-02-29', '12:00:00', '12:00:00+01', '1000 years 6 mons', 'null', 'null',
 '{}', '{5,6}', NULL, NULL, NULL, NULL, NULL, NULL),
(7, '2024-01-01 00:00:07+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);

-- A 2-D integer array: Postgres' column type is integer[] whatever the dimensions, so taps see
-- the same column type for 1-D and 2-D values; kept apart so the 1-D columns above still load.
CREATE TABLE int_matrix (
  id integer PRIMARY KEY,
  c_int_matrix integer[][],
  c_text_matrix text[][]
);
INSERT INTO int_matrix VALUES
(1, '{{1,2},{3,4}}', '{{a,b},{c,NULL}}'),
(2, '{{-1,0,1}}', '{{"x y"}}'),
(3, '{}', '{}'),
(4, NULL, NULL);

-- Times with fractional seconds and offsets (pipelinewise-tap-postgres 1.8.4 crashes on a
-- fractional timetz, so these are apart from the typed table).
CREATE TABLE fractional_times (
  id integer PRIMARY KEY,
  c_time time,
  c_timetz timetz
);
INSERT INTO fractional_times VALUES
(1, '12:34:56.789', '12:34:56.789+05:30'),
(2, '23:59:59.999999', '23:59:59.999999-11:00'),
(3, '00:00:00.000001', '00:00:00.000001+00'),
(4, '08:00:00', '20:00:00.5-04:00'),
(5, NULL, NULL);

-- Values of double precision and numeric that JSON has no number for.
CREATE TABLE special_floats (
  id integer PRIMARY KEY,
  c_double double precision,
  c_real real
);
INSERT INTO special_floats VALUES
(1, 'NaN', 'NaN'),
(2, 'Infinity', 'Infinity'),
(3, '-Infinity', '-Infinity'),
(4, 1.5, -2.5),
(5, NULL, NULL);

CREATE TABLE special_numerics (
  id integer PRIMARY KEY,
  c_numeric numeric(38, 9),
  c_numeric_plain numeric
);
INSERT INTO special_numerics VALUES
(1, 1.5, 1.5),
(2, 'NaN', 'NaN'),
(3, 2.5, 'Infinity'),
(4, NULL, '-Infinity'),
(5, NULL, NULL);

-- Odd column names and a composite primary key.
CREATE TABLE odd_columns (
  "Region Code" text NOT NULL,
  "Order No" integer NOT NULL,
  "CamelCase" text,
  "select" text,
  "from" integer,
  "order" boolean,
  "with-dash" text,
  "имя" text,
  "1col" integer,
  "naïve" text,
  "UPPER" text,
  "lower" text,
  PRIMARY KEY ("Region Code", "Order No")
);
INSERT INTO odd_columns VALUES
('eu west', 1, 'Camel', 'sel', 10, true, 'dash', 'Иван', 1, 'café', 'U', 'l'),
('eu west', 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
('us-east', 1, 'other', 'SELECT * FROM x; --', -1, false, '-', 'Ωμέγα', 0, '', 'UP', 'low');

-- 2,000 numeric(38,9) values for an exact sum: integer parts of up to 20 digits and all
-- nine decimals, of both signs, so a double (about 16 digits) cannot hold most of them.
CREATE TABLE decimals (
  id integer PRIMARY KEY,
  amount numeric(38, 9) NOT NULL,
  small numeric(38, 9)
);
INSERT INTO decimals
SELECT i,
       ((CASE WHEN i % 3 = 0 THEN -1 ELSE 1 END)
        * (5000000000000 + i * 7919)::numeric(38, 9)
        + ((i * 104729) % 1000000000)::numeric / 1000000000
        + CASE WHEN i % 97 = 0 THEN 99999999999999999999::numeric ELSE 0 END)::numeric(38, 9),
       CASE WHEN i % 10 = 0 THEN NULL ELSE (i % 1000)::numeric / 1000000000 END
FROM generate_series(1, 2000) AS i;
