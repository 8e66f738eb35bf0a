-- What operators watch: per-link status, quarantined records, running counters and the
-- Prometheus text of syncbridge.metrics().

-- Events are pruned after syncbridge.events_retention; these counters are not, so metrics()
-- can expose monotonic counters. Kept up by a statement trigger on _event, one upsert per
-- (link, direction, status) and statement, whoever inserts the events.
CREATE TABLE _counter (
    link_id   bigint NOT NULL,
    direction text NOT NULL,
    status    text NOT NULL,
    n         bigint NOT NULL,
    PRIMARY KEY (link_id, direction, status)
);
REVOKE ALL ON _counter FROM PUBLIC;

CREATE FUNCTION _count_events() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO @extschema@._counter AS c (link_id, direction, status, n)
    SELECT e.link_id, e.direction, e.status, count(*) FROM new_events e GROUP BY 1, 2, 3
    ON CONFLICT ON CONSTRAINT _counter_pkey DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END
$$;
CREATE TRIGGER _count_events AFTER INSERT ON _event REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION _count_events();

CREATE FUNCTION _link_counters_deleted() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM @extschema@._counter WHERE link_id = OLD.id;
    RETURN OLD;
END
$$;
CREATE TRIGGER _link_counters_deleted AFTER DELETE ON _link FOR EACH ROW EXECUTE FUNCTION _link_counters_deleted();

-- Why a sending link's edits would not be captured, or NULL when they are: one of its capture
-- triggers is gone (DROP TRIGGER) or does not fire in ordinary sessions (ALTER TABLE ...
-- DISABLE TRIGGER, or ENABLE REPLICA TRIGGER) on the table or one of its partitions. (A
-- session with session_replication_role = replica skips them too; no catalog shows that.)
CREATE FUNCTION _capture_problem(p_link bigint) RETURNS text
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH l AS (SELECT * FROM @extschema@._link WHERE id = p_link AND direction IN ('outbound', 'both')),
    expected AS (
        SELECT @extschema@._trigger_name(l.name, k) AS tgname, l.local_table
        FROM l, unnest(CASE WHEN l.track_columns THEN ARRAY['row'] ELSE ARRAY['insert', 'update', 'delete'] END) k),
    problems AS (
        SELECT format('trigger %I on %s was dropped', e.tgname, e.local_table) AS problem, e.local_table AS rel, e.tgname
        FROM expected e
        WHERE NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = e.local_table AND t.tgname = e.tgname)
        UNION ALL
        SELECT format('trigger %I on %s is %s', t.tgname, t.tgrelid::regclass,
                      CASE t.tgenabled WHEN 'D' THEN 'disabled' ELSE 'enabled for replicas only' END), t.tgrelid, t.tgname
        FROM expected e
        -- (pg_partition_tree gives nothing for a table that is not partitioned.)
        CROSS JOIN LATERAL (SELECT e.local_table::oid AS relid UNION SELECT relid FROM pg_partition_tree(e.local_table)) p
        JOIN pg_trigger t ON t.tgrelid = p.relid AND t.tgname = e.tgname
        WHERE t.tgenabled NOT IN ('O', 'A'))
    SELECT string_agg(problem, '; ' ORDER BY rel, tgname) FROM problems
$$;
REVOKE ALL ON FUNCTION _capture_problem(bigint) FROM PUBLIC;

CREATE VIEW link_status AS
SELECT l.name AS link,
       CASE WHEN l.paused THEN 'paused'
            WHEN @extschema@._capture_problem(l.id) IS NOT NULL THEN 'capture_off'
            WHEN s.unavailable_since IS NOT NULL THEN 'unavailable'
            WHEN coalesce(p.dead, 0) > 0 THEN 'failing'
            WHEN s.last_error_at IS NOT NULL AND s.last_error_at > coalesce(s.last_success_at, '-infinity') THEN 'failing'
            ELSE 'active' END AS state,
       l.direction,
       l.schedule,
       coalesce(o.keys, 0) + coalesce(p.queued, 0) AS queue_depth,
       coalesce(p.dead, 0) AS dead_letters,
       coalesce(p.in_flight, 0) AS in_flight,
       now() - least(o.oldest, p.oldest) AS oldest_pending_age,
       coalesce(q.n, 0) AS quarantined,
       coalesce(h.last_hour, '{}') AS last_hour,
       coalesce(t.total, '{}') AS total,
       s.last_error,
       s.last_error_at,
       s.last_success_at,
       s.last_pull_at,
       s.pull_cursor,
       s.unavailable_since,
       coalesce(f.n, 0) AS inbound_failed
FROM @extschema@._link l
LEFT JOIN @extschema@._link_state s ON s.link_id = l.id
LEFT JOIN LATERAL (SELECT sum(cardinality(x.keys)) AS keys, min(x.enqueued_at) AS oldest
                   FROM @extschema@.outbox x WHERE x.link_id = l.id) o ON true
LEFT JOIN LATERAL (SELECT count(*) FILTER (WHERE NOT x.failed) AS queued, count(*) FILTER (WHERE x.failed) AS dead,
                          count(*) FILTER (WHERE x.in_flight) AS in_flight,
                          min(x.enqueued_at) FILTER (WHERE NOT x.failed) AS oldest
                   FROM @extschema@._pending x WHERE x.link_id = l.id) p ON true
LEFT JOIN LATERAL (SELECT count(*) AS n FROM @extschema@._record r
                   WHERE r.link_id = l.id AND r.quarantined_at IS NOT NULL) q ON true
LEFT JOIN LATERAL (SELECT jsonb_object_agg(k.status, k.n) AS last_hour
                   FROM (SELECT e.direction || '.' || e.status AS status, count(*) AS n FROM @extschema@._event e
                         WHERE e.link_id = l.id AND e.at > now() - interval '1 hour' GROUP BY 1) k) h ON true
LEFT JOIN LATERAL (SELECT jsonb_object_agg(c.direction || '.' || c.status, c.n) AS total
                   FROM @extschema@._counter c WHERE c.link_id = l.id) t ON true
LEFT JOIN LATERAL (SELECT count(*) AS n FROM @extschema@._inbound_retry r WHERE r.link_id = l.id) f ON true;
COMMENT ON VIEW link_status IS 'Per link: state (active; paused; capture_off: a capture trigger is dropped or disabled; unavailable: the remote answers none of its requests, since unavailable_since, and the link probes it; failing: dead letters wait for retry_failed, or the last outcome was an error), queue depth, dead letters, oldest pending age, quarantined records, outcome counts (last hour and in total), last error and last success, and inbound_failed: pulled records that failed to apply and are fetched again on later pulls (or were given up on; retry_failed() starts them again).';

CREATE VIEW quarantine AS
SELECT l.name AS link, r.local_key, r.remote_key, r.quarantined_at, r.quarantine_reason AS reason,
       cardinality(r.hop_times) AS hops
FROM @extschema@._record r
JOIN @extschema@._link l ON l.id = r.link_id
WHERE r.quarantined_at IS NOT NULL;
COMMENT ON VIEW quarantine IS 'Records the loop detector stopped; a user edit or syncbridge.release(link, local_key) lets them travel again.';

CREATE VIEW duplicates AS
SELECT l.name AS link, d.local_key, array_agg(d.remote_key ORDER BY d.remote_key) AS remote_keys,
       (SELECT r.remote_key FROM @extschema@._record r WHERE r.link_id = d.link_id AND r.local_key = d.local_key) AS paired_with,
       string_agg(DISTINCT d.seen_by, ', ') AS seen_by, min(d.first_seen) AS first_seen, max(d.last_seen) AS last_seen
FROM @extschema@._duplicate d
JOIN @extschema@._link l ON l.id = d.link_id
GROUP BY l.name, d.link_id, d.local_key;
COMMENT ON VIEW duplicates IS 'Local records that more than one remote record claims (they carry the same local id), as a lookup before a create, a pull or the answers to creates saw them; delete the extra remote copies, then retry_failed.';

-- Counters and gauges in the Prometheus text exposition format (version 0.0.4).
CREATE FUNCTION metrics() RETURNS text
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH gauges(name, help, link, value) AS (
        SELECT 'syncbridge_queue_depth', 'Records waiting to be delivered.', link, queue_depth::float8 FROM @extschema@.link_status
        UNION ALL SELECT 'syncbridge_dead_letters', 'Records that failed for good; syncbridge.retry_failed() queues them again.', link, dead_letters FROM @extschema@.link_status
        UNION ALL SELECT 'syncbridge_oldest_pending_seconds', 'Age of the oldest waiting change.', link, coalesce(extract(epoch FROM oldest_pending_age), 0) FROM @extschema@.link_status
        UNION ALL SELECT 'syncbridge_quarantined', 'Records stopped by the loop detector.', link, quarantined FROM @extschema@.link_status
        UNION ALL SELECT 'syncbridge_link_paused', '1 when the link is paused.', link, (state = 'paused')::int FROM @extschema@.link_status
        UNION ALL SELECT 'syncbridge_link_failing', '1 when the last outcome of the link was an error.', link, (state = 'failing')::int FROM @extschema@.link_status
        UNION ALL SELECT 'syncbridge_last_success_timestamp_seconds', 'When the link last delivered or pulled.', link, coalesce(extract(epoch FROM last_success_at), 0) FROM @extschema@.link_status),
    lines AS (
        SELECT 0 AS part, name, 0 AS ord, format('# HELP %s %s', name, min(help)) AS line FROM gauges GROUP BY name
        UNION ALL SELECT 0, name, 1, format('# TYPE %s gauge', name) FROM gauges GROUP BY name
        UNION ALL SELECT 0, name, 2, format('%s{link="%s"} %s', name, link, value) FROM gauges
        UNION ALL SELECT 1, 'syncbridge_events_total', 0, '# HELP syncbridge_events_total Sync events by link, direction and status.'
        UNION ALL SELECT 1, 'syncbridge_events_total', 1, '# TYPE syncbridge_events_total counter'
        UNION ALL SELECT 1, 'syncbridge_events_total', 2, format('syncbridge_events_total{link="%s",direction="%s",status="%s"} %s',
                                                                l.name, c.direction, c.status, c.n)
                  FROM @extschema@._counter c JOIN @extschema@._link l ON l.id = c.link_id
        UNION ALL SELECT 2, 'syncbridge_workers', 0, '# HELP syncbridge_workers pg_syncbridge workers connected to this database.'
        UNION ALL SELECT 2, 'syncbridge_workers', 1, '# TYPE syncbridge_workers gauge'
        UNION ALL SELECT 2, 'syncbridge_workers', 2, format('syncbridge_workers %s', count(*))
                  FROM pg_stat_activity WHERE backend_type = 'pg_syncbridge' AND datname = current_database())
    SELECT string_agg(line, E'\n' ORDER BY part, name, ord, line) || E'\n' FROM lines
$$;
REVOKE ALL ON FUNCTION metrics() FROM PUBLIC;

-- Old events go (syncbridge.events_retention); the worker calls this about once a minute.
CREATE FUNCTION _prune_events(p_keep interval, p_limit integer DEFAULT 10000) RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    WITH gone AS (
        DELETE FROM @extschema@._event WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM @extschema@._event WHERE at < now() - p_keep LIMIT p_limit))
        RETURNING 1)
    SELECT count(*) FROM gone
$$;
REVOKE ALL ON FUNCTION _prune_events(interval, integer) FROM PUBLIC;
