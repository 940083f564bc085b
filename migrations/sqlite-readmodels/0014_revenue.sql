-- Revenue analytics (issue 15 part 3, "revenue-v1"): per subscription its
-- state, its MRR schedule (postcard) and its current MRR contribution; per
-- month and tier the usage and overage billed. A projection of its own: it
-- fills from sequence 1.
CREATE TABLE rm_revenue_subscriptions (
    id              BLOB PRIMARY KEY,
    organization_id BLOB,
    mrr             TEXT NOT NULL,
    schedule        BLOB NOT NULL,
    state           BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE rm_revenue_billed (
    month  TEXT NOT NULL,
    tier   TEXT NOT NULL,
    billed BLOB NOT NULL,
    PRIMARY KEY (month, tier)
) WITHOUT ROWID;

-- What each invoice in force added to rm_revenue_billed, so a void takes it
-- out again.
CREATE TABLE rm_revenue_invoices (
    invoice_id BLOB PRIMARY KEY,
    month      TEXT NOT NULL,
    tier       TEXT NOT NULL,
    billed     BLOB NOT NULL
) WITHOUT ROWID;

-- Customer search (issue 15 part 2, "customers-v1"): each organization's
-- search keys ("n:" + its lowercased name from each word's start, "d:" + a
-- lowercased e-mail domain), read by key range. Text compares by its bytes.
CREATE TABLE rm_customer_search (
    search_key      TEXT NOT NULL,
    organization_id BLOB NOT NULL,
    PRIMARY KEY (search_key, organization_id)
) WITHOUT ROWID;
