-- Revenue analytics (issue 15 part 3, "revenue-v1"): per subscription its
-- state, its MRR schedule (postcard) and its current MRR contribution; per
-- month and tier the usage and overage billed. A projection of its own: it
-- fills from sequence 1.
CREATE TABLE rm_revenue_subscriptions (
    id              BYTEA PRIMARY KEY,
    organization_id BYTEA,
    mrr             TEXT NOT NULL,
    schedule        BYTEA NOT NULL,
    state           BYTEA NOT NULL
);

CREATE TABLE rm_revenue_billed (
    month  TEXT NOT NULL,
    tier   TEXT NOT NULL,
    billed BYTEA NOT NULL,
    PRIMARY KEY (month, tier)
);

-- What each invoice in force added to rm_revenue_billed, so a void takes it
-- out again.
CREATE TABLE rm_revenue_invoices (
    invoice_id BYTEA PRIMARY KEY,
    month      TEXT NOT NULL,
    tier       TEXT NOT NULL,
    billed     BYTEA NOT NULL
);

-- Customer search (issue 15 part 2, "customers-v1"): each organization's
-- search keys ("n:" + its lowercased name from each word's start, "d:" + a
-- lowercased e-mail domain), read by key range. Text compares by its bytes
-- (the "C" collation), as on SQLite.
CREATE TABLE rm_customer_search (
    search_key      TEXT COLLATE "C" NOT NULL,
    organization_id BYTEA NOT NULL,
    PRIMARY KEY (search_key, organization_id)
);
