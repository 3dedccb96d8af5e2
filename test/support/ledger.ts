// The usage ledger check every metering and fault test ends with (the same SQL as the admin query
// verifyUsageLedger): every contract's quota counter equals its billed units plus its running calls' leases, and,
// since no call is running after a test, no lease and no unanswered requestId is left.
import assert from 'node:assert/strict';
import type pg from 'pg';

export async function assertLedgerHolds(sql: pg.Pool): Promise<void> {
  const { rows } = await sql.query(
    'SELECT contract_id, predictions_used, recorded_units, leased_units, period_start FROM mm_usage_ledger_discrepancies()',
  );
  assert.deepEqual(rows, [], `quota counters differ from usage records and leases: ${JSON.stringify(rows)}`);
  const { rows: held } = await sql.query<{ leases: number; unanswered: number }>(
    `SELECT (SELECT count(*) FROM quota_leases)::int AS leases,
            (SELECT count(*) FROM idempotency_keys WHERE response IS NULL)::int AS unanswered`,
  );
  assert.deepEqual(held, [{ leases: 0, unanswered: 0 }], 'leases or unanswered requestIds left after every call ended');
}
