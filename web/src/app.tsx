// The console's routes. Each page is its own module under pages/; the layout holds the navigation.
import { createBrowserRouter } from 'react-router-dom';
import { Layout } from './components/Layout';
import { AdminAuditPage } from './pages/admin/AdminAuditPage';
import { AdminUsagePage } from './pages/admin/AdminUsagePage';
import { AdminUsersPage } from './pages/admin/AdminUsersPage';
import { ApiKeysPage } from './pages/consumer/ApiKeysPage';
import { ContractsPage } from './pages/consumer/ContractsPage';
import { UsagePage } from './pages/consumer/UsagePage';
import { LogInPage } from './pages/LogInPage';
import { MarketplacePage } from './pages/MarketplacePage';
import { ModelPage } from './pages/ModelPage';
import { NotFoundPage } from './pages/NotFoundPage';
import { ApprovalsPage } from './pages/owner/ApprovalsPage';
import { ManageModelPage } from './pages/owner/ManageModelPage';
import { MyModelsPage } from './pages/owner/MyModelsPage';
import { NewModelPage } from './pages/owner/NewModelPage';
import { WatermarkPage } from './pages/owner/WatermarkPage';
import { SignUpPage } from './pages/SignUpPage';

export const router = createBrowserRouter([
  {
    element: <Layout />,
    children: [
      { path: '/', element: <MarketplacePage /> },
      { path: '/models/:slug', element: <ModelPage /> },
      { path: '/login', element: <LogInPage /> },
      { path: '/signup', element: <SignUpPage /> },
      { path: '/owner/models', element: <MyModelsPage /> },
      { path: '/owner/models/new', element: <NewModelPage /> },
      { path: '/owner/models/:slug', element: <ManageModelPage /> },
      { path: '/owner/approvals', element: <ApprovalsPage /> },
      { path: '/owner/watermark', element: <WatermarkPage /> },
      { path: '/contracts', element: <ContractsPage /> },
      { path: '/keys', element: <ApiKeysPage /> },
      { path: '/usage', element: <UsagePage /> },
      { path: '/admin/users', element: <AdminUsersPage /> },
      { path: '/admin/audit', element: <AdminAuditPage /> },
      { path: '/admin/usage', element: <AdminUsagePage /> },
      { path: '*', element: <NotFoundPage /> },
    ],
  },
]);
