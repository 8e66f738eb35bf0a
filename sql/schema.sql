-- pg_syncbridge catalog. Loaded first (bootstrap) into schema syncbridge.
-- Tables whose names start with "_" are internal; users read them through the views in
-- views.sql. Configuration and sync state are registered with pg_extension_config_dump so
-- that pg_dump keeps them: losing the id map would make the next sync create duplicates.

-- One row per link: a local table bound to a remote collection.
CREATE TABLE _link (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    local_table       regclass NOT NULL,
    key_column        name NOT NULL,
    remote_base_url   text NOT NULL,
    remote_collection text NOT NULL,
    remote_key_field  text NOT NULL DEFAULT 'id',
    direction         text NOT NULL CHECK (direction IN ('outbound', 'inbound', 'both')),
    loop_guards       text[] NOT NULL,
    contention        text NOT NULL,
    schedule          text NOT NULL,
    track_columns     boolean NOT NULL,
    paused            boolean NOT NULL DEFAULT false,
    -- Transport and policy settings set with alter_link (checked by logic::link_spec).
    settings          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- Per-field rules (set_field): mapping, owner, watched, volatile, synced. A column with no
-- row here travels under its own name.
CREATE TABLE _field (
    link_id      bigint NOT NULL REFERENCES _link (id) ON DELETE CASCADE,
    column_name  name NOT NULL,
    remote_field text CHECK (remote_field <> ''),
    owner        text CHECK (owner IN ('local', 'remote')),
    watched      boolean NOT NULL DEFAULT false,
    volatile     boolean NOT NULL DEFAULT false,
    synced       boolean NOT NULL DEFAULT true,
    PRIMARY KEY (link_id, column_name)
);

-- Every field rule of every link: those set with set_field, and one for the column named by a
-- link's remote_id_column setting, which holds the remote's own id for a record and so is
-- neither sent nor received as a field (synced false), unless set_field says otherwise.
-- Capture, apply, delivery and the links view all read the rules from here.
CREATE VIEW _field_rule AS
SELECT f.link_id, f.column_name, f.remote_field, f.owner, f.watched, f.volatile, f.synced
FROM _field f
UNION ALL
SELECT l.id, (l.settings ->> 'remote_id_column')::name, NULL, NULL, false, false, false
FROM _link l
WHERE jsonb_typeof(l.settings -> 'remote_id_column') = 'string'
  AND EXISTS (SELECT FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = l.local_table AND a.attnum > 0 AND NOT a.attisdropped
                AND a.attname = l.settings ->> 'remote_id_column')
  AND NOT EXISTS (SELECT FROM _field f WHERE f.link_id = l.id AND f.column_name = l.settings ->> 'remote_id_column');

-- Record state and id map: per link and record, the pairing of local and remote keys, the
-- base snapshot of the last synced version (remote field names), fingerprints per direction.
CREATE TABLE _record (
    -- No foreign key: this table is written for every record that travels, and a key check
    -- per row costs more than the rest of the write. _link_deleted() cascades instead, and
    -- writers lock their link (FOR KEY SHARE) once per batch.
    link_id         bigint NOT NULL,
    -- Keys compare byte for byte (COLLATE "C"): a key has no alphabetical order, and the
    -- database's collation would make every index probe call strcoll.
    local_key       text COLLATE "C" NOT NULL,
    remote_key      text COLLATE "C",
    created_by      text NOT NULL CHECK (created_by IN ('local', 'remote')),
    base            jsonb,
    out_fingerprint text,
    out_status      text,
    out_at          timestamptz,
    in_fingerprint  text,
    in_status       text,
    in_at           timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Runtime loop detector: times (epoch seconds) of the round trips since the last user
    -- edit, and the quarantine it imposed (lifted by a user edit or syncbridge.release()).
    hop_times       bigint[] NOT NULL DEFAULT '{}',
    quarantined_at  timestamptz,
    quarantine_reason text,
    -- The remote modification time (remote_time_field, microseconds since the epoch) of the
    -- newest version a webhook applied: an older delivery arriving later is skipped.
    in_remote_us    bigint,
    -- The remote record's version as its last answer gave it (the ETag header), sent back in
    -- If-Match by a link whose before_update is if_match.
    etag            text,
    PRIMARY KEY (link_id, local_key)
-- Room on each page, so that the frequent updates of a record's state (which change no
-- indexed column) can be HOT and leave the indexes alone.
) WITH (fillfactor = 70);
CREATE UNIQUE INDEX _record_remote_key ON _record (link_id, remote_key) WHERE remote_key IS NOT NULL;

-- The records of a link paired with these remote keys: one probe of _record_remote_key per
-- key. (`remote_key = ANY (keys)` lets the planner scan the whole link through the primary
-- key instead while _record has no statistics yet, as during a first drain: 30 ms a batch
-- at 100,000 records, a quarter of the drain's time.) Inlined where it is called.
CREATE FUNCTION _records_by_remote_key(p_link bigint, p_keys text[]) RETURNS SETOF @extschema@._record
    LANGUAGE sql STABLE AS $$
    SELECT r.* FROM unnest(p_keys) AS k(k)
    CROSS JOIN LATERAL (SELECT * FROM @extschema@._record x WHERE x.link_id = p_link AND x.remote_key = k.k LIMIT 1) AS r
$$;
REVOKE ALL ON FUNCTION _records_by_remote_key(bigint, text[]) FROM PUBLIC;

-- Record state of dropped links (drop_link(..., keep_state => true), or a dropped table),
-- taken up again when a link of the same name is created on a table of the same name
-- (schema-qualified, as format('%I.%I') writes it).
CREATE TABLE _kept_record (
    link_name  text NOT NULL,
    table_name text NOT NULL,
    record     jsonb NOT NULL
);

-- The outbox: pending outbound changes, written by the capture triggers in the same
-- transaction as the edit ('upsert', 'delete'), and by inbound apply ('reflect': fields the
-- local write changed, sent back once; 'writeback': the new local id, for the remote). One row per statement and operation carries the keys of the rows
-- it touched; delivery reads each row's current state, so several edits of one record
-- coalesce. Only one index (no separate primary key): this table is on every write's path.
CREATE TABLE outbox (
    id          bigserial NOT NULL,
    link_id     bigint NOT NULL,
    op          text NOT NULL CHECK (op IN ('upsert', 'delete', 'reflect', 'writeback')),
    keys        text[] NOT NULL,
    origin      text,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    -- 'reflect': the remote fields to send back (what the local write added or changed).
    fields      text[]
);
CREATE INDEX outbox_link_id ON outbox (link_id, id);

-- One row per record and outcome (SPEC §1 "sync event").
CREATE TABLE _event (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    link_id     bigint NOT NULL,
    direction   text NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    local_key   text,
    remote_key  text,
    status      text NOT NULL CHECK (status IN ('delivered', 'ignored', 'blocked', 'failed', 'conflict', 'quarantined')),
    reason      text,
    attempt     integer,
    next_retry  timestamptz,
    fingerprint text,
    detail      jsonb
);
-- Events arrive in time order, so a BRIN index serves "the last hour" and pruning by age at a
-- fraction of a btree's cost on every insert.
CREATE INDEX _event_at ON _event USING brin (at);

SELECT pg_catalog.pg_extension_config_dump('_link', '');
SELECT pg_catalog.pg_extension_config_dump('_link_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('_field', '');
SELECT pg_catalog.pg_extension_config_dump('_record', '');
SELECT pg_catalog.pg_extension_config_dump('_kept_record', '');
SELECT pg_catalog.pg_extension_config_dump('outbox', '');
SELECT pg_catalog.pg_extension_config_dump('outbox_id_seq', '');

-- Nothing here is for PUBLIC; the capture triggers reach the outbox as SECURITY DEFINER.
REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;

-- One row per contended field of an inbound record: what the base, local and remote values
-- were, which side won and by which rule (SPEC §3).
CREATE TABLE _conflict (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    link_id    bigint NOT NULL,
    local_key  text,
    remote_key text,
    field      text NOT NULL,
    base       jsonb,
    local      jsonb,
    remote     jsonb,
    winner     text NOT NULL CHECK (winner IN ('local', 'remote')),
    rule       text NOT NULL
);
CREATE INDEX _conflict_link_at ON _conflict (link_id, at);
REVOKE ALL ON _conflict FROM PUBLIC;
