-- When a payout was first sent to its provider (set before the first
-- request goes out): a payout never sent can safely fail on a refusal, one
-- that may have reached the provider cannot.
ALTER TABLE payouts ADD COLUMN send_attempted_at INTEGER;
-- Why the operator should look at this payout at the provider (a refusal
-- of a repeat that may already have been paid), if they should.
ALTER TABLE payouts ADD COLUMN attention TEXT;
