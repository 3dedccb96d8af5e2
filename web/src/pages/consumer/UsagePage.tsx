// The viewer's own calls (consumer: its id, so that an owner sees here what it spent, not its models' usage,
// and an admin's look at its own usage is not an audited admin read) and its monthly statements.
import { useSession } from '../../api/hooks';
import { StatementPanel } from '../../components/consumer/StatementPanel';
import { UsagePanel } from '../../components/UsagePanel';

export function UsagePage() {
  const { user } = useSession();
  return (
    <>
      <h1>Usage</h1>
      {user ? (
        <>
          <UsagePanel scope={{ consumer: user.id }} title="Your usage" amountLabel="Spend" />
          <StatementPanel />
        </>
      ) : (
        <p>Log in to see your usage.</p>
      )}
    </>
  );
}
