-- The ownership guard: without the context guard, link writes are captured like any other,
-- except a write under the link's own flag that changed only fields the remote owns.
begin;
CREATE TABLE tickets (id int PRIMARY KEY, title text, status text);
SELECT syncbridge.create_link('desk', 'tickets', 'https://desk.example.com', 'tickets',
                              loop_guards => '{echo,fingerprint,ownership}') > 0 AS created;
SELECT syncbridge.set_field('desk', 'status', owner => 'remote');
INSERT INTO tickets VALUES (1, 'Printer on fire', 'open');
SELECT syncbridge._flush_capture() AS user_insert_keys;

SET LOCAL syncbridge.origin = 'desk';
-- Only the remote-owned status changes: nothing to send back.
UPDATE tickets SET status = 'closed' WHERE id = 1;
SELECT syncbridge._flush_capture() AS keys_after_owned_change;
-- The title is not the remote's: this link write is captured.
UPDATE tickets SET title = 'Printer extinguished' WHERE id = 1;
SELECT syncbridge._flush_capture() AS keys_after_unowned_change;
-- Under another link's flag, the guard does not apply.
SET LOCAL syncbridge.origin = 'other';
UPDATE tickets SET status = 'reopened' WHERE id = 1;
SELECT syncbridge._flush_capture() AS keys_under_another_flag;
RESET syncbridge.origin;
SELECT op, keys, origin FROM syncbridge.outbox ORDER BY id;
rollback;
