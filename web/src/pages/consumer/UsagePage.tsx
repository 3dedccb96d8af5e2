// The viewer's own calls (consumer: its id, so that an owner sees here what it spent, not its models' usage,
// and an admin's look at its own usage is not an audited admin read) and its monthly statements.
import { StatementPanel } from '../../components/consumer/StatementPanel';
import { RequireRole } from '../../components/RequireRole';
import { UsagePanel } from '../../components/UsagePanel';

export function UsagePage() {
  return (
    <RequireRole role="SIGNED_IN" title="Usage">
      {(user) => (
        <>
          <h1>Usage</h1>
          <UsagePanel scope={{ consumer: user.id }} title="Your usage" amountLabel="Spend" />
          <StatementPanel />
        </>
      )}
    </RequireRole>
  );
}
