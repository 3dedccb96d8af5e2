// The usage ledger check the metering tests run after each test: every contract's quota counter equals the
// billable units recorded in its current period (mm_usage_ledger_discrepancies, the same SQL as the admin
// query verifyUsageLedger). Exact only when no call is in flight, as after a test.
import assert from 'node:assert/strict';
import type pg from 'pg';

export async function assertLedgerHolds(sql: pg.Pool): Promise<void> {
  const { rows } = await sql.query(
    'SELECT contract_id, predictions_used, recorded_units, period_start FROM mm_usage_ledger_discrepancies()',
  );
  assert.deepEqual(rows, [], `quota counters differ from usage records: ${JSON.stringify(rows)}`);
}
