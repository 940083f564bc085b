-- Invoice payment status (issue #14, "invoice-payments-v1"): each issued
-- invoice's status (open, paid, past_due) with its payment encoded, each
-- Stripe invoice's link and last reported charge, each organization's
-- payment method. A projection of its own: it fills from sequence 1.
CREATE TABLE rm_invoice_payments (
    subscription_id BLOB NOT NULL,
    period          TEXT NOT NULL,
    organization_id BLOB NOT NULL,
    status          TEXT NOT NULL,
    payment         BLOB NOT NULL,
    PRIMARY KEY (subscription_id, period)
) WITHOUT ROWID;
CREATE INDEX rm_invoice_payments_by_organization ON rm_invoice_payments (organization_id, period);
CREATE TABLE rm_payment_references (
    reference TEXT PRIMARY KEY,
    payment   BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE rm_payment_methods (
    organization_id BLOB PRIMARY KEY,
    method          TEXT NOT NULL
) WITHOUT ROWID;
