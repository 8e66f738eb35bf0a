-- The extension as scripts/regress.sh loads it (pg_regress --load-extension=pg_syncbridge):
-- its schema, and the SQL surface every other file relies on (functions and views of the
-- syncbridge schema that do not start with "_", with their arguments and defaults).
SELECT e.extname, n.nspname AS schema, e.extrelocatable
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_syncbridge';

SELECT p.proname, pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result, p.provolatile
FROM pg_proc p
WHERE p.pronamespace = 'syncbridge'::regnamespace AND p.proname NOT LIKE '\_%'
ORDER BY p.proname;

SELECT c.relname, c.relkind
FROM pg_class c
WHERE c.relnamespace = 'syncbridge'::regnamespace AND c.relkind IN ('r', 'v') AND c.relname NOT LIKE '\_%'
ORDER BY c.relname;
