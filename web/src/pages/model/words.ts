// Contract and plan terms in words, for the model page.
import type { ContractStatus, QuotaPeriod } from '../../gql/graphql';

export const CONTRACT_STATUS_WORDS: Record<ContractStatus, string> = {
  PENDING: 'Waiting for the owner’s approval',
  ACTIVE: 'Active',
  SUSPENDED: 'Suspended',
  REVOKED: 'Revoked',
  REJECTED: 'Rejected',
  CANCELLED: 'Cancelled',
  EXPIRED: 'Expired',
};

export function quotaWords(quota: number | null | undefined, period: QuotaPeriod): string {
  if (quota === null || quota === undefined) return 'Unlimited predictions';
  return `${quota.toLocaleString()} predictions ${period === 'MONTH' ? 'a month' : 'in total'}`;
}
