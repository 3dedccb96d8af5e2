// The model tasks in words, shared by the marketplace's filter and the model page.
import type { ModelTask } from '../gql/graphql';

export const TASK_NAMES: Record<ModelTask, string> = {
  IMAGE_CLASSIFICATION: 'Image classification',
  TEXT_CLASSIFICATION: 'Text classification',
  TABULAR_CLASSIFICATION: 'Tabular classification',
  REGRESSION: 'Regression',
};

export function isModelTask(value: string | null): value is ModelTask {
  return value !== null && value in TASK_NAMES;
}
