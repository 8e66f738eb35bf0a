-- Names in pg_syncbridge's own SQL resolve in pg_catalog, whatever schemas the caller's
-- search_path names: an ordinary role that may create functions in public cannot have a
-- superuser's create_link, alter_link, explain or apply_inbound run its look-alike of a
-- built-in (a function whose argument types match exactly beats pg_catalog's polymorphic
-- one). (The worker pins its search_path too: tests/e2e/tests/security.rs.) And the DROP
-- guard runs for every role: an ordinary role drops its own tables.
\set ON_ERROR_ROLLBACK on
begin;

CREATE ROLE regress_mallory;
GRANT CREATE ON SCHEMA public TO regress_mallory;
SET ROLE regress_mallory;
CREATE TABLE public.caught (who text, what text);
CREATE FUNCTION public.unnest(a int2[]) RETURNS SETOF int2 LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.caught VALUES (current_user, 'unnest(int2[])');
    BEGIN
        ALTER ROLE regress_mallory SUPERUSER;
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN QUERY SELECT x FROM pg_catalog.unnest(a) x;
END
$$;
CREATE FUNCTION public.jsonb_build_object(text, bigint) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.caught VALUES (current_user, 'jsonb_build_object(text, bigint)');
    RETURN pg_catalog.jsonb_build_object($1, $2);
END
$$;
CREATE FUNCTION public.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.caught VALUES (current_user, 'unnest(text[])');
    RETURN QUERY SELECT x FROM pg_catalog.unnest(a) x;
END
$$;
RESET ROLE;

SET search_path = public, pg_catalog;
CREATE TABLE accounts (id int PRIMARY KEY, name text);
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers') IS NOT NULL AS created;
SELECT syncbridge.alter_link('crm', '{"timeout_ms": 5000}');
SELECT syncbridge.set_field('crm', 'name', volatile => true);
SELECT status FROM syncbridge.apply_inbound('crm', '[{"id": 1, "name": "Ada"}]');
SELECT syncbridge.explain('crm', '1') -> 'row_exists';
SELECT syncbridge.backfill('crm');
SELECT syncbridge.drop_link('crm');
RESET search_path;
-- Nothing of mallory's ran, and mallory is no superuser.
SELECT who, what FROM public.caught;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_mallory';

-- An ordinary role drops its own tables: unlinked, and linked (the link goes with it).
SET ROLE regress_mallory;
CREATE TABLE public.scratch (id int);
DROP TABLE public.scratch;
CREATE TABLE public.linked (id int PRIMARY KEY, name text);
RESET ROLE;
SELECT syncbridge.create_link('mine', 'public.linked', 'https://api.example.com', 'm') IS NOT NULL AS created;
SET ROLE regress_mallory;
DROP TABLE public.linked;
RESET ROLE;
SELECT count(*) FROM syncbridge.links WHERE name = 'mine';

rollback;
