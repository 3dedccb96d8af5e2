// Who may explain, and what it costs: owners free; licensees under a contract whose frozen terms allow
// explanations, each explained instance billed at pricePerExplanation and taking explanationQuotaUnits from the
// quota (EXPLANATION usage records); the ledger holds; a requestId is answered once; hostile input is refused
// with typed errors and bills nothing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { expectError, signUp, type SignedUpUser } from '../support/fixtures.js';
import { assertLedgerHolds } from '../support/ledger.js';
import { accept, createPlan } from '../support/licensing.js';
import { PREDICT, publishedMlp, publishedTabular, randomRows } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { explain, explained } from './support.js';

const TERMS = `query { myContracts { id predictionsUsed terms { explanationsAllowed pricePerExplanation explanationQuotaUnits } } }`;
const USAGE = `query { usage { totals { calls predictions explanations billableUnits amounts { amount currency } } } }`;

describe('explain: licensing, metering and hostile input', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let slug: string;
  let noExplanations: { id: string };
  let withExplanations: { id: string };
  before(async () => {
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
    // A 4-feature classifier of 3 classes (random weights: explanations need no training to be metered).
    ({
      model: { slug },
    } = await publishedMlp(server, { token: owner.token }, { sizes: [4, 8, 3] }));
    noExplanations = await createPlan(server, { token: owner.token }, slug, { name: 'Predict only' });
    withExplanations = await createPlan(server, { token: owner.token }, slug, {
      name: 'Explain',
      explanationsAllowed: true,
      pricePerExplanation: '0.05',
      explanationQuotaUnits: 10,
      predictionQuota: 45,
    });
  });
  after(() => server.close());

  const rows = (count: number, seed = 1) => randomRows(count, 4, seed);
  const records = async (consumerId: string) =>
    (
      await server.sql.query(
        `SELECT kind::text, status, units, billable_units, quota_units, unit_price::float8 AS price, request_id
           FROM usage_records WHERE consumer_id = $1 ORDER BY id`,
        [consumerId],
      )
    ).rows;

  it('owners explain free (an EXPLANATION record, nothing billed)', async () => {
    const explanation = await explained(
      server,
      { token: owner.token },
      { model: slug, inputs: rows(2), method: 'OCCLUSION' },
    );
    assert.equal(explanation.contractId, null);
    assert.deepEqual(await records(owner.id), [
      { kind: 'EXPLANATION', status: 'OK', units: 2, billable_units: 0, quota_units: 0, price: 0, request_id: null },
    ]);
  });

  it('refuses a consumer without a contract, or whose frozen terms do not allow explanations (FORBIDDEN)', async () => {
    const stranger = await signUp(server);
    const refused = expectError(
      await explain(server, { token: stranger.token }, { model: slug, inputs: rows(1), method: 'KERNEL_SHAP' }),
      'FORBIDDEN',
    );
    assert.equal(refused.extensions!.reason, 'NO_CONTRACT');

    const buyer = await signUp(server);
    await accept(server, { token: buyer.token }, noExplanations.id);
    // Allowing explanations on the plan later does not change the contract's frozen terms.
    const update = await server.gql(
      'mutation U($id: ID!) { updateLicensePlan(id: $id, input: { explanationsAllowed: true }) { explanationsAllowed } }',
      { id: noExplanations.id },
      { token: owner.token },
    );
    assert.equal(update.data!.updateLicensePlan.explanationsAllowed, true);
    const terms = (await server.gql(TERMS, {}, { token: buyer.token })).data!.myContracts[0].terms;
    assert.deepEqual(terms, { explanationsAllowed: false, pricePerExplanation: '0', explanationQuotaUnits: 10 });
    const notAllowed = expectError(
      await explain(server, { token: buyer.token }, { model: slug, inputs: rows(1), method: 'KERNEL_SHAP' }),
      'FORBIDDEN',
    );
    assert.equal(notAllowed.extensions!.reason, 'EXPLANATIONS_NOT_ALLOWED');
    // The same contract still predicts.
    const predicted = await server.gql(PREDICT, { input: { model: slug, inputs: rows(1) } }, { token: buyer.token });
    assert.equal(predicted.errors, undefined);
    const kinds = (await records(buyer.id)).map((r) => [r.kind, r.status, r.billable_units]);
    assert.deepEqual(kinds, [
      ['EXPLANATION', 'FORBIDDEN', 0],
      ['PREDICTION', 'OK', 1],
    ]);
  });

  it('bills each explained instance at pricePerExplanation, takes explanationQuotaUnits each; replays a requestId; QUOTA_EXCEEDED when it does not fit; the ledger holds', async () => {
    const buyer = await signUp(server);
    const contract = await accept(server, { token: buyer.token }, withExplanations.id);
    const auth = { token: buyer.token };
    const input = { model: slug, inputs: rows(2, 7), method: 'KERNEL_SHAP', requestId: 'why-1' };
    const first = await explained(server, auth, input);
    assert.equal(first.contractId, contract.id);
    const used = async () => (await server.gql(TERMS, {}, auth)).data!.myContracts[0].predictionsUsed as number;
    assert.equal(await used(), 20);
    const again = await explained(server, auth, input);
    assert.deepEqual(again, first, 'a retry with the same requestId gets the stored answer');
    assert.equal(await used(), 20, 'and is not counted again');

    await server.gql(PREDICT, { input: { model: slug, inputs: rows(3, 8) } }, auth);
    assert.equal(await used(), 23);
    // 3 explanations need 30 units; 22 are left.
    const exceeded = expectError(
      await explain(server, auth, { model: slug, inputs: rows(3, 9), method: 'OCCLUSION' }),
      'QUOTA_EXCEEDED',
    );
    assert.deepEqual([exceeded.extensions!.used, exceeded.extensions!.quota], [23, 45]);
    assert.equal(await used(), 23);
    await explained(server, auth, { model: slug, inputs: rows(2, 10), method: 'OCCLUSION' });
    assert.equal(await used(), 43);

    assert.deepEqual(
      (await records(buyer.id)).map(({ request_id: _, ...r }) => r),
      [
        { kind: 'EXPLANATION', status: 'OK', units: 2, billable_units: 2, quota_units: 20, price: 0.05 },
        { kind: 'PREDICTION', status: 'OK', units: 3, billable_units: 3, quota_units: 3, price: 0.002 },
        { kind: 'EXPLANATION', status: 'QUOTA_EXCEEDED', units: 3, billable_units: 0, quota_units: 0, price: 0.05 },
        { kind: 'EXPLANATION', status: 'OK', units: 2, billable_units: 2, quota_units: 20, price: 0.05 },
      ],
    );
    const usage = (await server.gql(USAGE, {}, auth)).data!.usage.totals;
    assert.deepEqual(usage, {
      calls: 4,
      predictions: 3,
      explanations: 4,
      billableUnits: 7,
      // 3 × 0.002 + 4 × 0.05
      amounts: [{ amount: '0.206', currency: 'EUR' }],
    });
    const csv = await (
      await fetch(`${server.origin}/v1/usage.csv?contract=${contract.id}`, {
        headers: { authorization: `Bearer ${buyer.token}` },
      })
    ).text();
    assert.deepEqual(
      csv
        .trim()
        .split('\n')
        .slice(1)
        .map((line) => line.split(',').slice(-2).join(',')),
      ['EXPLANATION,20', 'PREDICTION,3', 'EXPLANATION,0', 'EXPLANATION,20'],
    );
    await assertLedgerHolds(server.sql);
  });

  it('refuses hostile input with typed errors, billing and counting nothing', async () => {
    const buyer = await signUp(server);
    await accept(server, { token: buyer.token }, withExplanations.id);
    const auth = { token: buyer.token };
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ inputs: [] }, 'input.inputs', /1 to 8/],
      [{ inputs: rows(9) }, 'input.inputs', /1 to 8/],
      [{ inputs: 'not a list' }, 'input.inputs', /1 to 8/],
      [{ samples: 0 }, 'input.samples', /16 to 2048/],
      [{ samples: 100000 }, 'input.samples', /16 to 2048/],
      [{ method: 'OCCLUSION', samples: 64 }, 'input.samples', /takes no samples/],
      [{ method: 'INTEGRATED_GRADIENTS', samples: 1000 }, 'input.samples', /2 to 256/],
      [{ target: 'no such label' }, 'input.target', /not one of the model's labels/],
      [{ inputs: [[1, 2, 3]] }, 'input.inputs[0]', /4 numbers/],
      [{ inputs: [[1, 2, 3, 'x']] }, 'input.inputs[0][3]', /finite number/],
    ];
    for (const [override, field, message] of cases) {
      const error = expectError(
        await explain(server, auth, { model: slug, inputs: rows(1), method: 'KERNEL_SHAP', ...override }),
        'BAD_USER_INPUT',
      );
      assert.equal(error.extensions!.field, field, JSON.stringify(error));
      assert.match(error.message, message);
    }
    // The gradient methods run in the inference workers (the owner's calls: free, so nothing above is counted): one
    // weight per feature; integrated gradients checks completeness.
    for (const method of ['INTEGRATED_GRADIENTS', 'GRADIENT_X_INPUT']) {
      const owned = await explained(server, { token: owner.token }, { model: slug, inputs: rows(1), method });
      const [instance] = owned.instances;
      assert.equal(instance!.values.length, 4);
      if (method === 'INTEGRATED_GRADIENTS') {
        assert.equal(instance!.check!.kind, 'COMPLETENESS');
        const { attributionSum, outputDifference, error } = instance!.check!;
        // The attributions add up to the score's change from the baseline, within a hundredth of a probability.
        assert.ok(
          Math.abs(error - Math.abs(attributionSum - outputDifference)) < 1e-5 && error < 0.01,
          JSON.stringify(instance!.check),
        );
      } else assert.equal(instance!.check, null);
    }
    // An unknown method is refused by the schema before any resolver runs.
    const unknown = await explain(server, auth, { model: slug, inputs: rows(1), method: 'LIME' });
    assert.equal(unknown.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', JSON.stringify(unknown.errors));
    // A model whose output is not a classification has no label to explain.
    const regression = await publishedTabular(server, { token: owner.token }, [{ name: 'a' }, { name: 'b' }]);
    expectError(
      await explain(
        server,
        { token: owner.token },
        { model: regression.model.slug, inputs: [{ a: 1, b: 2 }], method: 'OCCLUSION' },
      ),
      'BAD_USER_INPUT',
    );
    const used = (await server.gql(TERMS, {}, auth)).data!.myContracts[0].predictionsUsed;
    assert.equal(used, 0);
    const billed = (await records(buyer.id)).filter((r) => r.billable_units > 0);
    assert.deepEqual(billed, []);
    await assertLedgerHolds(server.sql);
  });
});
