// Editing a model's description fields (updateModel); the slug and task never change.
import { useState, type FormEvent } from 'react';
import { useGqlMutation } from '../../api/hooks';
import { graphql } from '../../gql';
import { ErrorMessage } from '../ErrorMessage';
import { ModelFields, modelFieldsInput, type ModelFieldValues } from './ModelFields';

const UpdateModel = graphql(`
  mutation UpdateOwnerModel($input: UpdateModelInput!) {
    updateModel(input: $input) {
      id
      name
    }
  }
`);

export function ModelDetailsForm({ slug, initial }: { slug: string; initial: ModelFieldValues }) {
  const update = useGqlMutation(UpdateModel);
  const [values, setValues] = useState(initial);
  const [notice, setNotice] = useState('');
  const submit = (event: FormEvent) => {
    event.preventDefault();
    setNotice('');
    update.mutate(
      { input: { slug, ...modelFieldsInput(values) } },
      { onSuccess: () => setNotice('Saved the model description.') },
    );
  };
  return (
    <section aria-labelledby="details-title">
      <h2 id="details-title">Description</h2>
      <form onSubmit={submit} className="stacked-form" aria-labelledby="details-title">
        <ModelFields values={values} onChange={setValues} />
        <ErrorMessage error={update.error} />
        <button type="submit" disabled={update.isPending}>
          {update.isPending ? 'Saving…' : 'Save description'}
        </button>
        {notice && (
          <p role="status" className="notice">
            {notice}
          </p>
        )}
      </form>
    </section>
  );
}
