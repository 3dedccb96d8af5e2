// Usage analytics, CSV export and billing statements, read from the append-only usage records. Who sees
// what is decided here: consumers their own calls, owners the calls to their models, admins everything
// (and an admin reading others' usage is audited).
import type { Writable } from 'node:stream';
import type pg from 'pg';
import type { Actor } from '../auth/principal.js';
import { requireUserId } from '../auth/principal.js';
import { AuditAction, type AuditService } from '../audit/audit-service.js';
import { isAdmin } from '../models/model-policy.js';
import { BadUserInputError } from '../server/errors.js';
import { assertUuid } from '../server/ids.js';
import type { UsageKind } from './metering-service.js';

export type UsageGroupBy = 'DAY' | 'MODEL' | 'CONTRACT' | 'CONSUMER';

export interface UsageFilter {
  from?: Date | null;
  to?: Date | null;
  model?: string | null;
  contract?: string | null;
  consumer?: string | null;
  groupBy?: UsageGroupBy | null;
}

export interface UsageFigures {
  calls: number;
  predictions: number;
  explanations: number;
  evaluations: number;
  billableUnits: number;
  errors: number;
  downloads: number;
  p50LatencyMs: number | null;
  p95LatencyMs: number | null;
  amounts: { amount: string; currency: string }[];
}

const PERIOD = /^(\d{4})-(0[1-9]|1[0-2])$/;

const GROUP_KEY: Record<UsageGroupBy, string> = {
  DAY: `to_char(date_trunc('day', u.at, 'UTC'), 'YYYY-MM-DD')`,
  MODEL: `coalesce(m.slug, '(none)')`,
  CONTRACT: `coalesce(u.contract_id::text, '(none)')`,
  CONSUMER: `u.consumer_id::text`,
};

// A file download is metered as a record of status DOWNLOAD: neither a call nor an error.
const FIGURES = `
  (count(*) FILTER (WHERE u.status <> 'DOWNLOAD'))::int AS calls,
  coalesce(sum(u.units) FILTER (WHERE u.status = 'OK' AND u.kind = 'PREDICTION'), 0)::int AS predictions,
  coalesce(sum(u.units) FILTER (WHERE u.status = 'OK' AND u.kind = 'EXPLANATION'), 0)::int AS explanations,
  coalesce(sum(u.units) FILTER (WHERE u.status = 'OK' AND u.kind = 'EVALUATION'), 0)::int AS evaluations,
  coalesce(sum(u.billable_units), 0)::int AS billable_units,
  (count(*) FILTER (WHERE u.status NOT IN ('OK', 'DOWNLOAD')))::int AS errors,
  (count(*) FILTER (WHERE u.status = 'DOWNLOAD'))::int AS downloads,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY u.latency_ms) FILTER (WHERE u.status = 'OK') AS p50,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY u.latency_ms) FILTER (WHERE u.status = 'OK') AS p95`;

interface FigureRow {
  calls: number;
  predictions: number;
  explanations: number;
  evaluations: number;
  billable_units: number;
  errors: number;
  downloads: number;
  p50: number | null;
  p95: number | null;
}

export class UsageService {
  constructor(
    private readonly pool: pg.Pool,
    private readonly audit: AuditService,
  ) {}

  /** WHERE clause and parameters for the caller's visible, filtered usage records. */
  async #scope(actor: Actor, filter: UsageFilter | null | undefined): Promise<{ where: string; params: unknown[] }> {
    const userId = requireUserId(actor.principal);
    const params: unknown[] = [];
    const param = (value: unknown) => `$${params.push(value)}`;
    const conditions: string[] = [];
    if (isAdmin(actor.principal)) {
      if (filter?.consumer !== userId) {
        await this.audit.record(actor, {
          action: AuditAction.ADMIN_READ,
          targetType: 'Usage',
          details: { filter: JSON.parse(JSON.stringify(filter ?? {})) },
        });
      }
    } else {
      const me = param(userId);
      conditions.push(`(u.consumer_id = ${me} OR m.owner_id = ${me})`);
    }
    if (filter?.from) conditions.push(`u.at >= ${param(filter.from)}`);
    if (filter?.to) conditions.push(`u.at < ${param(filter.to)}`);
    if (filter?.model) conditions.push(`m.slug = ${param(filter.model)}`);
    for (const [key, column] of [
      ['contract', 'u.contract_id'],
      ['consumer', 'u.consumer_id'],
    ] as const) {
      const value = filter?.[key];
      if (value == null) continue;
      assertUuid(value, `filter.${key}`);
      conditions.push(`${column} = ${param(value)}`);
    }
    return { where: conditions.length ? `WHERE ${conditions.join(' AND ')}` : '', params };
  }

  async report(actor: Actor, filter: UsageFilter | null | undefined) {
    const groupBy = filter?.groupBy ?? 'DAY';
    const { where, params } = await this.#scope(actor, filter);
    const from = `FROM usage_records u LEFT JOIN models m ON m.id = u.model_id ${where}`;
    const billed = `${from}${where ? ' AND' : ' WHERE'} u.billable_units > 0`;
    const [totals, series, amounts, totalsByCurrency] = await Promise.all([
      this.pool.query<FigureRow>(`SELECT ${FIGURES} ${from}`, params),
      this.pool.query<FigureRow & { key: string }>(
        `SELECT ${GROUP_KEY[groupBy]} AS key, ${FIGURES} ${from} GROUP BY 1 ORDER BY 1`,
        params,
      ),
      this.pool.query<{ key: string; currency: string; amount: string }>(
        `SELECT ${GROUP_KEY[groupBy]} AS key, u.currency, sum(u.billable_units * u.unit_price)::text AS amount ${billed} GROUP BY 1, 2 ORDER BY 1, 2`,
        params,
      ),
      // Amounts are summed exactly, as decimals, by the database; one total per currency.
      this.pool.query<{ currency: string; amount: string }>(
        `SELECT u.currency, sum(u.billable_units * u.unit_price)::text AS amount ${billed} GROUP BY 1 ORDER BY 1`,
        params,
      ),
    ]);
    const amountsByKey = new Map<string, { amount: string; currency: string }[]>();
    for (const row of amounts.rows) {
      amountsByKey.set(row.key, [
        ...(amountsByKey.get(row.key) ?? []),
        { amount: trimDecimal(row.amount), currency: row.currency },
      ]);
    }
    return {
      totals: figures(
        totals.rows[0]!,
        totalsByCurrency.rows.map((r) => ({ amount: trimDecimal(r.amount), currency: r.currency })),
      ),
      series: series.rows.map((row) => ({ key: row.key, figures: figures(row, amountsByKey.get(row.key) ?? []) })),
    };
  }

  /** Streams the visible usage records as CSV, in pages, without holding them all in memory. */
  async exportCsv(actor: Actor, filter: UsageFilter, out: Writable): Promise<void> {
    const { where, params } = await this.#scope(actor, filter);
    out.write(
      'at,prediction_id,request_id,consumer_id,api_key_id,model,version,contract_id,status,units,billable_units,unit_price,amount,currency,latency_ms,kind,quota_units\n',
    );
    let afterId = '0';
    for (;;) {
      const page = await this.pool.query<Record<string, string | null>>(
        `SELECT u.id::text, to_char(u.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at, u.prediction_id, u.request_id,
                u.consumer_id, u.api_key_id, m.slug AS model, v.version, u.contract_id, u.status, u.units::text, u.billable_units::text,
                u.unit_price::text, (u.billable_units * u.unit_price)::text AS amount, u.currency,
                round(u.latency_ms::numeric, 3)::text AS latency_ms, u.kind::text, u.quota_units::text
         FROM usage_records u LEFT JOIN models m ON m.id = u.model_id LEFT JOIN model_versions v ON v.id = u.model_version_id
         ${where}${where ? ' AND' : ' WHERE'} u.id > $${params.length + 1} ORDER BY u.id LIMIT 1000`,
        [...params, afterId],
      );
      for (const row of page.rows) {
        const fields = [
          'at',
          'prediction_id',
          'request_id',
          'consumer_id',
          'api_key_id',
          'model',
          'version',
          'contract_id',
          'status',
          'units',
          'billable_units',
          'unit_price',
          'amount',
          'currency',
          'latency_ms',
          'kind',
          'quota_units',
        ];
        if (!out.write(`${fields.map((f) => csvField(row[f] ?? null)).join(',')}\n`))
          await new Promise((r) => out.once('drain', r));
      }
      if (page.rows.length < 1000) break;
      afterId = page.rows.at(-1)!.id!;
    }
  }

  /** Line items (per version) and total of one contract for one calendar month (UTC); the caller checked access. */
  async statement(contract: { id: string; currency: string }, period: string) {
    const match = PERIOD.exec(period);
    if (!match) throw new BadUserInputError('period must be YYYY-MM', 'period');
    const from = new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, 1));
    const to = new Date(Date.UTC(Number(match[1]), Number(match[2]), 1));
    const { rows } = await this.pool.query<{
      version: string;
      kind: UsageKind;
      units: number;
      unit_price: string;
      amount: string;
    }>(
      `SELECT coalesce(v.version, '(unknown)') AS version, u.kind::text AS kind, sum(u.billable_units)::int AS units,
              u.unit_price::text AS unit_price, sum(u.billable_units * u.unit_price)::text AS amount
       FROM usage_records u LEFT JOIN model_versions v ON v.id = u.model_version_id
       WHERE u.contract_id = $1 AND u.at >= $2 AND u.at < $3 AND u.billable_units > 0
       GROUP BY 1, 2, 4 ORDER BY 1, 2, 4`,
      [contract.id, from, to],
    );
    const total = await this.pool.query<{ amount: string; units: number }>(
      `SELECT coalesce(sum(billable_units * unit_price), 0)::text AS amount, coalesce(sum(billable_units), 0)::int AS units
       FROM usage_records WHERE contract_id = $1 AND at >= $2 AND at < $3`,
      [contract.id, from, to],
    );
    return {
      period,
      from,
      to,
      lines: rows.map((r) => ({
        modelVersion: r.version,
        kind: r.kind,
        billableUnits: r.units,
        unitPrice: trimDecimal(r.unit_price),
        amount: trimDecimal(r.amount),
      })),
      totalUnits: total.rows[0]!.units,
      total: { amount: trimDecimal(total.rows[0]!.amount), currency: contract.currency },
    };
  }
}

function figures(row: FigureRow, amounts: { amount: string; currency: string }[]): UsageFigures {
  return {
    calls: row.calls,
    predictions: row.predictions,
    explanations: row.explanations,
    evaluations: row.evaluations,
    billableUnits: row.billable_units,
    errors: row.errors,
    downloads: row.downloads,
    p50LatencyMs: row.p50,
    p95LatencyMs: row.p95,
    amounts,
  };
}

/** 0.0100000000 → 0.01; 5.0000000000 → 5. */
function trimDecimal(value: string): string {
  return value.includes('.') ? value.replace(/0+$/, '').replace(/\.$/, '') : value;
}

/**
 * One CSV cell. A cell a spreadsheet would read as a formula (starting with =, +, -, @, tab or CR) gets a
 * leading `'`, so it is shown as text (OWASP CSV injection); then it is quoted as needed.
 */
function csvField(value: string | null): string {
  if (value === null) return '';
  const text = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  // `;` too: spreadsheets in some locales split on it, and a cell after it could start with `=`.
  return /[",;\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
