-- The webhook listener (src/listen): deliveries seen recently, so that a repeated one (the
-- same X-Delivery-Id / Idempotency-Key, or the same body without one) changes nothing and
-- gets its first answer again. The worker deletes rows older than a day.
CREATE TABLE _webhook_delivery (
    link_id bigint NOT NULL REFERENCES _link (id) ON DELETE CASCADE,
    -- 'id:' and the delivery id the remote sent, or 'sha256:' and the hash of the body.
    key     text COLLATE "C" NOT NULL,
    at      timestamptz NOT NULL DEFAULT now(),
    -- The answer sent the first time (per-record outcomes).
    answer  jsonb NOT NULL,
    PRIMARY KEY (link_id, key)
);
CREATE INDEX _webhook_delivery_at ON _webhook_delivery (at);
REVOKE ALL ON _webhook_delivery FROM PUBLIC;
