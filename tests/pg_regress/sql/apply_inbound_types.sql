-- An incoming value is read as its column's type means it before it is compared with the
-- local row: a remote that spells values its own way ("7.00" or "7.00000" for a numeric 7,
-- "t" for true, another UTC offset for the same instant, 3.0 for an integer 3) sends the same
-- record, and it is not written again (no trigger fires, no echo goes back). A real change
-- still is.
\set ON_ERROR_ROLLBACK on
begin;

CREATE TABLE ledger (id serial PRIMARY KEY, balance numeric(12,2), active boolean, seen timestamptz, n integer, note text);
CREATE TABLE ledger_writes (n int);
CREATE FUNCTION note_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.ledger_writes VALUES (1);
    RETURN NEW;
END
$$;
CREATE TRIGGER note_write BEFORE UPDATE ON ledger FOR EACH ROW EXECUTE FUNCTION note_write();
SELECT syncbridge.create_link('ledger', 'ledger', 'https://api.example.com', 'ledger', direction => 'inbound') IS NOT NULL AS created;

SELECT status, reason FROM syncbridge.apply_inbound('ledger',
    '[{"id": "L-1", "balance": 7, "active": true, "seen": "2024-01-01T08:00:00Z", "n": 3, "note": "7.00"}]');
-- The same record as a remote that answers with strings and other offsets.
SELECT status, reason FROM syncbridge.apply_inbound('ledger',
    '[{"id": "L-1", "balance": "7.00", "active": "t", "seen": "2024-01-01 10:00:00+02", "n": "3", "note": "7.00"}]');
SELECT status, reason FROM syncbridge.apply_inbound('ledger',
    '[{"id": "L-1", "balance": "7.00000", "active": "true", "seen": "2024-01-01T09:00:00+01:00", "n": 3.0, "note": "7.00"}]');
-- With the fingerprint guard off, the echo guard alone sees no change.
SELECT syncbridge.alter_link('ledger', '{"loop_guards": ["echo"]}');
SELECT status, reason FROM syncbridge.apply_inbound('ledger',
    '[{"id": "L-1", "balance": " 7.0 ", "active": 1, "seen": "2024-01-01T03:00:00-05:00", "n": "3", "note": "7.00"}]');
SELECT count(*) AS writes FROM ledger_writes;

-- A text column keeps the text as sent: "7.0" is not "7.00" there.
SELECT status FROM syncbridge.apply_inbound('ledger', '[{"id": "L-1", "note": "7.0"}]');
-- A real change goes in.
SELECT status FROM syncbridge.apply_inbound('ledger', '[{"id": "L-1", "balance": "8.50", "active": "f"}]');
SELECT balance, active, n, note FROM ledger;
SELECT count(*) AS writes FROM ledger_writes;

rollback;
