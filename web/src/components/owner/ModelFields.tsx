// The description fields of a model (name, description, tags, visibility, card), shared by the create form and
// the manage page's edit form. Limits are the API's, so that a person learns them while typing.
import { useId } from 'react';
import type { ModelCardInput, Visibility } from '../../gql/graphql';

export interface ModelFieldValues {
  name: string;
  description: string;
  /** Comma-separated, as typed. */
  tags: string;
  visibility: Visibility;
  card: Required<{ [K in keyof ModelCardInput]: string }>;
}

export const EMPTY_MODEL_FIELDS: ModelFieldValues = {
  name: '',
  description: '',
  tags: '',
  visibility: 'PUBLIC',
  card: { intendedUse: '', trainingData: '', limitations: '', licenseSummary: '' },
};

const MAX_NAME = 100;
/** 20 tags of up to 32 characters, with their separators. */
const MAX_TAGS_TEXT = 20 * 34;
const MAX_TEXT = 5000;

const CARD_LABELS: Record<keyof ModelFieldValues['card'], string> = {
  intendedUse: 'Intended use',
  trainingData: 'Training data',
  limitations: 'Limitations',
  licenseSummary: 'Licence summary',
};

/** The fields as the API takes them (UpdateModelInput/CreateModelInput share these names). */
export function modelFieldsInput(values: ModelFieldValues) {
  return {
    name: values.name.trim(),
    description: values.description,
    tags: values.tags
      .split(',')
      .map((tag) => tag.trim())
      .filter(Boolean),
    visibility: values.visibility,
    card: values.card,
  };
}

export function ModelFields({
  values,
  onChange,
}: {
  values: ModelFieldValues;
  onChange: (values: ModelFieldValues) => void;
}) {
  const id = useId();
  const set = <K extends keyof ModelFieldValues>(key: K, value: ModelFieldValues[K]) =>
    onChange({ ...values, [key]: value });
  return (
    <>
      <label htmlFor={`${id}-name`}>Name</label>
      <input
        id={`${id}-name`}
        required
        maxLength={MAX_NAME}
        value={values.name}
        onChange={(event) => set('name', event.target.value)}
      />
      <label htmlFor={`${id}-description`}>Description (Markdown)</label>
      <textarea
        id={`${id}-description`}
        rows={4}
        maxLength={MAX_TEXT}
        value={values.description}
        onChange={(event) => set('description', event.target.value)}
      />
      <label htmlFor={`${id}-tags`}>Tags (comma-separated, up to 20)</label>
      <input
        id={`${id}-tags`}
        maxLength={MAX_TAGS_TEXT}
        value={values.tags}
        onChange={(event) => set('tags', event.target.value)}
      />
      <label htmlFor={`${id}-visibility`}>Visibility</label>
      <select
        id={`${id}-visibility`}
        value={values.visibility}
        onChange={(event) => set('visibility', event.target.value as Visibility)}
      >
        <option value="PUBLIC">Public</option>
        <option value="PRIVATE">Private (only you and admins)</option>
      </select>
      <fieldset>
        <legend>Model card</legend>
        {(Object.keys(CARD_LABELS) as (keyof ModelFieldValues['card'])[]).map((key) => (
          <div key={key}>
            <label htmlFor={`${id}-${key}`}>{CARD_LABELS[key]}</label>
            <textarea
              id={`${id}-${key}`}
              rows={2}
              maxLength={MAX_TEXT}
              value={values.card[key]}
              onChange={(event) => set('card', { ...values.card, [key]: event.target.value })}
            />
          </div>
        ))}
      </fieldset>
    </>
  );
}
