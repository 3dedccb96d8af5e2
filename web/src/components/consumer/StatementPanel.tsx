// A contract's billing statement for one month: pick the contract and the month, read the lines and the total.
import { useState, type FormEvent } from 'react';
import { useGql } from '../../api/hooks';
import { graphql } from '../../gql';
import { ErrorMessage } from '../ErrorMessage';

const StatementContracts = graphql(`
  query StatementContracts {
    myContractsConnection(first: 100) {
      edges {
        node {
          id
          status
          createdAt
          terms {
            planName
          }
          model {
            name
          }
        }
      }
    }
  }
`);

const Statement = graphql(`
  query Statement($contractId: ID!, $period: String!) {
    billingStatement(contractId: $contractId, period: $period) {
      period
      from
      to
      totalUnits
      total {
        amount
        currency
      }
      lines {
        modelVersion
        kind
        billableUnits
        unitPrice
        amount
      }
    }
  }
`);

const thisMonth = () => new Date().toISOString().slice(0, 7);

export function StatementPanel() {
  const contracts = useGql(StatementContracts, {});
  const [contractId, setContractId] = useState('');
  const [period, setPeriod] = useState(thisMonth);
  const [asked, setAsked] = useState<{ contractId: string; period: string } | null>(null);
  const statement = useGql(Statement, asked ?? { contractId: '', period: '' }, { enabled: asked !== null });
  const choices = contracts.data?.myContractsConnection.edges.map((edge) => edge.node) ?? [];
  const chosen = contractId || choices[0]?.id || '';
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (chosen) setAsked({ contractId: chosen, period });
  };
  const data = statement.data?.billingStatement;
  return (
    <section aria-labelledby="statements-title">
      <h2 id="statements-title">Statements</h2>
      <ErrorMessage error={contracts.error} />
      {contracts.data && choices.length === 0 && <p>You have no contracts, so no statements.</p>}
      {choices.length > 0 && (
        <form onSubmit={submit} className="inline-form">
          <label>
            Contract{' '}
            <select value={chosen} onChange={(event) => setContractId(event.target.value)}>
              {choices.map((contract) => (
                <option key={contract.id} value={contract.id}>
                  {contract.model?.name ?? 'Model no longer visible'}: {contract.terms.planName} (
                  {contract.status.toLowerCase()}, since {new Date(contract.createdAt).toLocaleDateString()})
                </option>
              ))}
            </select>
          </label>
          <label>
            Month{' '}
            <input
              type="month"
              required
              value={period}
              max={thisMonth()}
              onChange={(event) => setPeriod(event.target.value)}
            />
          </label>
          <button type="submit" disabled={statement.isFetching}>
            Show statement
          </button>
        </form>
      )}
      <ErrorMessage error={statement.error} />
      {data && (
        <table>
          <caption>
            Statement for {data.period} ({new Date(data.from).toLocaleDateString()} to{' '}
            {new Date(data.to).toLocaleDateString()})
          </caption>
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Kind</th>
              <th scope="col">Units</th>
              <th scope="col">Unit price</th>
              <th scope="col">Amount</th>
            </tr>
          </thead>
          <tbody>
            {data.lines.length === 0 && (
              <tr>
                <td colSpan={5}>Nothing billed this month.</td>
              </tr>
            )}
            {data.lines.map((line) => (
              <tr key={`${line.modelVersion}-${line.kind}-${line.unitPrice}`}>
                <td>{line.modelVersion}</td>
                <td>{line.kind.toLowerCase()}</td>
                <td>{line.billableUnits}</td>
                <td>
                  {line.unitPrice} {data.total.currency}
                </td>
                <td>
                  {line.amount} {data.total.currency}
                </td>
              </tr>
            ))}
          </tbody>
          <tfoot>
            <tr>
              <th scope="row" colSpan={2}>
                Total
              </th>
              <td data-testid="statement-units">{data.totalUnits}</td>
              <td />
              <td data-testid="statement-total">
                {data.total.amount} {data.total.currency}
              </td>
            </tr>
          </tfoot>
        </table>
      )}
    </section>
  );
}
