-- The quota leases the runs of a batch's next chunk took (or are about to take): a run that cannot reserve while
-- another run of the same chunk (a duplicate after a timeout or a stop) still holds its lease retries later
-- instead of ending the batch QUOTA_EXCEEDED. Emptied when the chunk commits.
ALTER TABLE "batch_predictions" ADD COLUMN "chunk_lease_ids" UUID[] NOT NULL DEFAULT '{}';
