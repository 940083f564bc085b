-- Voided invoices (issue 15 part 2, "invoices-v1"): an invoice voided by the
-- billing team leaves rm_invoices (its month is billed again by the next
-- run under the next revision's id) and is kept here with its void.
-- Invoices are looked up by their id for a void.
CREATE INDEX rm_invoices_by_invoice_id ON rm_invoices (invoice_id);
CREATE TABLE rm_voided_invoices (
    invoice_id      BYTEA   NOT NULL,
    subscription_id BYTEA   NOT NULL,
    period          TEXT    NOT NULL,
    organization_id BYTEA   NOT NULL,
    sequence        BIGINT  NOT NULL,
    issued          BYTEA   NOT NULL,
    voided          BYTEA   NOT NULL,
    PRIMARY KEY (invoice_id)
);
CREATE INDEX rm_voided_invoices_by_month ON rm_voided_invoices (subscription_id, period);
CREATE INDEX rm_voided_invoices_by_organization ON rm_voided_invoices (organization_id, period);

-- Credit notes (issue 15 part 2, "invoices-v1"), by invoice and number.
CREATE TABLE rm_credit_notes (
    invoice_id      BYTEA NOT NULL,
    number          BIGINT NOT NULL,
    subscription_id BYTEA NOT NULL,
    organization_id BYTEA NOT NULL,
    total           TEXT NOT NULL,
    sequence        BIGINT NOT NULL,
    note            BYTEA NOT NULL,
    PRIMARY KEY (invoice_id, number)
);

-- Each invoice's payment row gained the total of its credit notes
-- (rm_invoice_payments.payment, postcard, not self-describing): rows
-- written before cannot be read in the new shape, so the payments
-- projection starts again from the log's first record.
DELETE FROM rm_invoice_payments;
DELETE FROM rm_payment_references;
DELETE FROM rm_payment_methods;
DELETE FROM readmodel_checkpoints WHERE name = 'invoice-payments-v1';

-- The Stripe outbox ("stripe-v1") for voids and credit notes: each ledger
-- invoice's Stripe invoice by the ledger invoice's id, and the voids and
-- credit notes still to make in Stripe (their Stripe invoice once known).
CREATE TABLE rm_stripe_invoice_ids (
    invoice_id        BYTEA NOT NULL,
    stripe_invoice_id TEXT NOT NULL,
    PRIMARY KEY (invoice_id)
);
CREATE TABLE rm_stripe_pending_voids (
    invoice_id        BYTEA NOT NULL,
    stripe_invoice_id TEXT,
    sequence          BIGINT NOT NULL,
    target            TEXT NOT NULL,
    PRIMARY KEY (invoice_id)
);
CREATE INDEX rm_stripe_pending_voids_by_sequence ON rm_stripe_pending_voids (sequence);
CREATE TABLE rm_stripe_pending_credit_notes (
    credit_note_id    BYTEA NOT NULL,
    invoice_id        BYTEA NOT NULL,
    stripe_invoice_id TEXT,
    sequence          BIGINT NOT NULL,
    target            TEXT NOT NULL,
    note              BYTEA NOT NULL,
    PRIMARY KEY (credit_note_id)
);
CREATE INDEX rm_stripe_pending_credit_notes_by_sequence ON rm_stripe_pending_credit_notes (sequence);
-- Invoices already in Stripe: before voids, one invoice a month, so the
-- month names it.
INSERT INTO rm_stripe_invoice_ids (invoice_id, stripe_invoice_id)
SELECT i.invoice_id, s.stripe_invoice_id FROM rm_stripe_invoices s
JOIN rm_invoices i ON i.subscription_id = s.subscription_id AND i.period = s.period;
