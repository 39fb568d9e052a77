-- Distributed crawls (surge-crawl), in the broker's schema. Versions 2001+
-- belong to surge-crawl; surge-store (< 1000) and surge-queue (1001+) keep
-- theirs in the same _sqlx_migrations table and ignore each other's.

-- One row per crawl; `key` is the compact id the other tables use.
CREATE TABLE IF NOT EXISTS crawls (
    key        bigserial   NOT NULL UNIQUE,
    id         uuid        PRIMARY KEY,
    config     text        NOT NULL,
    -- The page budget, copied out of `config` for the lease and complete
    -- statements; `done` counts stored records only when it is set (the
    -- row is the lock that makes the budget exact across workers).
    max_pages  bigint,
    done       bigint      NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    ended_at   timestamptz,
    end_reason text
);

-- URLs waiting or leased. A row leaves only with the record of its URL
-- (complete), in the same transaction that adds the page's outlinks.
CREATE SEQUENCE IF NOT EXISTS crawl_frontier_seq;
CREATE TABLE IF NOT EXISTS crawl_frontier (
    crawl       bigint      NOT NULL,
    fp          bigint      NOT NULL,
    url         text        NOT NULL,
    depth       integer     NOT NULL,
    seq         bigint      NOT NULL DEFAULT nextval('crawl_frontier_seq'),
    ready_at    timestamptz NOT NULL DEFAULT now(),
    lease_token uuid,
    lease_until timestamptz,
    PRIMARY KEY (crawl, fp)
);
-- Breadth first: shallowest, then oldest.
CREATE INDEX IF NOT EXISTS crawl_frontier_order ON crawl_frontier (crawl, depth, seq);
CREATE INDEX IF NOT EXISTS crawl_frontier_leases ON crawl_frontier (crawl, lease_until)
    WHERE lease_until IS NOT NULL;

-- The seen-set: 64-bit fingerprints of normalised URLs, not the URLs.
CREATE TABLE IF NOT EXISTS crawl_seen (
    crawl bigint NOT NULL,
    fp    bigint NOT NULL,
    PRIMARY KEY (crawl, fp)
);

-- One record per URL (the primary key makes complete at-most-once), in
-- the order they were stored.
CREATE TABLE IF NOT EXISTS crawl_pages (
    crawl  bigint NOT NULL,
    fp     bigint NOT NULL,
    seq    bigserial NOT NULL,
    record text   NOT NULL,
    PRIMARY KEY (crawl, fp)
);
CREATE INDEX IF NOT EXISTS crawl_pages_order ON crawl_pages (crawl, seq);
