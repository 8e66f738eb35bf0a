-- Statements on a linked table run as the table's owner: the owner's triggers, defaults and
-- domain checks see current_user = the owner, in a security-restricted context (no SET ROLE,
-- no temporary tables) when the owner is not a superuser; pg_syncbridge's own bookkeeping
-- (id map, events) is still written. A superuser-owned table runs as before.
\set ON_ERROR_ROLLBACK on
begin;

CREATE ROLE regress_owner;
CREATE SCHEMA o AUTHORIZATION regress_owner;

SET ROLE regress_owner;
CREATE TABLE o.seen (n serial, who text, op text, attempt text);
-- A default that runs the owner's code too.
CREATE FUNCTION o.stamp() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO o.seen (who, op) VALUES (current_user, 'default');
    RETURN 'stamped';
END
$$;
CREATE TABLE o.t (id serial PRIMARY KEY, name text, note text DEFAULT o.stamp());
-- An owner's trigger that records who runs it and tries what a superuser could do.
CREATE FUNCTION o.watch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO o.seen (who, op) VALUES (current_user, TG_OP);
    BEGIN
        ALTER ROLE regress_owner SUPERUSER;
        INSERT INTO o.seen (who, op, attempt) VALUES (current_user, TG_OP, 'became superuser');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO o.seen (who, op, attempt) VALUES (current_user, TG_OP, SQLERRM);
    END;
    BEGIN
        CREATE TEMP TABLE grab (x int);
        INSERT INTO o.seen (who, op, attempt) VALUES (current_user, TG_OP, 'created a temp table');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO o.seen (who, op, attempt) VALUES (current_user, TG_OP, SQLERRM);
    END;
    RETURN NEW;
END
$$;
CREATE TRIGGER watch BEFORE INSERT OR UPDATE ON o.t FOR EACH ROW EXECUTE FUNCTION o.watch();
RESET ROLE;

SELECT syncbridge.create_link('own', 'o.t', 'https://api.example.com', 'x', direction => 'inbound') IS NOT NULL AS created;
-- An insert, then an update, through apply_inbound (a superuser calls it).
SELECT * FROM syncbridge.apply_inbound('own', '[{"id": 1, "name": "a"}]');
SELECT * FROM syncbridge.apply_inbound('own', '[{"id": 1, "name": "b"}]');
SELECT id, name, note FROM o.t;
-- Every line says regress_owner; the owner did not become a superuser, nor made a temp table.
SELECT who, op, attempt FROM o.seen ORDER BY n;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_owner';
-- The bookkeeping ran as the caller: the id map and the events are there.
SELECT local_key, remote_key FROM syncbridge._record r JOIN syncbridge.links l ON l.id = r.link_id WHERE l.name = 'own';
SELECT status, count(*) FROM syncbridge.events WHERE link = 'own' GROUP BY status;
-- The owner's settings do not outlive the statement: a trigger's set_config is undone.
SET ROLE regress_owner;
CREATE OR REPLACE FUNCTION o.watch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('work_mem', '7MB', false);
    INSERT INTO o.seen (who, op, attempt) VALUES (current_user, TG_OP, current_setting('work_mem'));
    RETURN NEW;
END
$$;
RESET ROLE;
SET work_mem = '4MB';
SELECT status FROM syncbridge.apply_inbound('own', '[{"id": 2, "name": "c"}]');
SELECT who, op, attempt FROM o.seen WHERE attempt = '7MB';
SHOW work_mem;
-- explain reads the row as the owner as well.
SELECT syncbridge.explain('own', '1') -> 'row_exists';

-- A table owned by a superuser: its trigger runs as that superuser, unrestricted, as before.
CREATE TABLE su (id serial PRIMARY KEY, name text);
CREATE TABLE su_seen (who text, temp_ok boolean);
CREATE FUNCTION su_watch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS su_grab (x int);
    INSERT INTO public.su_seen VALUES (current_user, true);
    RETURN NEW;
END
$$;
CREATE TRIGGER su_watch BEFORE INSERT ON su FOR EACH ROW EXECUTE FUNCTION su_watch();
SELECT syncbridge.create_link('su', 'su', 'https://api.example.com', 'x', direction => 'inbound') IS NOT NULL AS created;
SELECT status FROM syncbridge.apply_inbound('su', '[{"id": 1, "name": "a"}]');
SELECT who = current_user AS as_superuser, temp_ok FROM su_seen;

rollback;
