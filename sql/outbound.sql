-- Outbound delivery state, written and read by the background worker (src/outbound).
--
-- The outbox (schema.sql) is the capture side's append-only queue. The worker moves its
-- entries into _pending, one row per record: several edits of a record coalesce there, its
-- attempts, backoff and dead-letter state live there, and at most one delivery per record is
-- in flight, which keeps the order per record.

CREATE TABLE _pending (
    link_id      bigint NOT NULL,  -- no foreign key, like _record (see _link_deleted)
    local_key    text COLLATE "C" NOT NULL,  -- byte for byte, as in _record
    -- Newest outbox id merged in: an edit made while a delivery is in flight changes it, and
    -- the record is then sent again with its newer state.
    seq          bigint NOT NULL,
    -- NULL: the whole record (or its deletion); otherwise only these remote fields ('reflect').
    fields       text[],
    -- The remote is to learn the local id (local_id_field).
    writeback    boolean NOT NULL DEFAULT false,
    -- A user edit is among the merged changes (not only link writes): the loop detector
    -- starts counting afresh.
    user_edit    boolean NOT NULL DEFAULT false,
    enqueued_at  timestamptz NOT NULL,
    attempt      integer NOT NULL DEFAULT 0,
    next_attempt timestamptz NOT NULL DEFAULT now(),
    in_flight    boolean NOT NULL DEFAULT false,
    -- Dead-lettered: attempts used up or refused by the remote; syncbridge.retry_failed()
    -- (or a new edit of the record) queues it again.
    failed       boolean NOT NULL DEFAULT false,
    last_error   text,
    -- When a create of this record first went out while its remote id was unknown (set in
    -- the claim's transaction, committed before the request leaves; see _claim). Until
    -- the id is known, every later create attempt looks the record up first, whatever
    -- happened meanwhile: a lost or unreadable answer, an edit (which starts the attempts
    -- again), a crash, a dead letter and retry_failed.
    create_sent_at timestamptz,
    -- Attempts made while the link was unavailable (an outage, not this record's failure):
    -- they do not count against max_attempts (see logic::outage).
    spared       integer NOT NULL DEFAULT 0,
    -- When its last attempt failed: a success of the link after it tells a record's own
    -- failure from an outage.
    last_failed_at timestamptz,
    -- The version (seq) an update was last held back for while the remote's changed record
    -- was applied first (before_update read or if_match): that version goes without being
    -- held back again, so a remote value the local column cannot hold as the remote spells
    -- it does not hold the update back forever.
    held_seq     bigint,
    PRIMARY KEY (link_id, local_key)
) WITH (fillfactor = 50);
-- in_flight stays out of the index (and its predicate), so marking a record in flight and
-- back is a HOT update with room on the page.
CREATE INDEX _pending_due ON _pending (link_id, seq) WHERE NOT failed;

-- Per-link worker state: the inbound pull cursor and the last outcomes.
CREATE TABLE _link_state (
    link_id         bigint PRIMARY KEY REFERENCES _link (id) ON DELETE CASCADE,
    pull_cursor     text,
    last_pull_at    timestamptz,
    last_success_at timestamptz,
    last_error      text,
    last_error_at   timestamptz,
    -- Since when the remote answers none of the link's requests (connection errors,
    -- timeouts, 5xx, 429): the link probes it, one record at a time, until it answers.
    unavailable_since timestamptz
);

-- Values for auth headers. Only superusers can read it (nothing is granted); values never
-- appear in events, logs or pg_dump output (the table is not dumped).
CREATE TABLE _secret (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON _pending, _link_state, _secret FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('_pending', '');

-- The cascade of a dropped link to its per-record tables (which carry no foreign key).
CREATE FUNCTION _link_deleted() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM @extschema@._record WHERE link_id = OLD.id;
    DELETE FROM @extschema@._pending WHERE link_id = OLD.id;
    DELETE FROM @extschema@._inbound_retry WHERE link_id = OLD.id;
    RETURN OLD;
END
$$;
CREATE TRIGGER _link_deleted AFTER DELETE ON _link FOR EACH ROW EXECUTE FUNCTION _link_deleted();
SELECT pg_catalog.pg_extension_config_dump('_link_state', '');

-- The record state of one record: an index probe per call, whatever the planner thinks of
-- _record's size. A plain join let it hash every record of the link for each claim (the
-- statistics of a table that grows by a thousand rows a batch are always behind), which made
-- a long drain slower with every batch. (SQL, so that it is inlined as a LATERAL subquery;
-- LIMIT 1 keeps it from being pulled up into a join again.)
CREATE FUNCTION _record_of(p_link bigint, p_key text) RETURNS SETOF @extschema@._record
    LANGUAGE sql STABLE AS $$
    SELECT * FROM @extschema@._record r WHERE r.link_id = p_link AND r.local_key = p_key LIMIT 1
$$;

-- Takes up to p_limit records that are due: first those already pending (retries, records
-- edited while in flight), oldest change first; then, with the room left, records fresh from
-- the outbox, which are inserted into _pending already in flight (one write each: this is
-- the path of every change). Outbox entries of records already pending are merged into their
-- row instead. Marks what it takes in flight and counts the attempt, committed before
-- anything is sent: after a crash the worker knows a create may have reached the remote.
-- Returns the records with their id-map state.
CREATE FUNCTION _claim(p_link bigint, p_limit integer)
    RETURNS TABLE (local_key text, seq bigint, fields text[], writeback boolean, attempt integer,
                   remote_key text, out_fingerprint text, out_status text, user_edit boolean,
                   came_back boolean, hop_times bigint[], quarantined_at timestamptz,
                   create_sent_before boolean, base jsonb, etag text, held boolean)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    room integer;
BEGIN
    -- What a foreign key would do per row, once: a concurrent drop_link waits for us.
    PERFORM FROM @extschema@._link WHERE id = p_link FOR KEY SHARE;
    IF NOT FOUND THEN
        RETURN;
    END IF;

    -- By ctid: whatever the planner thinks of _pending's size (it changes fast), this is a
    -- TID scan, not a join.
    -- A record without a remote id goes out as a create: create_sent_at is set here, in the
    -- same write that claims it (committed before the request leaves), and kept until the
    -- pending entry is done. create_sent_before says an earlier create may have reached the
    -- remote (set by an earlier transaction, whose now() is earlier): look it up first.
    RETURN QUERY
    WITH taken AS (
        UPDATE @extschema@._pending p SET in_flight = true, attempt = p.attempt + 1,
            create_sent_at = CASE WHEN p.create_sent_at IS NOT NULL THEN p.create_sent_at
                                  WHEN NOT EXISTS (SELECT FROM @extschema@._record_of(p_link, p.local_key) x
                                                   WHERE x.remote_key IS NOT NULL) THEN now() END
        WHERE p.ctid = ANY (ARRAY(
            SELECT d.ctid FROM @extschema@._pending d
            WHERE d.link_id = p_link AND NOT d.failed AND NOT d.in_flight AND d.next_attempt <= now()
            ORDER BY d.seq LIMIT p_limit FOR UPDATE SKIP LOCKED))
        RETURNING p.local_key, p.seq, p.fields, p.writeback, p.attempt, p.user_edit, p.create_sent_at,
                  p.held_seq IS NOT DISTINCT FROM p.seq AS held)
    SELECT t.local_key, t.seq, t.fields, t.writeback, t.attempt, r.remote_key, r.out_fingerprint, r.out_status,
           t.user_edit, coalesce(r.in_at > r.out_at, false), coalesce(r.hop_times, '{}'), r.quarantined_at,
           t.create_sent_at < now(), r.base, r.etag, t.held
    FROM taken t LEFT JOIN LATERAL @extschema@._record_of(p_link, t.local_key) r ON true
    ORDER BY t.seq;
    GET DIAGNOSTICS room = ROW_COUNT;
    room := p_limit - room;
    IF room <= 0 THEN
        RETURN;
    END IF;

    RETURN QUERY
    WITH moved AS (
        DELETE FROM @extschema@.outbox o
        WHERE o.link_id = p_link AND o.id IN (
            -- Entries in order until they hold about `room` keys (an entry holds up to 1,000).
            SELECT c.id FROM (
                SELECT i.id, sum(cardinality(i.keys)) OVER (ORDER BY i.id) - cardinality(i.keys) AS before
                FROM (SELECT j.id, j.keys FROM @extschema@.outbox j WHERE j.link_id = p_link
                      ORDER BY j.id LIMIT room FOR UPDATE SKIP LOCKED) i) c
            WHERE c.before < room)
        RETURNING o.id, o.op, o.keys, o.fields, o.origin, o.enqueued_at),
    per_key AS (
        SELECT k AS key, max(m.id) AS newest, min(m.enqueued_at) AS first_at,
               bool_or(m.op IN ('upsert', 'delete')) AS whole,
               bool_or(m.op = 'writeback') AS wants_id,
               bool_or(m.origin IS NULL) AS by_user,
               array_agg(DISTINCT f) FILTER (WHERE f IS NOT NULL) AS some_fields
        FROM moved m CROSS JOIN LATERAL unnest(m.keys) k LEFT JOIN LATERAL unnest(m.fields) f ON true
        GROUP BY k),
    ranked AS (
        SELECT pk.*, row_number() OVER (ORDER BY pk.newest) <= room AS take FROM per_key pk),
    merged AS (
        INSERT INTO @extschema@._pending AS p (link_id, local_key, seq, fields, writeback, user_edit, enqueued_at,
                                               in_flight, attempt, create_sent_at)
        SELECT p_link, key, newest, CASE WHEN whole THEN NULL ELSE coalesce(some_fields, '{}') END, wants_id, by_user,
               first_at, take, take::int,
               CASE WHEN take AND NOT EXISTS (SELECT FROM @extschema@._record_of(p_link, key) x
                                              WHERE x.remote_key IS NOT NULL) THEN now() END
        FROM ranked
        ON CONFLICT ON CONSTRAINT _pending_pkey DO UPDATE SET
            seq = EXCLUDED.seq,
            fields = CASE WHEN p.fields IS NULL OR EXCLUDED.fields IS NULL THEN NULL
                          ELSE ARRAY(SELECT DISTINCT x FROM unnest(p.fields || EXCLUDED.fields) x ORDER BY x) END,
            writeback = p.writeback OR EXCLUDED.writeback,
            user_edit = p.user_edit OR EXCLUDED.user_edit,
            attempt = CASE WHEN p.failed THEN 0 ELSE p.attempt END,
            spared = CASE WHEN p.failed THEN 0 ELSE p.spared END,
            next_attempt = CASE WHEN p.failed THEN now() ELSE p.next_attempt END,
            failed = false
        -- xmax = 0: a row this statement inserted (not one it merged into).
        RETURNING p.local_key, p.seq, p.fields, p.writeback, p.attempt, p.user_edit, p.in_flight AND p.xmax = 0 AS fresh)
    SELECT t.local_key, t.seq, t.fields, t.writeback, t.attempt, r.remote_key, r.out_fingerprint, r.out_status,
           t.user_edit, coalesce(r.in_at > r.out_at, false), coalesce(r.hop_times, '{}'), r.quarantined_at,
           false, r.base, r.etag, false
    FROM merged t LEFT JOIN LATERAL @extschema@._record_of(p_link, t.local_key) r ON true
    WHERE t.fresh
    ORDER BY t.seq;
END
$$;

-- Remote records that carry the same local id, as a lookup before a create ('lookup') or an
-- inbound apply, pull or apply_inbound ('inbound'), saw them: one row per local key and
-- remote record, shown by the duplicates view. Kept until the link is dropped, or a lookup
-- finds one record for the local key again.
CREATE TABLE _duplicate (
    link_id    bigint NOT NULL REFERENCES _link (id) ON DELETE CASCADE,
    local_key  text COLLATE "C" NOT NULL,
    remote_key text COLLATE "C" NOT NULL,
    seen_by    text NOT NULL CHECK (seen_by IN ('lookup', 'inbound')),
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (link_id, local_key, remote_key)
);
REVOKE ALL ON _duplicate FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('_duplicate', '');

-- Records what a lookup, a pull or a create answer saw: (local key, remote key) pairs; and
-- (_duplicates_resolved) that the lookup of these local keys found one record again.
CREATE FUNCTION _duplicates_seen(p_link bigint, p_keys text[], p_remote_keys text[], p_seen_by text) RETURNS void
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO @extschema@._duplicate AS d (link_id, local_key, remote_key, seen_by)
    SELECT p_link, x.k, x.rk, p_seen_by FROM unnest(p_keys, p_remote_keys) AS x(k, rk)
    ON CONFLICT ON CONSTRAINT _duplicate_pkey DO UPDATE SET last_seen = now(), seen_by = EXCLUDED.seen_by
$$;

CREATE FUNCTION _duplicates_resolved(p_link bigint, p_keys text[]) RETURNS void
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM @extschema@._duplicate d WHERE d.link_id = p_link AND d.local_key = ANY (p_keys)
$$;

-- Records the outcome of a batch, one array element per record (see src/outbound/settle.rs):
-- id map and fingerprints, events, and the _pending rows (done, retry later, dead-lettered,
-- or changed meanwhile and due again). Arrays, not one JSON document: this runs for every
-- batch the worker delivers.
CREATE FUNCTION _settle(p_link bigint, p_keys text[], p_seqs bigint[], p_status text[], p_reasons text[],
                        p_attempts integer[], p_next_retry timestamptz[], p_remote_keys text[],
                        p_fingerprints text[], p_bases text[], p_gone boolean[],
                        p_methods text[], p_http_status integer[], p_actions text[],
                        p_hops text[], p_spared boolean[] DEFAULT NULL, p_etags text[] DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM FROM @extschema@._link WHERE id = p_link FOR KEY SHARE;
    IF NOT FOUND THEN
        RETURN;  -- dropped meanwhile: nothing left to record
    END IF;
    INSERT INTO @extschema@._record AS r (link_id, local_key, remote_key, created_by, base, out_fingerprint,
                                          out_status, out_at, hop_times, quarantined_at, quarantine_reason, etag)
    SELECT p_link, x.k, x.rk, 'local', x.b::jsonb, x.fp, x.st, now(), coalesce(x.hops::bigint[], '{}'),
           CASE WHEN x.st = 'quarantined' THEN now() END, CASE WHEN x.st = 'quarantined' THEN x.reason END, x.etag
    FROM unnest(p_keys, p_remote_keys, p_status, p_fingerprints, p_bases, p_gone, p_hops, p_reasons,
                coalesce(p_etags, array_fill(NULL::text, ARRAY[cardinality(p_keys)])))
        AS x(k, rk, st, fp, b, gone, hops, reason, etag)
    WHERE NOT x.gone
    ON CONFLICT (link_id, local_key) DO UPDATE SET
        remote_key = coalesce(EXCLUDED.remote_key, r.remote_key),
        -- A delivery's base holds the fields it carried (all of them for a create or a whole
        -- update): they go over the base, which may have moved since the claim.
        base = CASE WHEN EXCLUDED.base IS NULL THEN r.base WHEN r.base IS NULL THEN EXCLUDED.base
                    ELSE r.base || EXCLUDED.base END,
        etag = coalesce(EXCLUDED.etag, r.etag),
        out_fingerprint = coalesce(EXCLUDED.out_fingerprint, r.out_fingerprint),
        -- A delivery changed the remote record: the version last received is no longer what
        -- the remote holds, and the same version coming back (a remote user undoing our
        -- change) is a change, not a repeat for the fingerprint guard to drop.
        in_fingerprint = CASE WHEN EXCLUDED.out_status = 'delivered' THEN NULL ELSE r.in_fingerprint END,
        out_status = EXCLUDED.out_status,
        -- out_at is the last time something reached the remote: it tells the loop detector
        -- whether an inbound write came after it.
        out_at = CASE WHEN EXCLUDED.out_status = 'delivered' THEN EXCLUDED.out_at ELSE r.out_at END,
        hop_times = CASE WHEN EXCLUDED.out_status IN ('delivered', 'quarantined') THEN EXCLUDED.hop_times ELSE r.hop_times END,
        quarantined_at = CASE EXCLUDED.out_status WHEN 'quarantined' THEN coalesce(r.quarantined_at, now())
                                                  WHEN 'delivered' THEN NULL ELSE r.quarantined_at END,
        quarantine_reason = CASE EXCLUDED.out_status WHEN 'quarantined' THEN coalesce(r.quarantine_reason, EXCLUDED.quarantine_reason)
                                                     WHEN 'delivered' THEN NULL ELSE r.quarantine_reason END,
        updated_at = now();

    DELETE FROM @extschema@._record r
    USING unnest(p_keys, p_gone) AS x(k, gone)
    WHERE r.link_id = p_link AND r.local_key = x.k AND x.gone;

    INSERT INTO @extschema@._event (link_id, direction, local_key, remote_key, status, reason, attempt, next_retry, fingerprint, detail)
    SELECT p_link, 'outbound', x.k, x.rk, x.st, x.reason, x.attempt, x.next_retry, x.fp,
           jsonb_strip_nulls(jsonb_build_object('method', x.method, 'http_status', x.http, 'action', x.action))
    FROM unnest(p_keys, p_remote_keys, p_status, p_reasons, p_attempts, p_next_retry, p_fingerprints,
                p_methods, p_http_status, p_actions)
        AS x(k, rk, st, reason, attempt, next_retry, fp, method, http, action);

    -- Finished and not edited meanwhile: done. (A spared record that did not fail is an update
    -- held back while the remote's version was applied first: it goes again.)
    DELETE FROM @extschema@._pending p
    USING unnest(p_keys, p_seqs, p_status, coalesce(p_spared, array_fill(false, ARRAY[cardinality(p_keys)])))
        AS x(k, seq, st, spared)
    WHERE p.link_id = p_link AND p.local_key = x.k AND p.seq = x.seq AND x.st <> 'failed' AND NOT x.spared;

    -- Failed (to be retried, or dead-lettered), or edited meanwhile (due again now).
    UPDATE @extschema@._pending p SET
        in_flight = false,
        failed = x.st = 'failed' AND x.next_retry IS NULL AND p.seq = x.seq,
        attempt = CASE WHEN p.seq <> x.seq THEN 0 WHEN x.spared AND x.st <> 'failed' THEN p.attempt - 1
                       ELSE p.attempt END,
        spared = CASE WHEN p.seq <> x.seq THEN 0 ELSE p.spared + (x.spared AND x.st = 'failed')::int END,
        held_seq = CASE WHEN x.spared AND x.st <> 'failed' THEN x.seq ELSE p.held_seq END,
        last_failed_at = CASE WHEN x.st = 'failed' THEN now() ELSE p.last_failed_at END,
        next_attempt = coalesce(x.next_retry, now()),
        last_error = CASE WHEN x.st = 'failed' THEN x.reason END
    FROM unnest(p_keys, p_seqs, p_status, p_reasons, p_next_retry,
                coalesce(p_spared, array_fill(false, ARRAY[cardinality(p_keys)])))
        AS x(k, seq, st, reason, next_retry, spared)
    WHERE p.link_id = p_link AND p.local_key = x.k;
END
$$;

-- A link's health as the worker sees it (link_status shows it): an error, a success (any
-- delivery got through; the error is then history and leaves last_error), a pull applied
-- with the cursor it reached (also a success), and an outage: the remote answered none of
-- the link's requests (connection errors, timeouts, 5xx, 429). An outage ends when the remote
-- answers again (_link_available); the records held back for it are then due at once.
CREATE FUNCTION _link_failed(p_link bigint, p_error text) RETURNS void
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO @extschema@._link_state AS s (link_id, last_error, last_error_at) VALUES (p_link, p_error, now())
    ON CONFLICT (link_id) DO UPDATE SET last_error = EXCLUDED.last_error, last_error_at = now()
$$;

-- Returns since when the link is unavailable.
CREATE FUNCTION _link_unavailable(p_link bigint, p_error text) RETURNS timestamptz
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO @extschema@._link_state AS s (link_id, last_error, last_error_at, unavailable_since)
    VALUES (p_link, p_error, now(), now())
    ON CONFLICT (link_id) DO UPDATE SET last_error = EXCLUDED.last_error, last_error_at = now(),
        unavailable_since = coalesce(s.unavailable_since, now())
    RETURNING unavailable_since
$$;

CREATE FUNCTION _link_available(p_link bigint) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE @extschema@._link_state SET unavailable_since = NULL
    WHERE link_id = p_link AND unavailable_since IS NOT NULL;
    IF FOUND THEN
        -- What waited for the remote goes now (records of their own failures keep their time).
        UPDATE @extschema@._pending SET next_attempt = now()
        WHERE link_id = p_link AND NOT failed AND NOT in_flight AND spared > 0 AND next_attempt > now();
    END IF;
END
$$;

CREATE FUNCTION _link_succeeded(p_link bigint) RETURNS void
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT @extschema@._link_available(p_link);
    INSERT INTO @extschema@._link_state AS s (link_id, last_success_at) VALUES (p_link, now())
    ON CONFLICT (link_id) DO UPDATE SET last_success_at = now(), last_error = NULL
$$;

CREATE FUNCTION _link_pulled(p_link bigint, p_cursor text) RETURNS void
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO @extschema@._link_state AS s (link_id, pull_cursor, last_pull_at, last_success_at)
    VALUES (p_link, p_cursor, now(), now())
    ON CONFLICT (link_id) DO UPDATE SET pull_cursor = EXCLUDED.pull_cursor, last_pull_at = now(), last_success_at = now(),
        -- The sends' outage, if any, is still the current error.
        last_error = CASE WHEN s.unavailable_since IS NULL THEN NULL ELSE s.last_error END
$$;

REVOKE ALL ON FUNCTION _link_failed(bigint, text), _link_unavailable(bigint, text), _link_available(bigint),
    _link_succeeded(bigint), _link_pulled(bigint, text) FROM PUBLIC;

-- After a restart nothing is in flight: deliveries cut off by a crash are due again (their
-- attempt was counted, and a create's create_sent_at was committed before it went out, so it
-- is looked up before it is repeated).
CREATE FUNCTION _recover() RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    WITH r AS (UPDATE @extschema@._pending SET in_flight = false, next_attempt = now() WHERE in_flight RETURNING 1)
    SELECT count(*) FROM r
$$;

REVOKE ALL ON FUNCTION _duplicates_seen(bigint, text[], text[], text),
    _duplicates_resolved(bigint, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION _record_of(bigint, text), _claim(bigint, integer), _settle(bigint, text[], bigint[], text[], text[], integer[], timestamptz[], text[], text[], text[], boolean[], text[], integer[], text[], text[], boolean[], text[]), _recover() FROM PUBLIC;

-- Stores a value for an auth header (a link names it with alter_link's auth_secret).
CREATE FUNCTION set_secret(name text, value text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'a secret needs a name' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'SELECT syncbridge.set_secret(''crm_token'', ''Bearer ...'');';
    END IF;
    -- A secret travels as a header value: a line break would end the header and start
    -- another (text cannot hold NUL); other control characters make no valid header either.
    IF value ~ '[\x01-\x08\x0a-\x1f\x7f]' THEN
        RAISE EXCEPTION 'the value of secret "%" contains a line break or another control character', name
            USING ERRCODE = 'invalid_parameter_value',
            HINT = 'A secret is sent as an HTTP header value: give it on one line, without CR, LF or other control characters.';
    END IF;
    IF value IS NULL THEN
        DELETE FROM @extschema@._secret s WHERE s.name = set_secret.name;
    ELSE
        INSERT INTO @extschema@._secret AS s (name, value) VALUES (set_secret.name, set_secret.value)
        ON CONFLICT ON CONSTRAINT _secret_pkey DO UPDATE SET value = EXCLUDED.value, updated_at = now();
    END IF;
END
$$;

-- The link of this name, or the error every function gives for an unknown one.
CREATE FUNCTION _link_named(p_name text) RETURNS _link
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    l @extschema@._link;
BEGIN
    SELECT * INTO l FROM @extschema@._link WHERE name = p_name;
    IF l.id IS NULL THEN
        RAISE EXCEPTION 'link "%" does not exist', p_name USING ERRCODE = 'undefined_object',
            HINT = 'See SELECT name FROM syncbridge.links for the links there are.';
    END IF;
    RETURN l;
END
$$;
REVOKE ALL ON FUNCTION _link_named(text) FROM PUBLIC;

-- Queues the dead-lettered records of a link again; returns how many.
CREATE FUNCTION retry_failed(link text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    l bigint := (@extschema@._link_named(link)).id;
    n bigint;
BEGIN
    UPDATE @extschema@._pending SET failed = false, attempt = 0, spared = 0, next_attempt = now(), last_error = NULL
    WHERE link_id = l AND failed;
    GET DIAGNOSTICS n = ROW_COUNT;
    -- Pulled records given up on: fetched again at the next pull.
    UPDATE @extschema@._inbound_retry SET attempts = 0, next_try = now() WHERE link_id = l AND next_try IS NULL;
    PERFORM @extschema@._wake_worker();
    RETURN n;
END
$$;

-- Enqueues every existing row of the link's table (in outbox entries of up to 1,000 keys, which the
-- worker drains in batches; interrupted work resumes where it stopped). Returns the row count.
CREATE FUNCTION backfill(link text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    l @extschema@._link := @extschema@._link_named(link);
    n bigint;
BEGIN
    IF l.direction = 'inbound' THEN
        RAISE EXCEPTION 'link "%" does not send records (direction inbound)', link
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Backfill sends local rows; set the direction to ''outbound'' or ''both'' first.';
    END IF;
    -- The keys are read as the table's owner (_backfill_keys, src/capture/backfill.rs).
    WITH q AS (INSERT INTO @extschema@.outbox (link_id, op, keys)
               SELECT l.id, 'upsert', k FROM @extschema@._backfill_keys(l.id) k
               RETURNING cardinality(keys) AS n)
    SELECT coalesce(sum(q.n), 0) INTO n FROM q;
    PERFORM @extschema@._wake_worker();
    RETURN n;
END
$$;

REVOKE ALL ON FUNCTION set_secret(text, text), retry_failed(text), backfill(text) FROM PUBLIC;

-- Lifts the loop detector's quarantine of a record: it travels again at its next change.
CREATE FUNCTION release(link text, local_key text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    l bigint := (@extschema@._link_named(link)).id;
BEGIN
    UPDATE @extschema@._record r SET quarantined_at = NULL, quarantine_reason = NULL, hop_times = '{}', updated_at = now()
    WHERE r.link_id = l AND r.local_key = release.local_key AND r.quarantined_at IS NOT NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'record "%" of link "%" is not quarantined', local_key, link
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'See SELECT * FROM syncbridge.quarantine;';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION release(text, text) FROM PUBLIC;
