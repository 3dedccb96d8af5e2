// /owner/models/new: creates a model (no versions yet); the manage page then publishes its first version.
import { useState, type FormEvent } from 'react';
import { useNavigate } from 'react-router-dom';
import { useGqlMutation } from '../../api/hooks';
import { ErrorMessage } from '../../components/ErrorMessage';
import { EMPTY_MODEL_FIELDS, ModelFields, modelFieldsInput } from '../../components/owner/ModelFields';
import { TASK_NAMES } from '../../models/tasks';
import { RequireRole } from '../../components/RequireRole';
import { graphql } from '../../gql';
import type { ModelTask } from '../../gql/graphql';

const CreateModel = graphql(`
  mutation CreateOwnerModel($input: CreateModelInput!) {
    createModel(input: $input) {
      id
      slug
    }
  }
`);

export function NewModelPage() {
  const navigate = useNavigate();
  const create = useGqlMutation(CreateModel);
  const [slug, setSlug] = useState('');
  const [task, setTask] = useState<ModelTask>('IMAGE_CLASSIFICATION');
  const [fields, setFields] = useState(EMPTY_MODEL_FIELDS);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate(
      { input: { slug: slug.trim(), task, ...modelFieldsInput(fields) } },
      { onSuccess: ({ createModel }) => void navigate(`/owner/models/${createModel.slug}`) },
    );
  };

  return (
    <RequireRole role="OWNER" title="Create a model">
      {() => (
        <>
          <h1>Create a model</h1>
          <form onSubmit={submit} className="stacked-form">
            <label htmlFor="new-model-slug">
              Slug (3 to 64 lower-case letters, digits and single hyphens; never changes)
            </label>
            <input
              id="new-model-slug"
              required
              minLength={3}
              maxLength={64}
              pattern="[a-z](?:[a-z0-9]|-(?=[a-z0-9])){2,63}"
              value={slug}
              onChange={(event) => setSlug(event.target.value)}
            />
            <label htmlFor="new-model-task">Task</label>
            <select id="new-model-task" value={task} onChange={(event) => setTask(event.target.value as ModelTask)}>
              {(Object.keys(TASK_NAMES) as ModelTask[]).map((value) => (
                <option key={value} value={value}>
                  {TASK_NAMES[value]}
                </option>
              ))}
            </select>
            <ModelFields values={fields} onChange={setFields} />
            <ErrorMessage error={create.error} />
            <button type="submit" disabled={create.isPending}>
              {create.isPending ? 'Creating…' : 'Create model'}
            </button>
          </form>
        </>
      )}
    </RequireRole>
  );
}
